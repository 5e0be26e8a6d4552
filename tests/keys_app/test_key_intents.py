"""No audit intent is left without an outcome, and an outcome that cannot be written after the
HSM acted is reported as exactly that (never "nothing was done")."""
import base64
import binascii
import json
import os
import threading
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction

from keys_app import services
from keys_app.spec import spec_build
from portal import gateway
from portal.audit.models import AuditChainHead, AuditEvent
from portal.audit.services import AuditOutcomeUnrecorded
from tests.support.approvals import run_approved

OWNER = {"owner": "payments"}
BAD_JWKS = [
    {"kty": "oct", "k": "a"},                      # one base64 character cannot decode
    {"kty": "oct", "k": "not base64!"},
    {"kty": "oct", "k": 12345},
    {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": ["x"]},
    {"kty": "oct", "k": base64.urlsafe_b64encode(os.urandom(32)).decode(), "key_ops": "encrypt"},
]


def _key_trail(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq")
                .values_list("outcome", flat=True))


@pytest.mark.parametrize("jwk", BAD_JWKS, ids=["k-a", "k-not-b64", "k-number", "d-list",
                                               "ops-text"])
def test_api_a_jwk_that_does_not_decode_is_a_400_with_nothing_audited(api_as, admin, hsm,
                                                                      key_name, jwk):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                                  {"name": key_name, "key": jwk, "tags": OWNER}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["message"].startswith("The key is not a usable JSON Web Key")
    assert "key" in error["fields"]
    assert _key_trail("key.import") == []
    assert not gateway.key_exists(hsm, key_name)


def test_page_a_jwk_that_does_not_decode_is_refused_with_nothing_audited(client, admin, hsm,
                                                                       key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/import/", {
        "name": key_name, "tags": "owner=payments",
        "key_file": SimpleUploadedFile("k.json", json.dumps({"kty": "oct", "k": "a"}).encode())},
        follow=True)
    assert b"not a usable JSON Web Key" in response.content
    assert _key_trail("key.import") == []


def test_an_error_that_is_not_the_hsms_answer_still_closes_the_intent(hsm, admin, key_name):
    intent = services._intent(actor=admin, action="key.import", hsm=hsm, name=key_name,
                              request_id="r1")
    with pytest.raises(binascii.Error):
        services._hsm(intent, lambda: base64.b64decode("a", validate=True))
    failed = AuditEvent.objects.get(action="key.import", outcome="failed")
    assert failed.detail["intent_seq"] == intent.seq
    assert failed.detail["exception"] == "Error"
    assert "not known" in failed.detail["message"]


def _rotate_while_locked(hsm, admin, key_name, emulator, lock) -> dict:
    """Rotate in a thread (its own connection, a short lock timeout); once its intent is
    committed and the HSM call is in flight, hold `lock()` (a real PostgreSQL row lock on
    this connection) until the rotation is over. Returns {"record"} or {"error"}."""
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="r0")
    emulator.fail("POST", f"/keys/{key_name}/rotate", status=None, count=1, latency_ms=1500)
    outcome = {}

    def rotate():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '300ms'")
            outcome["record"] = services.key_rotate(hsm=hsm, name=key_name, actor=admin,
                                                    request_id="r1")
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc
        finally:
            connection.close()

    worker = threading.Thread(target=rotate)
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not AuditEvent.objects.filter(
            action="key.rotate", outcome="intent").exists():
        time.sleep(0.02)
    with transaction.atomic():
        lock()
        worker.join(timeout=30)
    return outcome


@pytest.mark.django_db(transaction=True)
def test_an_outcome_that_cannot_be_written_after_the_hsm_acted_says_the_hsm_acted(
        hsm, admin, key_name, emulator):
    """The rotation happens; the audit trail's head is locked meanwhile, so its outcome
    cannot be written. The caller must hear that the key was rotated, not that nothing
    was done."""
    outcome = _rotate_while_locked(hsm, admin, key_name, emulator, lambda: (
        AuditChainHead.objects.select_for_update().get(pk=1)))

    error = outcome.get("error")
    assert isinstance(error, AuditOutcomeUnrecorded), outcome
    assert error.status == 503 and "Do not repeat it" in error.message and error.acted
    assert error.message.startswith("The HSM carried out key.rotate on hsm:primary/key:")
    assert "nothing was done" not in error.message
    assert len(list(gateway.keys(hsm).list_properties_of_key_versions(key_name))) == 2
    assert _key_trail("key.rotate") == ["intent"]  # nothing false was written


def test_a_read_failing_after_a_recover_does_not_record_the_recover_as_failed(hsm, admin,
                                                                              key_name, emulator):
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="r0")
    run_approved(services.key_delete, hsm=hsm, name=key_name, actor=admin, request_id="r1",
                 confirm_name=key_name)
    emulator.fail("GET", f"/keys/{key_name}/versions*", status=503)
    record = services.key_recover(hsm=hsm, name=key_name, actor=admin, request_id="r2")
    emulator.clear_faults()

    assert record.state == "active" and gateway.key_exists(hsm, key_name)
    assert _key_trail("key.recover") == ["intent", "succeeded"]
    done = AuditEvent.objects.get(action="key.recover", outcome="succeeded")
    assert done.detail["not_cached"] == ["versions: hsm_unavailable"]


@pytest.mark.django_db(transaction=True)
def test_a_cache_that_cannot_be_written_after_the_hsm_acted_is_audited_and_said(
        hsm, admin, key_name, emulator):
    from keys_app.models import KeyRecord

    outcome = _rotate_while_locked(hsm, admin, key_name, emulator, lambda: (
        KeyRecord.objects.select_for_update().get(hsm=hsm, name=key_name)))

    error = outcome.get("error")
    assert isinstance(error, services.InventoryNotUpdated), outcome
    assert error.status == 503 and "it is audited" in error.message
    assert _key_trail("key.rotate") == ["intent", "succeeded"]
    assert len(list(gateway.keys(hsm).list_properties_of_key_versions(key_name))) == 2
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).version_count == 1  # the sync's job
