"""The short-lived encrypted storage of security-domain files: encrypted at rest, bound to
its row, handed out once, swept when expired; and an upload whose file is gone cannot run."""
import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from dr_app import security_domain_stash as stash
from dr_app.models_sd import SecurityDomainFile
from portal.errors import Conflict, NotFound
from portal.gateway.models import HsmInstance

pytestmark = pytest.mark.django_db

SECRET = b'{"EncData": "very secret recovery material 0123456789"}'


@pytest.fixture
def vault(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return HsmInstance.objects.create(name="vault", uri="https://vault.managedhsm.azure.net")


def folder(settings):
    return settings.VAR_DIR / "security-domain"


def test_files_are_encrypted_at_rest_and_read_back_whole(settings, vault):
    row = stash.stash_put(hsm=vault, purpose="upload", blob=SECRET, seconds=600)
    on_disk = (folder(settings) / f"{row.pk}.enc").read_bytes()
    assert b"secret recovery material" not in on_disk
    assert oct(os.stat(folder(settings) / f"{row.pk}.enc").st_mode & 0o777) == "0o600"
    assert stash.stash_read(file_id=row.pk, purpose="upload") == SECRET
    # The database holds the digest and size, never the content.
    stored = SecurityDomainFile.objects.filter(pk=row.pk).values().get()
    assert SECRET.decode() not in str(stored) and stored["size"] == len(SECRET)


def test_a_swapped_or_altered_file_is_refused(settings, vault):
    first = stash.stash_put(hsm=vault, purpose="upload", blob=SECRET, seconds=600)
    second = stash.stash_put(hsm=vault, purpose="upload", blob=b"other", seconds=600)
    path_1 = folder(settings) / f"{first.pk}.enc"
    path_2 = folder(settings) / f"{second.pk}.enc"
    path_1.write_bytes(path_2.read_bytes())  # another file's ciphertext under this id
    with pytest.raises(Conflict):
        stash.stash_read(file_id=first.pk, purpose="upload")
    # Another SECRET_KEY cannot read it either.
    settings.SECRET_KEY = "a different key"
    with pytest.raises(Conflict):
        stash.stash_read(file_id=second.pk, purpose="upload")


def test_a_file_is_consumed_once(vault):
    row = stash.stash_put(hsm=vault, purpose="download", blob=SECRET, seconds=600)
    assert stash.stash_consume(file_id=row.pk, purpose="download") is True
    assert stash.stash_consume(file_id=row.pk, purpose="download") is False
    with pytest.raises(NotFound):
        stash.stash_read(file_id=row.pk, purpose="download")


def test_sweep_deletes_expired_files_and_old_orphans(settings, vault):
    live = stash.stash_put(hsm=vault, purpose="upload", blob=SECRET, seconds=600)
    expired = stash.stash_put(hsm=vault, purpose="upload", blob=SECRET, seconds=600)
    SecurityDomainFile.objects.filter(pk=expired.pk).update(
        expires=timezone.now() - timedelta(seconds=1))
    orphan = folder(settings) / "0b7c8ad4-0000-4000-8000-000000000000.enc"
    orphan.write_bytes(b"left by a rolled-back request")
    fresh_orphan = folder(settings) / "0b7c8ad4-0000-4000-8000-000000000001.enc"
    fresh_orphan.write_bytes(b"its row may not have committed yet")
    old = time.time() - stash.ORPHAN_SECONDS - 5
    os.utime(orphan, (old, old))

    assert stash.stash_sweep() == 2

    remaining = sorted(path.name for path in folder(settings).glob("*.enc"))
    assert remaining == sorted([f"{live.pk}.enc", fresh_orphan.name])
    assert SecurityDomainFile.objects.get(pk=expired.pk).consumed is not None
    with pytest.raises(NotFound):
        stash.stash_read(file_id=expired.pk, purpose="upload")
