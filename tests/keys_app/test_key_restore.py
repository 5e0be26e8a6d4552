"""Restoring a single-key backup: the trail names the restored key, its Activity shows the
restore, and the next inventory sync finds nothing to call drift."""
import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from keys_app import services
from keys_app.models import KeyRecord
from keys_app.selectors import key_activity
from keys_app.spec import spec_build
from portal.audit.models import AuditEvent
from portal.jobs.models import Job

OWNER = {"owner": "payments"}


@pytest.fixture
def blob(hsm, admin, key_name):
    # The standards' default policy (rotate 30 days before a two-year expiry) goes with it.
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="setup")
    return services.key_backup(hsm=hsm, name=key_name, actor=admin, request_id="setup")


def _sync(hsm, admin) -> None:
    job = services.inventory_sync_start(hsm=hsm, actor=admin)
    services.inventory_sync_run(job_id=job.pk)
    assert Job.objects.get(pk=job.pk).status == "succeeded"


def _assert_restore_audited_on_the_key(hsm, name):
    target = f"hsm:{hsm.name}/key:{name}"
    done = AuditEvent.objects.get(action="key.restore", outcome="succeeded")
    intent = AuditEvent.objects.get(action="key.restore", outcome="intent")
    assert done.target == target and done.detail["intent_seq"] == intent.seq
    assert "(from backup)" not in intent.target
    activity = [(e.action, e.outcome) for e in key_activity(hsm=hsm, name=name)]
    assert ("key.restore", "intent") in activity and ("key.restore", "succeeded") in activity


def test_api_restore_is_audited_on_the_key_and_is_no_drift(api_as, admin, hsm, secondary_hsm,
                                                           key_name, blob):
    client = api_as(admin)
    response = client.post(f"/api/v1/hsms/{secondary_hsm.name}/keys/restore/",
                           {"value": base64.b64encode(blob).decode()}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["rotation_policy"]["lifetime_actions"] == [
        {"action": "Rotate", "time_before_expiry": "P30D"}]
    _assert_restore_audited_on_the_key(secondary_hsm, key_name)
    found = client.get("/api/v1/audit-events/",
                       {"target": f"hsm:{secondary_hsm.name}/key:{key_name}",
                        "action": "key.restore"}).json()
    rows = found["results"] if isinstance(found, dict) else found
    assert [row["outcome"] for row in rows] == ["succeeded"]

    _sync(secondary_hsm, admin)
    record = KeyRecord.objects.get(hsm=secondary_hsm, name=key_name)
    assert (record.drift, record.drift_note) == (False, "")


def test_page_restore_is_audited_on_the_key_and_is_no_drift(client, admin, hsm, secondary_hsm,
                                                            key_name, blob):
    client.force_login(admin)
    response = client.post(f"/hsms/{secondary_hsm.name}/keys/restore/", {
        "backup_file": SimpleUploadedFile("k.keybackup", blob)})
    assert response.status_code == 302
    assert response["Location"] == f"/hsms/{secondary_hsm.name}/keys/{key_name}/"
    _assert_restore_audited_on_the_key(secondary_hsm, key_name)
    page = client.get(response["Location"] + "activity/")  # the key's Activity tab
    assert page.status_code == 200 and page.content.count(b"key.restore") >= 2

    _sync(secondary_hsm, admin)
    assert KeyRecord.objects.get(hsm=secondary_hsm, name=key_name).drift is False
