"""What the portal sends the HSM as x-ms-client-request-id (the HSM's correlationId): the web
request's id, or in a job the open audit intent's request id; and the Log Analytics mapping."""
import uuid

import pytest

from portal import gateway
from portal.audit.hsm_events import event_row
from portal.audit.services import audit_record, audit_result
from portal.errors import NotFound
from portal.gateway.audit_logs import log_analytics_row_to_event
from portal.gateway.correlation import correlation_key, forget_intents, header_value


def _sent_id(hsm, name: str) -> str:
    seen = []
    try:
        with gateway.translated_errors(hsm=hsm.name):
            gateway.keys(hsm).get_key(name, raw_response_hook=lambda response: seen.append(
                response.http_request.headers["x-ms-client-request-id"]))
    except NotFound:  # the key need not exist: the header is what is checked
        pass
    return seen[-1]


def test_a_job_sends_its_open_intents_request_id(hsm, key_name):
    forget_intents()
    correlation = uuid.uuid4().hex  # e.g. an approval's correlation id
    intent = audit_record(actor=None, action="key.rotate", target=f"hsm:primary/key:{key_name}",
                          request_id=correlation)
    sent = _sent_id(hsm, key_name)
    assert sent == str(uuid.UUID(correlation)) and correlation_key(sent) == correlation
    audit_result(intent, ok=False)
    after = _sent_id(hsm, key_name)
    assert correlation_key(after) != correlation  # closed: the SDK's own id again


@pytest.mark.parametrize("value, key", [
    ("0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5bd9cb469fa16570867728950e"),
    ("0f8fad5bd9cb469fa16570867728950e", "0f8fad5bd9cb469fa16570867728950e"),
    ("not-a-guid", "not-a-guid"),
    ("", ""),
])
def test_correlation_keys(value, key):
    assert correlation_key(value) == key
    assert correlation_key(header_value(key)) == key


def test_log_analytics_rows_map_to_the_storage_event_shape(db):
    from datetime import datetime, timezone

    row = {"TimeGenerated": datetime(2026, 11, 30, 10, 5, 3, 123456, tzinfo=timezone.utc),
           "ResourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/"
                         "MANAGEDHSMS/CONTOSO",
           "OperationName": "KeySign", "OperationVersion": "7.6", "ResultType": "Success",
           "ResultSignature": "OK", "ResultDescription": "", "DurationMs": 14,
           "CallerIPAddress": "10.0.0.4", "CorrelationId": "0F8FAD5B-D9CB-469F-A165-70867728950E",
           "identity_claim_oid_g": "11111111-2222-3333-4444-555555555555",
           "identity_claim_appid_g": None, "identity_claim_upn_s": "ana@contoso.example",
           "requestUri_s": "https://contoso.managedhsm.azure.net/keys/pay/abc/sign?api-version=7.6",
           "httpStatusCode_d": 200.0, "id_s": "https://contoso.managedhsm.azure.net/keys/pay/abc",
           "clientInfo_s": "azsdk-python", "isRbacAuthorized_b": True}
    event = log_analytics_row_to_event(row)
    assert event["time"] == "2026-11-30T10:05:03.123456Z"
    assert event["identity"] == {"claim": {"oid": "11111111-2222-3333-4444-555555555555",
                                           "upn": "ana@contoso.example"}}
    stored = event_row(event, hsms={}, source="log_analytics")
    assert (stored.operation, stored.status_code, stored.key_name, stored.hsm_name) == (
        "KeySign", 200, "pay", "contoso")
    assert stored.correlation_key == "0f8fad5bd9cb469fa16570867728950e"
    assert stored.caller_upn == "ana@contoso.example" and stored.duration_ms == 14


def test_log_analytics_without_a_workspace_is_a_sentence(db, settings):
    from portal.audit.hsm_events import hsm_audit_ingest
    from portal.errors import BadInput

    settings.HSM_AUDIT_SOURCE, settings.HSM_AUDIT_WORKSPACE_ID = "log_analytics", ""
    with pytest.raises(BadInput, match="HSM_AUDIT_WORKSPACE_ID"):
        hsm_audit_ingest()


def test_beat_runs_ingestion_checkpoints_and_retention():
    from django.conf import settings

    from portal.celery import app

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    expected = {"portal.audit.tasks.hsm_audit_ingest", "portal.audit.tasks.audit_checkpoint",
                "portal.audit.tasks.audit_retention_purge"}
    assert expected <= tasks
    app.loader.import_default_modules()
    assert expected | {"portal.audit.tasks.audit_verify_job"} <= set(app.tasks)


def test_an_intent_left_open_by_an_earlier_request_is_not_sent_by_the_next(hsm, key_name):
    from portal.middleware import _current_ids

    forget_intents()
    token = _current_ids.set(("a" * 32, ""))
    try:
        audit_record(actor=None, action="key.rotate", target="hsm:primary/key:x",
                     request_id="b" * 32)  # never closed: its service raised
    finally:
        _current_ids.reset(token)
    token = _current_ids.set(("c" * 32, ""))
    try:
        assert correlation_key(_sent_id(hsm, key_name)) == "c" * 32
    finally:
        _current_ids.reset(token)
    forget_intents()


def test_the_checkpoint_beat_without_an_hsm_is_a_logged_sentence(db, caplog):
    from portal.audit.models import AuditCheckpoint
    from portal.audit.tasks import audit_checkpoint

    audit_record(actor=None, action="test.row", outcome="recorded")
    assert audit_checkpoint.apply().get() is None
    assert "No HSM is registered to sign audit checkpoints" in caplog.text
    assert not AuditCheckpoint.objects.exists()
