"""The generic approvals of key actions against the emulator: the direct path only asks,
the approved run acts, a run that fails is recorded on the request and audited."""
import pytest

from keys_app import services
from keys_app.models import KeyRecord
from keys_app.spec import spec_build
from portal import gateway
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.support.approvals import approve_and_run, run_job

OWNER = {"owner": "payments"}


@pytest.fixture
def deleted_key(hsm, admin, key_name):
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="r0")
    approve_and_run(services.key_delete(hsm=hsm, name=key_name, actor=admin, request_id="r1",
                                        confirm_name=key_name))
    return key_name


def test_every_door_of_a_purge_only_asks_and_the_approved_run_purges(api_as, client, admin,
                                                                     hsm, deleted_key):
    url = f"/api/v1/hsms/{hsm.name}/deleted-keys/{deleted_key}/purge/"
    typo = api_as(admin).post(url, {"confirm_name": "nope"}, format="json")
    assert typo.status_code == 400  # validated before a request is made
    assert not ApprovalRequest.objects.filter(operation="key.purge").exists()
    asked = api_as(admin).post(url, {"confirm_name": deleted_key, "ticket": "CHG-9"},
                               format="json")
    assert asked.status_code == 202
    body = asked.json()["approval_request"]
    assert (body["operation"], body["status"], body["ticket"], body["target"]) == (
        "key.purge", "pending", "CHG-9", f"hsm:{hsm.name}/key:{deleted_key}")
    assert body["payload"] == {"hsm": hsm.name, "name": deleted_key, "confirm_name": deleted_key}
    assert deleted_key in [k.name for k in gateway.keys(hsm).list_deleted_keys()]
    assert not AuditEvent.objects.filter(action="key.purge").exists()  # nothing was done

    req = approve_and_run(asked)
    assert deleted_key not in [k.name for k in gateway.keys(hsm).list_deleted_keys()]
    assert not KeyRecord.objects.filter(hsm=hsm, name=deleted_key).exists()
    purge_rows = AuditEvent.objects.filter(action="key.purge").order_by("seq")
    assert [(e.outcome, e.actor_name, e.detail.get("correlation_id")) for e in purge_rows] == [
        ("intent", admin.username, req.correlation_id),
        ("succeeded", admin.username, req.correlation_id)]
    assert Job.objects.get(pk=req.job_id).status == "succeeded"
    # One correlation id ties the chain: request -> approval -> execution -> the HSM action.
    from portal.approvals.selectors import approval_trail

    assert [(e.action, e.outcome) for e in approval_trail(req=req)] == [
        ("approval.request", "recorded"), ("approval.approve", "recorded"),
        ("approval.execute", "intent"), ("key.purge", "intent"), ("key.purge", "succeeded"),
        ("approval.execute", "succeeded")]


def test_a_run_that_fails_is_recorded_on_the_request_and_audited(admin, hsm, deleted_key):
    pending = services.key_purge(hsm=hsm, name=deleted_key, actor=admin, request_id="r",
                                 confirm_name=deleted_key)
    # Before it runs, someone recovers the key: the purge must not go through.
    services.key_recover(hsm=hsm, name=deleted_key, actor=admin, request_id="r2")
    from portal.approvals.services import approval_decide
    from tests.factories import user_in_role

    req = approval_decide(approval_id=pending.pk, actor=user_in_role("checker", "approver"),
                          decision="approve")
    run_job(req)
    req.refresh_from_db()
    assert req.status == "failed"
    assert "is not deleted" in req.failure_reason
    assert gateway.key_exists(hsm, deleted_key)
    failed = AuditEvent.objects.get(action="approval.execute", outcome="failed")
    assert failed.detail["correlation_id"] == req.correlation_id
    assert "is not deleted" in failed.detail["reason"]
    job = Job.objects.get(pk=req.job_id)
    assert job.status == "failed" and "is not deleted" in job.error


def test_a_changed_key_payload_is_refused_before_the_hsm_is_asked(admin, hsm, deleted_key):
    pending = services.key_purge(hsm=hsm, name=deleted_key, actor=admin, request_id="r",
                                 confirm_name=deleted_key)
    from portal.approvals.services import approval_decide
    from tests.factories import user_in_role

    req = approval_decide(approval_id=pending.pk, actor=user_in_role("checker", "approver"),
                          decision="approve")
    # The stored request is pointed at another key after approval.
    ApprovalRequest.objects.filter(pk=req.pk).update(
        payload={"hsm": hsm.name, "name": "other-key", "confirm_name": "other-key"})
    run_job(req)
    req.refresh_from_db()
    assert req.status == "void"
    assert deleted_key in [k.name for k in gateway.keys(hsm).list_deleted_keys()]
    assert not AuditEvent.objects.filter(action="key.purge").exists()
