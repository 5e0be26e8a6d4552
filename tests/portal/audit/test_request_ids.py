"""Request ids in the audit trail: the server's id, the caller's beside it, both filterable."""
import hashlib
import json

import pytest
from django.db import connection

from portal.audit.chain import event_hash
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result, audit_verify


def _register(client, name: str, **headers):
    return client.post("/api/v1/hsms/",
                       {"name": name, "uri": f"https://{name}.managedhsm.azure.net"},
                       format="json", **headers)


def test_the_server_chooses_the_request_id_and_keeps_the_callers_apart(api_as, admin):
    client = api_as(admin)
    response = _register(client, "rid-a", HTTP_X_REQUEST_ID="other-teams-id-0001")
    assert response.status_code == 201
    event = AuditEvent.objects.get(action="hsm.register")
    assert event.request_id == response["X-Request-ID"] != "other-teams-id-0001"
    assert event.client_request_id == "other-teams-id-0001"
    # Two requests claiming the same client id still get distinct server ids.
    again = client.get("/api/v1/hsms/", HTTP_X_REQUEST_ID="other-teams-id-0001")
    assert again["X-Request-ID"] != response["X-Request-ID"]


@pytest.mark.parametrize("supplied", ["ok-client-id-1\n", "short", "x" * 65, "id with space",
                                      "ok-client-id-1\r\nX-Evil: 1"])
def test_a_malformed_client_id_is_not_recorded(api_as, admin, supplied):
    response = _register(api_as(admin), "rid-b", HTTP_X_REQUEST_ID=supplied)
    assert response.status_code == 201
    assert "X-Client-Request-ID" not in response
    assert AuditEvent.objects.get(action="hsm.register").client_request_id == ""


def test_auditors_filter_by_server_id_and_by_client_id(api_as, admin, auditor):
    first = _register(api_as(admin), "rid-c", HTTP_X_REQUEST_ID="pipeline-run-77")
    _register(api_as(admin), "rid-d", HTTP_X_REQUEST_ID="pipeline-run-78")
    client = api_as(auditor)
    by_server = client.get("/api/v1/audit-events/",
                           {"request_id": first["X-Request-ID"]}).json()["results"]
    assert [row["target"] for row in by_server] == ["hsm:rid-c"]
    by_client = client.get("/api/v1/audit-events/",
                           {"client_request_id": "pipeline-run-78"}).json()["results"]
    assert [row["target"] for row in by_client] == ["hsm:rid-d"]
    assert by_client[0]["client_request_id"] == "pipeline-run-78"
    # The caller's id is no longer a way to find rows by server id.
    assert client.get("/api/v1/audit-events/",
                      {"request_id": "pipeline-run-77"}).json()["results"] == []


def test_the_outcome_row_carries_the_intents_client_id(db):
    from portal.middleware import _current_ids

    token = _current_ids.set(("server-id-1", "client-id-123"))
    try:
        intent = audit_record(actor=None, action="key.rotate", request_id="server-id-1")
        other = audit_record(actor=None, action="key.rotate", request_id="another-request")
    finally:
        _current_ids.reset(token)
    outcome = audit_result(intent, ok=True)
    assert intent.client_request_id == outcome.client_request_id == "client-id-123"
    assert other.client_request_id == ""  # a row of another request gets no client id
    assert audit_verify().ok


def _old_format_hash(row: dict) -> str:
    """The chain's hash as it was before client_request_id existed."""
    names = ("seq", "time", "actor_id", "actor_name", "role", "request_id", "action",
             "target", "outcome", "detail", "prev_hash")
    payload = {name: row[name] for name in names}
    payload["time"] = payload["time"].isoformat(timespec="microseconds")
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_rows_without_a_client_id_keep_the_old_hash_and_others_hash_it(db):
    plain = audit_record(actor=None, action="key.rotate", request_id="r-1")
    row = AuditEvent.objects.filter(pk=plain.pk).values().get()
    assert row["hash"] == _old_format_hash(row)  # rows written before the column still verify
    with_client = {**row, "client_request_id": "client-id-123"}
    assert event_hash(with_client) != row["hash"]


def test_tampering_with_a_client_id_breaks_the_chain(db):
    from portal.middleware import _current_ids

    token = _current_ids.set(("server-id-1", "client-id-123"))
    try:
        for _ in range(3):
            audit_record(actor=None, action="key.rotate", request_id="server-id-1")
    finally:
        _current_ids.reset(token)
    audit_record(actor=None, action="key.rotate", request_id="r-plain")
    assert audit_verify().ok
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE audit_auditevent SET client_request_id = '' WHERE seq = 2")
        cursor.execute("UPDATE audit_auditevent SET client_request_id = 'planted-id' WHERE seq = 4")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    assert audit_verify().first_bad_seq == 2
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE audit_auditevent SET client_request_id = 'client-id-123' "
                       "WHERE seq = 2")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    assert audit_verify().first_bad_seq == 4
