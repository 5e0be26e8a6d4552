"""Creating (or importing) a name is exactly-once per HSM, whoever asks at the same time.

Each thread is its own database connection, as separate web nodes would be; the claim that
serialises them lives in PostgreSQL, not in this process's memory.
"""

import pytest
from rest_framework.test import APIClient

from keys_app.models import KeyNameClaim
from portal import gateway
from tests.support.race import at_once

OWNER = {"owner": "payments"}


def _race(admin, hsm, bodies: list[dict]) -> list[int]:
    """POST every body at once, each from its own thread and connection; the statuses."""
    clients = [APIClient() for _ in bodies]
    for client in clients:
        client.force_authenticate(admin)
    return at_once([lambda client=client, body=body: client.post(
        f"/api/v1/hsms/{hsm.name}/keys/", body, format="json").status_code
        for client, body in zip(clients, bodies, strict=True)])


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_creates_of_one_name_make_one_key_with_one_version(admin, hsm, key_name,
                                                                          emulator):
    # Slow existence checks widen the window in which a check-then-create would race.
    emulator.fail("GET", f"/keys/{key_name}*", status=None, latency_ms=300)
    statuses = _race(admin, hsm, [{"name": key_name, "preset": "aes", "tags": OWNER}] * 10)
    emulator.clear_faults()

    assert sorted(statuses) == [201] + [409] * 9
    assert len(list(gateway.keys(hsm).list_properties_of_key_versions(key_name))) == 1
    assert not KeyNameClaim.objects.exists()  # every claim is released


@pytest.mark.django_db(transaction=True)
def test_concurrent_create_and_import_of_one_name_make_one_key(admin, hsm, key_name, emulator):
    import base64
    import os

    emulator.fail("GET", f"/keys/{key_name}*", status=None, latency_ms=300)
    jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
    bodies = [{"name": key_name, "key": jwk, "tags": OWNER} if i % 2 else
              {"name": key_name, "preset": "aes", "tags": OWNER} for i in range(6)]
    statuses = _race(admin, hsm, bodies)
    emulator.clear_faults()

    assert sorted(statuses) == [201] + [409] * 5
    assert len(list(gateway.keys(hsm).list_properties_of_key_versions(key_name))) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_page_creates_of_one_name_make_one_key(admin, hsm, key_name, emulator):
    from django.test import Client

    emulator.fail("GET", f"/keys/{key_name}*", status=None, latency_ms=300)
    clients = [Client() for _ in range(4)]
    for client in clients:
        client.force_login(admin)
    statuses = at_once([lambda client=client: client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "aes", "kty": "oct-HSM", "name": key_name,
        "tags": "owner=payments"}).status_code for client in clients])
    emulator.clear_faults()

    assert sorted(statuses) == [302, 400, 400, 400]  # one created; the others see the form
    assert len(list(gateway.keys(hsm).list_properties_of_key_versions(key_name))) == 1


def test_a_claim_left_by_a_crashed_process_expires(admin, hsm, key_name):
    from django.utils import timezone

    from keys_app import services
    from keys_app.spec import spec_build

    spec = spec_build(name=key_name, kty="oct-HSM", tags=OWNER)
    claim = KeyNameClaim.objects.create(hsm=hsm, name=key_name.lower(), request_id="gone")
    with pytest.raises(services.Conflict, match="being created"):
        services.key_create(hsm=hsm, spec=spec, actor=admin, request_id="r1")
    KeyNameClaim.objects.filter(pk=claim.pk).update(
        claimed_at=timezone.now() - services.CLAIM_LEASE - timezone.timedelta(seconds=1))
    record = services.key_create(hsm=hsm, spec=spec, actor=admin, request_id="r2")
    assert record.name == key_name and not KeyNameClaim.objects.exists()
