"""Short-lived, encrypted storage for security-domain blobs, outside the database.

Why: a security domain (downloaded at activation, or prepared by the custodians for a
recovery) is recovery material. It must cross from the web process to a worker (upload
after approval) or from a worker to the admin's browser (download), so it must rest
somewhere for minutes or hours; the database, its backups and its replicas are the wrong
place. Each blob is one file under PORTAL_VAR_DIR/security-domain/, encrypted with
AES-256-GCM under a key derived (HKDF-SHA256) from SECRET_KEY, with the file's id, purpose
and SHA-256 as associated data, so a file cannot be swapped for another one. The
SecurityDomainFile row holds only the id, the SHA-256, the size and the expiry.

A file is deleted when it is used (downloaded once, or uploaded to the HSM) and, at the
latest, when it expires (`stash_sweep`, run on each use and by the worker's beat).
Web and worker must share PORTAL_VAR_DIR (one host, or a shared volume) and SECRET_KEY.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from datetime import timedelta
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.utils import timezone

from dr_app.models_sd import SecurityDomainFile
from portal.errors import Conflict, NotFound

ORPHAN_SECONDS = 3600


def _folder() -> Path:
    folder = Path(settings.VAR_DIR) / "security-domain"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _path(file_id) -> Path:
    return _folder() / f"{file_id}.enc"


def _key() -> bytes:
    secret = settings.SECRET_KEY.encode() if isinstance(settings.SECRET_KEY, str) \
        else settings.SECRET_KEY
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"mhsm-portal security-domain stash v1").derive(secret)


def _aad(row: SecurityDomainFile) -> bytes:
    return f"{row.pk}:{row.purpose}:{row.sha256}".encode()


def stash_put(*, hsm, purpose: str, blob: bytes, seconds: int, owner_name: str = "",
              job=None) -> SecurityDomainFile:
    """Encrypt blob to a new file and index it. The row commits with the caller's
    transaction; if that rolls back, the file is an orphan that stash_sweep removes."""
    row = SecurityDomainFile(hsm=hsm, purpose=purpose, sha256=hashlib.sha256(blob).hexdigest(),
                             size=len(blob), owner_name=owner_name[:150], job=job,
                             expires=timezone.now() + timedelta(seconds=seconds))
    nonce = secrets.token_bytes(12)
    sealed = nonce + AESGCM(_key()).encrypt(nonce, blob, _aad(row))
    path = _path(row.pk)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(sealed)
    try:
        row.save(force_insert=True)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return row


def stash_read(*, file_id, purpose: str) -> bytes:
    """Decrypt one live file (not consumed, not expired); its SHA-256 is checked."""
    row = SecurityDomainFile.objects.filter(pk=file_id, purpose=purpose).first()
    if row is None or row.consumed is not None:
        raise NotFound("That security-domain file is gone: it was used already or expired.",
                       code="security_domain_file_gone")
    if row.expires <= timezone.now():
        stash_delete(file_id=row.pk)
        raise NotFound("That security-domain file expired and was deleted.",
                       code="security_domain_file_gone")
    try:
        sealed = _path(row.pk).read_bytes()
    except FileNotFoundError:
        raise NotFound("That security-domain file is missing from the portal's storage.",
                       code="security_domain_file_gone") from None
    try:
        blob = AESGCM(_key()).decrypt(sealed[:12], sealed[12:], _aad(row))
    except InvalidTag:
        raise Conflict("That security-domain file cannot be decrypted (SECRET_KEY changed, "
                       "or the file was altered).", code="security_domain_file_bad") from None
    if hashlib.sha256(blob).hexdigest() != row.sha256:
        raise Conflict("That security-domain file does not match its recorded SHA-256.",
                       code="security_domain_file_bad")
    return blob


def stash_consume(*, file_id, purpose: str) -> bool:
    """Mark a file used, once: a conditional UPDATE, so of two concurrent callers exactly
    one gets True. The caller reads it (stash_read) before, and deletes it after."""
    return bool(SecurityDomainFile.objects.filter(
        pk=file_id, purpose=purpose, consumed__isnull=True, expires__gt=timezone.now(),
    ).update(consumed=timezone.now()))


def stash_delete(*, file_id) -> None:
    """Remove the encrypted file and mark its row used (idempotent)."""
    _path(file_id).unlink(missing_ok=True)
    SecurityDomainFile.objects.filter(pk=file_id, consumed__isnull=True).update(
        consumed=timezone.now())


def _known(stem: str) -> bool:
    try:
        return SecurityDomainFile.objects.filter(pk=uuid.UUID(stem)).exists()
    except ValueError:
        return False


def stash_sweep() -> int:
    """Delete every expired or used file still on disk; returns how many were removed.

    A file without a live row is removed only when it is older than ORPHAN_SECONDS: its
    row may be in a transaction that has not committed yet."""
    removed = 0
    orphan_before = time.time() - ORPHAN_SECONDS
    live = set()
    for row in SecurityDomainFile.objects.filter(consumed__isnull=True).only("id", "expires"):
        if row.expires <= timezone.now():
            stash_delete(file_id=row.pk)
            removed += 1
        else:
            live.add(str(row.pk))
    for path in _folder().glob("*.enc"):
        try:
            old = path.stat().st_mtime < orphan_before
        except FileNotFoundError:
            continue
        if path.stem in live:
            continue
        if old or _known(path.stem):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
