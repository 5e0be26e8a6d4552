"""HSM audit events: ingested from the emulator's storage count for count, never twice, and
joined to the portal rows that caused them (the portal's request id is the HSM's
correlationId)."""
from collections import Counter

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.keys import KeyClient

from portal.audit.hsm_events import hsm_audit_ingest
from portal.audit.models import AuditEvent, HsmAuditCursor, HsmAuditEvent
from portal.audit.timeline import TimelineFilter, TimelineScope, timeline_page
from portal.gateway.correlation import correlation_key
from tests.support.hsm_audit import diagnostic_setting

OWNER = {"owner": "team-audit"}


@pytest.fixture
def audited_hsm(hsm, emulator):
    """The primary HSM with a diagnostic setting; everything before it ingested."""
    with diagnostic_setting(emulator, "primary"):
        emulator.flush_audit("primary")
        hsm_audit_ingest()
        yield hsm


def _ingested_since(hsm, before_ids):
    return HsmAuditEvent.objects.filter(hsm=hsm).exclude(pk__in=before_ids)


def test_ingested_events_match_the_emulators_activity_count_for_count(
        audited_hsm, emulator, api_as, admin, key_name):
    hsm = audited_hsm
    before = set(HsmAuditEvent.objects.values_list("pk", flat=True))
    mark = emulator.audit("primary")["seq"]
    client = api_as(admin)
    # Through the portal (its own identity, its request id as correlation id) ...
    created = client.post(f"/api/v1/hsms/{hsm.name}/keys/",
                          {"name": key_name, "preset": "aes", "tags": OWNER}, format="json")
    assert created.status_code == 201, created.content
    assert client.get(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/").status_code == 200
    # ... and directly with the SDK as another caller, refusals included.
    direct = KeyClient(emulator.hsm_url("primary"), emulator.credential(),
                       **emulator.client_options())
    direct.get_key(key_name)
    with pytest.raises(ResourceNotFoundError):
        direct.get_key(f"{key_name}-absent")
    emulator.flush_audit("primary")

    totals = hsm_audit_ingest()
    activity = emulator.audit("primary", since=mark, limit=10000)
    fresh = list(_ingested_since(hsm, before))
    assert totals["stored"] == len(fresh)
    assert len(fresh) == activity["count"] > 4
    assert Counter((event.operation, event.correlation_key) for event in fresh) == Counter(
        (event["operationName"], correlation_key(event["correlationId"]))
        for event in activity["value"])
    assert {"KeyCreate", "KeyGet"} <= {event.operation for event in fresh}
    missing = [event for event in fresh if f"{key_name}-absent" in event.request_uri]
    assert [(event.operation, event.result_signature, event.status_code)
            for event in missing] == [("KeyGet", "NotFound", 404)]

    # The direct caller's own timeline (by the object id the HSM logged) has its calls.
    direct_oid = missing[0].caller_oid
    assert direct_oid
    entries, _ = timeline_page(scope=TimelineScope("principal", principal=direct_oid),
                               filters=TimelineFilter(source="hsm"))
    assert f"{hsm.name}:{missing[0].pk}" in [entry.ref for entry in entries]
    assert all(entry.source == "hsm" for entry in entries)

    # Reading again stores nothing: cursors skip unchanged blobs ...
    again = hsm_audit_ingest()
    assert again["stored"] == 0
    assert HsmAuditEvent.objects.filter(hsm=hsm).exclude(pk__in=before).count() == len(fresh)
    # ... and without any cursor, the event identity refuses the copies.
    HsmAuditCursor.objects.all().delete()
    reread = hsm_audit_ingest()
    assert reread["read"] >= len(fresh) and reread["stored"] == 0
    assert HsmAuditEvent.objects.filter(hsm=hsm).exclude(pk__in=before).count() == len(fresh)


def test_a_growing_blob_is_read_from_where_ingestion_stopped(audited_hsm, emulator, key_name):
    hsm = audited_hsm
    direct = KeyClient(emulator.hsm_url("primary"), emulator.credential(),
                       **emulator.client_options())
    direct.create_ec_key(key_name, curve="P-256")
    emulator.flush_audit("primary")
    hsm_audit_ingest()
    offsets = dict(HsmAuditCursor.objects.values_list("source", "offset"))
    mark = emulator.audit("primary")["seq"]
    before = set(HsmAuditEvent.objects.values_list("pk", flat=True))
    for _ in range(3):
        direct.get_key(key_name)
    emulator.flush_audit("primary")
    totals = hsm_audit_ingest()
    assert totals["stored"] == emulator.audit("primary", since=mark)["count"] >= 3
    # The same hour's blob grew: its cursor moved on, no blob was read from the start.
    grown = {source: offset for source, offset in
             HsmAuditCursor.objects.values_list("source", "offset") if source in offsets}
    assert any(grown[source] > offsets[source] > 0 for source in grown) or len(grown) < len(
        HsmAuditCursor.objects.all())
    assert totals["read"] == totals["stored"]
    assert _ingested_since(hsm, before).count() == totals["stored"]


def test_the_key_timeline_joins_the_portal_create_with_the_hsms_key_create(
        audited_hsm, emulator, api_as, admin, auditor, key_name):
    hsm = audited_hsm
    created = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                                 {"name": key_name, "preset": "aes", "tags": OWNER},
                                 format="json")
    assert created.status_code == 201, created.content
    emulator.flush_audit("primary")
    hsm_audit_ingest()

    intent = AuditEvent.objects.get(action="key.create", outcome="intent",
                                    target=f"hsm:{hsm.name}/key:{key_name}")
    hsm_create = HsmAuditEvent.objects.get(hsm=hsm, key_name=key_name, operation="KeyCreate")
    assert hsm_create.correlation_key == intent.request_id
    assert hsm_create.caller_appid  # the portal's service principal, as the HSM saw it

    entries, _ = timeline_page(scope=TimelineScope("key", hsm=hsm.name, key=key_name),
                               filters=TimelineFilter())
    sources = Counter(entry.source for entry in entries)
    assert sources["portal"] >= 2 and sources["hsm"] >= 1
    hsm_entry = next(entry for entry in entries if entry.action == "KeyCreate")
    assert intent.seq in [cause["seq"] for cause in hsm_entry.caused_by]
    assert {cause["action"] for cause in hsm_entry.caused_by} == {"key.create"}

    # The same through the API, filtered to the HSM's side, and as an auditor.
    client = api_as(auditor)
    response = client.get(f"/api/v1/timeline/hsms/{hsm.name}/keys/{key_name}/",
                          {"source": "hsm", "action": "KeyCreate"})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [entry["action"] for entry in results] == ["KeyCreate"]
    assert results[0]["caused_by"][0]["seq"] == intent.seq
    # Filters are bounded sentences, never a 500.
    bad = client.get(f"/api/v1/timeline/hsms/{hsm.name}/",
                     {"since": "2026-12-01", "until": "2026-11-01"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_input"


def test_timeline_export_is_streamed_and_audited(audited_hsm, emulator, api_as, admin, auditor,
                                                 key_name, client):
    hsm = audited_hsm
    assert api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                              {"name": key_name, "preset": "aes", "tags": OWNER},
                              format="json").status_code == 201
    emulator.flush_audit("primary")
    hsm_audit_ingest()
    client.force_login(auditor)
    response = client.get("/audit/timelines/export/", {"scope": "key", "hsm": hsm.name,
                                                       "key": key_name, "export": "csv"})
    assert response.status_code == 200 and response.streaming
    text = b"".join(response.streaming_content).decode()
    lines = text.strip().splitlines()
    assert lines[0].startswith("time,source,actor,action")
    assert any(",hsm," in line and "KeyCreate" in line for line in lines[1:])
    assert any(",portal," in line and "key.create" in line for line in lines[1:])
    row = AuditEvent.objects.filter(action="audit.timeline_export").latest("seq")
    assert row.actor_name == auditor.username and row.detail["key"] == key_name
    as_json = client.get("/audit/timelines/export/", {"scope": "hsm", "hsm": hsm.name,
                                                      "export": "json", "source": "hsm"})
    import json
    data = json.loads(b"".join(as_json.streaming_content))
    assert data and {entry["source"] for entry in data} == {"hsm"}


def test_timeline_pages_render_for_an_auditor(audited_hsm, emulator, client, auditor, admin,
                                              api_as, key_name):
    hsm = audited_hsm
    assert api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                              {"name": key_name, "preset": "aes", "tags": OWNER},
                              format="json").status_code == 201
    emulator.flush_audit("primary")
    hsm_audit_ingest()
    client.force_login(auditor)
    page = client.get(f"/hsms/{hsm.name}/keys/{key_name}/timeline/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "KeyCreate" in body and "key.create" in body and "HSM log" in body
    assert client.get(f"/hsms/{hsm.name}/timeline/").status_code == 200
    principal = client.get(f"/audit/principals/local:{admin.pk}/timeline/")
    assert principal.status_code == 200 and "key.create" in principal.content.decode()
    # The HSM calls the portal made for the admin are on the admin's timeline too.
    assert "KeyCreate" in principal.content.decode()
    assert client.get("/audit/principals/not-a-principal/timeline/").status_code == 404
    assert client.get(f"/hsms/{hsm.name}/timeline/", {"since": "x"}).status_code == 200


def test_an_approved_delete_run_by_its_job_joins_the_approval_chain(audited_hsm, emulator,
                                                                    admin, key_name):
    """The HSM's KeyDelete, made by the approval's execution job (no web request), carries
    the approval's correlation id: the timeline names the request, the approvals and the
    execution that caused it."""
    from keys_app import services
    from keys_app.spec import spec_build
    from tests.support.approvals import approve_and_run

    hsm = audited_hsm
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="r0")
    req = approve_and_run(services.key_delete(hsm=hsm, name=key_name, actor=admin,
                                              request_id="r1", confirm_name=key_name))
    emulator.flush_audit("primary")
    hsm_audit_ingest()
    delete = HsmAuditEvent.objects.get(hsm=hsm, key_name=key_name, operation="KeyDelete")
    assert delete.correlation_key == req.correlation_id
    entries, _ = timeline_page(scope=TimelineScope("key", hsm=hsm.name, key=key_name),
                               filters=TimelineFilter())
    entry = next(entry for entry in entries if entry.action == "KeyDelete")
    actions = {cause["action"] for cause in entry.caused_by}
    # caused_by lists at most 10 rows, oldest first: the request, the approval, the run.
    assert {"approval.request", "approval.approve", "approval.execute", "key.delete"} <= actions
