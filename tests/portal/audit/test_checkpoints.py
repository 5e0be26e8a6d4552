"""Signed checkpoints: made with the HSM key, kept in blob storage, and what verification finds
with them (a rewritten row even when re-chained, a removed tail with a reset head, a forged
checkpoint); "Verify now" as a job with progress; the retention purge."""
import base64
import hashlib
import json
import time
import uuid
from datetime import timedelta

import pytest
from azure.keyvault.keys import KeyClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from portal.audit import checkpoints
from portal.audit.chain import event_hash
from portal.audit.checkpoints import (audit_retention_purge, audit_verification_run,
                                      checkpoint_create, signed_payload)
from portal.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent, AuditVerification
from portal.audit.services import audit_record, audit_verify
from portal.errors import BadInput
from portal.jobs.models import Job


@pytest.fixture
def signing(hsm, settings):
    """The primary HSM signs; this test's checkpoints go to a container of its own."""
    settings.AUDIT_CHECKPOINT_CONTAINER = f"audit-checkpoints-{uuid.uuid4().hex[:12]}"
    settings.AUDIT_CHECKPOINT_HSM = hsm.name
    return hsm


def _rows(count: int, prefix: str = "test.row") -> list[AuditEvent]:
    return [audit_record(actor=None, action=prefix, target=f"thing:{n}", outcome="recorded",
                         detail={"n": n}) for n in range(count)]


@pytest.fixture
def no_guards():
    """Act as someone who bypasses the triggers (a superuser's session_replication_role)."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    yield connection
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = origin")


def _public_key(emulator, kid: str):
    """The checkpoint key's public half, read with the SDK as another caller."""
    name = kid.split("/keys/")[1].split("/")[0]
    version = kid.rstrip("/").rsplit("/", 1)[-1]
    jwk = KeyClient(emulator.hsm_url("primary"), emulator.credential(),
                    **emulator.client_options()).get_key(name, version).key
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"),
                                            int.from_bytes(jwk.y, "big"), ec.SECP256R1())
    return numbers.public_key()


def test_a_checkpoint_is_signed_by_the_hsm_key_and_stored_in_blob_storage(signing, emulator,
                                                                          azure_settings):
    _rows(5)
    checkpoint = checkpoint_create()
    # The head just before the checkpoint's own intent row (after the key's creation, the
    # first time the key is needed).
    intent = AuditEvent.objects.get(action="audit.checkpoint", outcome="intent")
    assert (checkpoint.seq, checkpoint.hash) == (intent.seq - 1, intent.prev_hash)
    assert checkpoint.seq >= 5
    assert "/keys/portal-audit-checkpoint/" in checkpoint.key_id

    # The copy in storage is the same signed document.
    from azure.storage.blob import BlobServiceClient

    storage = emulator.endpoints["storage"]
    blob = BlobServiceClient(storage["blob_endpoint"], credential={
        "account_name": storage["account_name"], "account_key": storage["account_key"]},
        connection_verify=emulator.ca_bundle).get_blob_client(
        azure_settings.AUDIT_CHECKPOINT_CONTAINER, checkpoint.blob_name)
    document = json.loads(blob.download_blob().readall())
    assert (document["seq"], document["hash"], document["signature"]) == (
        checkpoint.seq, checkpoint.hash, checkpoint.signature)

    # The signature verifies with the key's public half, outside the portal (ES256: r||s).
    raw = base64.b64decode(document["signature"])
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                     int.from_bytes(raw[32:], "big"))
    public = _public_key(emulator, document["key_id"])
    public.verify(signature, signed_payload(document), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(signature, signed_payload({**document, "seq": document["seq"] + 1}),
                      ec.ECDSA(hashes.SHA256()))
    assert hashlib.sha256(signed_payload(document)).digest()  # what the HSM signed

    # Audited: intent and outcome of the checkpoint itself.
    assert list(AuditEvent.objects.filter(action="audit.checkpoint").order_by("seq")
                .values_list("outcome", flat=True)) == ["intent", "succeeded"]
    # Nothing new but the checkpoint's own rows: the schedule makes no second one.
    assert checkpoint_create() is None

    verification = audit_verification_run()
    assert verification.ok, verification.checkpoint_problems
    assert verification.checkpoints == 1 and verification.first_bad_seq is None
    call_command("audit_verify")  # exit 0


def test_a_rewritten_row_is_found_through_the_checkpoint_even_when_re_chained(signing,
                                                                            no_guards):
    rows = _rows(6)
    checkpoint = checkpoint_create()
    _rows(2, "after.checkpoint")
    # Rewrite row 3's detail and recompute every hash after it, head included: the chain
    # alone cannot tell.
    with no_guards.cursor() as cursor:
        events = list(AuditEvent.objects.order_by("seq").values())
        prev = events[rows[2].seq - 2]["hash"]
        for event in events[rows[2].seq - 1:]:
            if event["seq"] == rows[2].seq:
                event["detail"] = {"n": 999}
            event["prev_hash"] = prev
            event["hash"] = event_hash(event)
            prev = event["hash"]
            cursor.execute("UPDATE audit_auditevent SET detail = %s, prev_hash = %s, hash = %s "
                           "WHERE seq = %s", [json.dumps(event["detail"]), event["prev_hash"],
                                              event["hash"], event["seq"]])
        cursor.execute("UPDATE audit_auditchainhead SET hash = %s WHERE id = 1", [prev])
    assert audit_verify().ok  # the hash chain alone is fooled
    verification = audit_verification_run()
    assert not verification.ok
    assert verification.first_bad_seq == checkpoint.seq
    assert "signed checkpoint" in verification.reason
    with pytest.raises(CommandError, match=f"broken at seq {checkpoint.seq}"):
        call_command("audit_verify")


def test_a_tampered_row_without_re_chaining_is_named_by_its_seq(signing, no_guards):
    rows = _rows(4)
    checkpoint_create()
    with no_guards.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_name = 'mallory' WHERE seq = %s",
                       [rows[1].seq])
    verification = audit_verification_run()
    assert (verification.ok, verification.first_bad_seq) == (False, rows[1].seq)
    assert verification.reason == "the row's content does not match its hash"


def test_a_removed_tail_with_a_reset_head_is_found_through_the_checkpoint(signing, no_guards):
    rows = _rows(5)
    checkpoint = checkpoint_create()
    keep = rows[1]
    with no_guards.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE seq > %s", [keep.seq])
        cursor.execute("UPDATE audit_auditchainhead SET seq = %s, hash = %s WHERE id = 1",
                       [keep.seq, keep.hash])
        # The attacker removes the checkpoint's database row too; its copy in storage stays.
        cursor.execute("DELETE FROM audit_auditcheckpoint")
    assert audit_verify().ok  # the shortened chain is consistent on its own
    verification = audit_verification_run()
    assert not verification.ok
    assert verification.first_bad_seq == keep.seq + 1
    assert f"attests seq {checkpoint.seq}" in verification.reason
    assert "removed" in verification.reason


def test_a_forged_checkpoint_is_a_problem_not_evidence(signing):
    _rows(3)
    checkpoint = checkpoint_create()
    forged = AuditCheckpoint.objects.create(
        kind="head", seq=checkpoint.seq, hash="f" * 64, time=timezone.now(),
        key_id=checkpoint.key_id, algorithm="ES256", signature=checkpoint.signature,
        blob_name="")
    verification = audit_verification_run()
    assert not verification.ok
    problems = [problem["problem"] for problem in verification.checkpoint_problems]
    assert "the checkpoint's copy is missing from storage" in problems
    assert "the checkpoint's signature is not valid" in problems
    assert verification.first_bad_seq is None  # the chain itself is intact
    assert forged.pk


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_verify_now_runs_as_a_job_with_progress_per_batch(signing, celery_worker, client,
                                                          auditor, monkeypatch):
    monkeypatch.setattr(checkpoints, "VERIFY_BATCH", 40)
    _rows(200)
    checkpoint_create()
    client.force_login(auditor)
    response = client.post("/audit/chain/")
    assert response.status_code == 302
    job = Job.objects.get(kind="audit.verify")
    assert response["Location"] == job.get_absolute_url()
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).first())
    assert job.status == "succeeded", (job.error, job.step)
    assert job.progress == 100 and job.step.startswith("Chain intact")
    steps = [line["text"] for line in job.log if line["text"].startswith("Verified")]
    assert len(steps) >= 5  # one per batch of 40
    counts = [int(text.split()[1].replace(",", "")) for text in steps]
    assert counts == sorted(counts) and counts[0] == 40
    verification = AuditVerification.objects.get(job=job)
    assert verification.ok and verification.rows == job.result["rows"] >= 200
    assert verification.actor_name == auditor.username
    # The page and the API show it.
    page = client.get("/audit/chain/").content.decode()
    assert "Intact" in page and str(verification.rows) in page
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(auditor)
    status = api.get("/api/v1/audit/chain/").json()
    assert status["last_verification"]["ok"] is True
    assert status["last_verification"]["job_id"] == job.pk
    started = api.post("/api/v1/audit/chain/verify/")
    assert started.status_code == 202 and started.json()["kind"] == "audit.verify"


def test_chain_status_is_for_auditors_and_admins(client, approver, auditor):
    client.force_login(approver)
    assert client.get("/audit/chain/").status_code == 403
    assert client.post("/audit/chain/").status_code == 403
    client.force_login(auditor)
    assert client.get("/audit/chain/").status_code == 200


def _append_at(when, n: int) -> AuditEvent:
    """An event with a given time, appended the way the triggers allow (head one step on)."""
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().get(pk=1)
        fields = {"seq": head.seq + 1, "time": when, "actor_id": "", "actor_name": "system",
                  "role": "", "request_id": "", "client_request_id": "", "action": "old.row",
                  "target": f"thing:{n}", "outcome": "recorded", "detail": {"n": n},
                  "prev_hash": head.hash}
        fields["hash"] = event_hash(fields)
        event = AuditEvent.objects.create(**fields)
        AuditChainHead.objects.filter(pk=1).update(seq=event.seq, hash=event.hash)
    return event


@pytest.fixture
def aged_trail(db):
    """Five rows 400 days old, five 100 days old, then today's."""
    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": "0" * 64})
    now = timezone.now()
    old = [_append_at(now - timedelta(days=400, minutes=10 - n), n) for n in range(5)]
    young = [_append_at(now - timedelta(days=100, minutes=10 - n), n) for n in range(5)]
    return old, young


def test_retention_removes_only_rows_past_it_behind_a_signed_anchor(aged_trail, signing,
                                                                   settings):
    old, young = aged_trail
    _rows(3)
    settings.AUDIT_RETENTION_DAYS = 180
    result = audit_retention_purge()
    assert result["removed"] == 5 and result["through_seq"] == old[-1].seq
    assert not AuditEvent.objects.filter(seq__lte=old[-1].seq).exists()
    assert AuditEvent.objects.filter(seq__in=[row.seq for row in young]).count() == 5
    anchor = AuditCheckpoint.objects.get(kind="anchor")
    assert (anchor.seq, anchor.hash) == (old[-1].seq, old[-1].hash)
    purge_rows = AuditEvent.objects.filter(action="audit.retention_purge").order_by("seq")
    assert [row.outcome for row in purge_rows] == ["intent", "succeeded"]
    assert purge_rows.last().detail["removed"] == 5
    # The chain still verifies, from the oldest kept row, through the signed anchor.
    verification = audit_verification_run()
    assert verification.ok, (verification.reason, verification.checkpoint_problems)
    assert verification.first_seq == young[0].seq
    # Nothing more is old enough: a second purge removes nothing.
    assert audit_retention_purge()["removed"] == 0


def test_the_database_never_deletes_younger_rows_whatever_is_asked(aged_trail, signing,
                                                                  settings):
    old, young = aged_trail
    settings.AUDIT_RETENTION_DAYS = 180
    audit_retention_purge()
    count = AuditEvent.objects.count()
    # An anchor over the young rows does not make them deletable.
    checkpoint_create(kind="anchor", seq=young[-1].seq, hash=young[-1].hash)
    count = AuditEvent.objects.count()
    with pytest.raises(Exception, match="younger than the retention"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT audit_purge(%s, %s)", [young[-1].seq, 180])
    with pytest.raises(Exception, match="below 180 days"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT audit_purge(%s, %s)", [young[-1].seq, 30])
    # A plain DELETE, or one claiming the purge flag with a low retention, is refused.
    with pytest.raises(Exception, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE seq = %s", [young[0].seq])
    with pytest.raises(Exception, match="younger than the retention"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('portal.audit_purge', 'allow', true), "
                           "set_config('portal.audit_retention_days', '1', true)")
            cursor.execute("DELETE FROM audit_auditevent WHERE seq = %s", [young[0].seq])
    assert AuditEvent.objects.count() == count
    # The portal refuses a retention under 180 days before asking the database.
    settings.AUDIT_RETENTION_DAYS = 90
    with pytest.raises(BadInput):
        audit_retention_purge()
    assert AuditEvent.objects.count() == count


def test_rows_gone_without_an_anchor_break_verification(aged_trail, no_guards):
    old, _young = aged_trail
    with no_guards.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE seq <= %s", [old[-1].seq])
    verification = audit_verification_run()
    assert not verification.ok and verification.first_bad_seq == old[-1].seq
    assert "no signed retention anchor" in verification.reason
