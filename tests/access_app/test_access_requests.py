"""Access requests through approvals to the emulator (checked with the SDK), expiry with a
moved clock, and the audit chain under one correlation id."""
from datetime import timedelta

import pytest
from django.utils import timezone

from access_app import services
from access_app.models import AccessRequest, RoleAssignmentRecord
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.errors import BadInput, Conflict
from tests.access_app.conftest import ROLE_IDS, approve_and_run, hsm_assignments
from tests.support.race import at_once


def _request(hsm, admin, principal, *, role="Managed HSM Crypto User", scope="/keys/k-one",
             hours=2, request_id="req-1"):
    return services.access_request_create(
        hsm=hsm, principal_id=principal["object_id"], role=role, scope=scope,
        justification="Payments batch needs to unwrap its data key.", ticket="CHG-1234",
        duration_hours=hours, actor=admin, request_id=request_id)


def test_request_waits_for_approval_then_grants_on_the_hsm(synced, admin, approver, principal,
                                                           sdk_access):
    access_request, pending = _request(synced, admin, principal)
    assert isinstance(pending, ApprovalRequest) and pending.required_approvals == 1
    assert access_request.status == "pending"
    assert hsm_assignments(sdk_access, principal["object_id"]) == []  # nothing before approval

    approval = approve_and_run(pending, approver)
    assert approval.status == "executed", approval.failure_reason
    access_request.refresh_from_db()
    assert access_request.status == "active"
    assert access_request.expires_at == access_request.granted_at + timedelta(hours=2)
    on_hsm = hsm_assignments(sdk_access, principal["object_id"])
    assert [(a.name, a.properties.scope, a.properties.role_definition_id) for a in on_hsm] == [
        (access_request.assignment_name, "/keys/k-one",
         "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
         + ROLE_IDS["Crypto User"])]
    row = RoleAssignmentRecord.objects.get(name=access_request.assignment_name)
    assert row.origin == "portal" and row.access_request_id == access_request.pk


def test_crypto_officer_at_root_needs_two_approvers(synced, admin, approver, approver2,
                                                    principal, sdk_access):
    _, pending = _request(synced, admin, principal, role="Managed HSM Crypto Officer", scope="/")
    assert pending.required_approvals == 2
    from portal.approvals.services import approval_decide

    once = approval_decide(approval_id=pending.pk, actor=approver, decision="approve")
    assert once.status == "pending" and hsm_assignments(sdk_access, principal["object_id"]) == []
    approval = approve_and_run(once, approver2)
    assert approval.status == "executed"
    assert len(hsm_assignments(sdk_access, principal["object_id"])) == 1


def test_the_requester_cannot_approve_their_own_grant(synced, admin, principal):
    from portal.approvals.services import SelfApprovalRefused, approval_decide

    _, pending = _request(synced, admin, principal)
    with pytest.raises(SelfApprovalRefused):
        approval_decide(approval_id=pending.pk, actor=admin, decision="approve")


@pytest.mark.parametrize("field,value,code", [
    ("duration_hours", 0, "bad_duration"), ("duration_hours", 73, "bad_duration"),
    ("duration_hours", "8.5", "bad_duration"), ("duration_hours", "eight", "bad_duration"),
    ("scope", "/secrets", "bad_scope"), ("scope", "/keys/has space", "bad_scope"),
    ("principal_id", "alice@example.com", "bad_principal"),
    ("justification", "short", "bad_justification"), ("ticket", "x" * 65, "bad_ticket"),
    ("role", "Managed HSM Astronaut", "unknown_role"),
])
def test_bad_input_is_a_sentence(synced, admin, principal, field, value, code):
    kwargs = {"principal_id": principal["object_id"], "role": "Managed HSM Crypto User",
              "scope": "/keys/k-one", "justification": "A good enough reason.", "ticket": "",
              "duration_hours": 4, field: value}
    with pytest.raises(BadInput) as info:
        services.access_request_create(hsm=synced, actor=admin, request_id="r", **kwargs)
    assert info.value.code == code and info.value.message.endswith(".")
    assert AccessRequest.objects.count() == 0


def test_a_changed_request_is_not_granted(synced, admin, approver, principal, sdk_access):
    access_request, pending = _request(synced, admin, principal)
    AccessRequest.objects.filter(pk=access_request.pk).update(scope="/")  # after the request
    approval = approve_and_run(pending, approver)
    assert approval.status == "failed" and "no longer matches" in approval.failure_reason
    assert hsm_assignments(sdk_access, principal["object_id"]) == []


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_executions_make_one_assignment(hsm, admin, approver, principal,
                                                          sdk_access):
    from portal.approvals.services import approval_decide, approval_execute

    services.rbac_sync(hsm=hsm)
    access_request, pending = _request(hsm, admin, principal)
    approved = approval_decide(approval_id=pending.pk, actor=approver, decision="approve")
    at_once([lambda: approval_execute(job_id=approved.job.pk)] * 20, timeout=60)
    assert len(hsm_assignments(sdk_access, principal["object_id"])) == 1
    assert AuditEvent.objects.filter(action="role_assignment.create", outcome="intent").count() == 1
    access_request.refresh_from_db()
    assert access_request.status == "active"


def test_grant_expires_within_one_beat_after_its_time(synced, admin, approver, principal,
                                                      sdk_access, monkeypatch, settings):
    access_request, pending = _request(synced, admin, principal, hours=1)
    approve_and_run(pending, approver)
    access_request.refresh_from_db()
    beat = settings.CELERY_BEAT_SCHEDULE["access-housekeeping"]["schedule"]
    assert settings.CELERY_BEAT_SCHEDULE["access-housekeeping"]["task"] == \
        "access_app.tasks.access_housekeeping"
    from access_app.tasks import access_housekeeping

    # One second before expiry the beat leaves it alone.
    monkeypatch.setattr(services, "now", lambda: access_request.expires_at - timedelta(seconds=1))
    access_housekeeping()
    assert len(hsm_assignments(sdk_access, principal["object_id"])) == 1
    # The clock moves past expiry; the next beat (at most one interval later) removes it.
    monkeypatch.setattr(services, "now",
                        lambda: access_request.expires_at + timedelta(seconds=beat))
    assert access_housekeeping()["expired"] == 1
    assert hsm_assignments(sdk_access, principal["object_id"]) == []
    access_request.refresh_from_db()
    assert access_request.status == "expired" and access_request.ended_at is not None
    row = RoleAssignmentRecord.objects.get(name=access_request.assignment_name)
    assert row.removed_at is not None
    assert access_housekeeping()["expired"] == 0  # once


def test_audit_tells_request_approval_assignment_revocation_with_one_id(
        synced, admin, approver, principal, monkeypatch):
    from django.db.models import Q

    access_request, pending = _request(synced, admin, principal, hours=1)
    approve_and_run(pending, approver)
    access_request.refresh_from_db()
    monkeypatch.setattr(services, "now", lambda: access_request.expires_at + timedelta(minutes=1))
    services.access_expire_due()
    cid = access_request.correlation_id
    assert cid == pending.correlation_id
    rows = list(AuditEvent.objects.filter(
        Q(request_id=cid) | Q(detail__correlation_id=cid)).order_by("seq"))
    story = [(e.action, e.outcome) for e in rows]
    assert story == [
        ("approval.request", "recorded"), ("access_request.create", "recorded"),
        ("approval.approve", "recorded"), ("approval.execute", "intent"),
        ("role_assignment.create", "intent"), ("role_assignment.create", "succeeded"),
        ("approval.execute", "succeeded"), ("role_assignment.delete", "intent"),
        ("role_assignment.delete", "succeeded")], story
    assert rows[-1].actor_name == "system" and rows[-2].detail["reason"] == "expired"


def test_a_principal_already_holding_the_role_there_is_told_so(synced, admin, approver,
                                                               principal):
    _, pending = _request(synced, admin, principal)
    approve_and_run(pending, approver)
    with pytest.raises(Conflict) as info:
        _request(synced, admin, principal, request_id="req-2")
    assert info.value.code == "already_assigned"


def test_max_duration_is_configurable(synced, admin, principal, settings):
    settings.ACCESS_MAX_DURATION_HOURS = 4
    with pytest.raises(BadInput) as info:
        _request(synced, admin, principal, hours=5)
    assert "from 1 to 4" in info.value.message
    access_request, _ = _request(synced, admin, principal, hours=4)
    assert access_request.duration_hours == 4


def test_expiry_failure_is_retried_next_beat(synced, admin, approver, principal, sdk_access,
                                             monkeypatch, emulator):
    access_request, pending = _request(synced, admin, principal, hours=1)
    approve_and_run(pending, approver)
    access_request.refresh_from_db()
    monkeypatch.setattr(services, "now", lambda: access_request.expires_at + timedelta(minutes=1))
    emulator.fail("DELETE", "/keys/k-one/providers/Microsoft.Authorization/roleAssignments/"
                  + access_request.assignment_name, status=503, count=1)
    assert services.access_expire_due() == 0
    access_request.refresh_from_db()
    assert access_request.status == "active" and access_request.error
    assert services.access_expire_due() == 1
    assert hsm_assignments(sdk_access, principal["object_id"]) == []
    assert timezone.now()  # the real clock was never touched


def test_a_denied_or_expired_approval_closes_the_request(synced, admin, approver, principal,
                                                         sdk_access):
    from portal.approvals.services import approval_decide

    denied, pending = _request(synced, admin, principal, request_id="d-1")
    approval_decide(approval_id=pending.pk, actor=approver, decision="deny", comment="No ticket")
    lapsed, other = _request(synced, admin, principal, scope="/keys/k-two", request_id="d-2")
    ApprovalRequest.objects.filter(pk=other.pk).update(expires=timezone.now() - timedelta(minutes=1))
    assert services.access_housekeeping()["settled"] == 2
    denied.refresh_from_db()
    lapsed.refresh_from_db()
    assert (denied.status, lapsed.status) == ("denied", "not_granted")
    assert "expired" in lapsed.error
    closes = AuditEvent.objects.filter(action="access_request.close")
    assert {e.request_id for e in closes} == {denied.correlation_id, lapsed.correlation_id}
    assert hsm_assignments(sdk_access, principal["object_id"]) == []
    assert services.access_requests_settle() == 0


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_approvers_make_one_assignment(hsm, admin, principal, sdk_access):
    from portal.approvals.services import approval_decide, approval_execute
    from portal.jobs.models import Job
    from tests.factories import user_in_role

    services.rbac_sync(hsm=hsm)
    approvers = [user_in_role(f"approver-{n}", "approver") for n in range(20)]
    access_request, pending = _request(hsm, admin, principal)
    results = at_once([lambda person=person: approval_decide(
        approval_id=pending.pk, actor=person, decision="approve") for person in approvers],
        timeout=60)
    assert all(isinstance(r, (ApprovalRequest, Conflict)) for r in results)  # decided, or refused
    assert sum(isinstance(r, ApprovalRequest) for r in results) == 1
    jobs = list(Job.objects.filter(kind="approval.execute"))
    assert len(jobs) == 1
    approval_execute(job_id=jobs[0].pk)
    assert len(hsm_assignments(sdk_access, principal["object_id"])) == 1
    access_request.refresh_from_db()
    assert access_request.status == "active"


def test_a_manual_revocation_of_a_grant_keeps_its_correlation_id(synced, admin, approver,
                                                                 approver2, principal,
                                                                 sdk_access):
    access_request, pending = _request(synced, admin, principal)
    approve_and_run(pending, approver)
    revoke = services.role_assignment_revoke_request(hsm=synced, name=access_request.assignment_name,
                                                     actor=admin, request_id="rv-http")
    assert isinstance(revoke, ApprovalRequest) and revoke.operation == "role_assignment.delete"
    approve_and_run(revoke, approver2)
    assert hsm_assignments(sdk_access, principal["object_id"]) == []
    access_request.refresh_from_db()
    assert access_request.status == "revoked"
    deletes = AuditEvent.objects.filter(action="role_assignment.delete").order_by("seq")
    assert [(e.outcome, e.request_id) for e in deletes] == [
        ("intent", access_request.correlation_id), ("succeeded", access_request.correlation_id)]
    asked = AuditEvent.objects.get(action="approval.request", detail__approval_id=revoke.pk)
    assert asked.request_id == access_request.correlation_id


def test_a_grant_left_by_a_dead_worker_is_finished_from_the_hsm(synced, admin, principal,
                                                                sdk_access, monkeypatch):
    from access_app.services import CLAIM_LEASE
    from portal.gateway import rbac

    made, _ = _request(synced, admin, principal, request_id="w-1")
    lost, _ = _request(synced, admin, principal, scope="/keys/k-lost", request_id="w-2")
    # Both claimed by a worker that died: one after the HSM call, one before it.
    long_ago = timezone.now() - CLAIM_LEASE - timedelta(minutes=1)
    AccessRequest.objects.filter(pk__in=[made.pk, lost.pk]).update(status="granting",
                                                                   claimed_at=long_ago)
    rbac.role_assignment_create(synced, scope=made.scope, definition_id=made.role_definition_id,
                                principal_id=made.principal_id, name=made.assignment_name)
    assert services.access_housekeeping()["recovered"] == 2
    made.refresh_from_db()
    lost.refresh_from_db()
    assert made.status == "active" and made.expires_at is not None
    assert lost.status == "failed" and "interrupted" in lost.error
    assert RoleAssignmentRecord.objects.get(name=made.assignment_name).access_request_id == made.pk
    assert AuditEvent.objects.filter(action="access_request.recover").count() == 2
    assert services.access_requests_recover() == 0
