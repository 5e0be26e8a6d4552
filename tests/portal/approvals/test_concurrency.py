"""Twenty people approving one request at the same moment: exactly one execution.

Each thread is its own database connection, as separate web nodes would be; decisions on
one request serialise on its row (SELECT ... FOR UPDATE), and the execution claim is one
conditional UPDATE, so neither the approval nor the run can happen twice.
"""

import pytest
from rest_framework.test import APIClient

from keys_app import services as key_services
from keys_app.models import KeyRecord
from keys_app.spec import spec_build
from portal import gateway
from portal.approvals.models import ApprovalRequest
from portal.approvals.services import ApprovalRefused
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.factories import user_in_role
from tests.portal.approvals.conftest import runs, test_operation
from tests.support.race import at_once
from tests.support.waiting import wait_for

N = 20


def _approve_all_at_once(approval_id: int, approvers) -> list[int]:
    clients = [APIClient() for _ in approvers]
    for client, user in zip(clients, approvers, strict=True):
        client.force_authenticate(user)
    return at_once([lambda index=index, client=client: client.post(
        f"/api/v1/approvals/{approval_id}/approve/", {"comment": f"ok {index}"},
        format="json").status_code for index, client in enumerate(clients)])


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_approvals_queue_one_job_and_run_once(celery_worker):
    requester = user_in_role("req-admin", "admin")
    approvers = [user_in_role(f"approver-{i}", "approver") for i in range(N)]
    req = test_operation(actor=requester, request_id="r", note="race")

    statuses = _approve_all_at_once(req.pk, approvers)

    assert sorted(statuses) == [200] + [409] * (N - 1)
    assert Job.objects.filter(kind="approval.execute").count() == 1
    req.refresh_from_db()
    assert req.decisions.count() == 1
    # The real worker runs the job; the request ends executed, the operation ran once.
    wait_for(lambda: ApprovalRequest.objects.get(pk=req.pk).status == "executed")
    assert runs(req.pk) == 1
    assert AuditEvent.objects.filter(action="approval.execute", outcome="succeeded").count() == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_executions_of_one_approval_run_once():
    """The same approved request presented by 20 callers at once (a job delivered many
    times, a retried worker): the conditional UPDATE lets exactly one through."""
    requester = user_in_role("req-admin", "admin")
    approver = user_in_role("approver-x", "approver")
    from portal.approvals.services import approval_decide

    req = test_operation(actor=requester, request_id="r", note="claims")
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    approvals = [ApprovalRequest.objects.get(pk=req.pk) for _ in range(N)]
    results = at_once([lambda index=index, approval=approval: test_operation(
        actor=requester, request_id=f"r{index}", note="claims", approval=approval)
        for index, approval in enumerate(approvals)])
    outcomes = ["refused" if isinstance(r, ApprovalRefused) else r if isinstance(r, Exception)
                else "ran" for r in results]
    assert sorted(outcomes) == ["ran"] + ["refused"] * (N - 1)
    assert runs(req.pk) == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_approvals_of_a_key_delete_delete_it_once(hsm, key_name, emulator,
                                                                    celery_worker):
    requester = user_in_role("req-admin", "admin")
    approvers = [user_in_role(f"approver-{i}", "approver") for i in range(N)]
    key_services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM",
                                                     tags={"owner": "payments"}),
                            actor=requester, request_id="r0")
    client = APIClient()
    client.force_authenticate(requester)
    asked = client.delete(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/",
                          {"confirm_name": key_name, "justification": "retire"}, format="json")
    assert asked.status_code == 202
    approval_id = asked.json()["approval_request"]["id"]
    assert gateway.key_exists(hsm, key_name)

    statuses = _approve_all_at_once(approval_id, approvers)

    assert sorted(statuses) == [200] + [409] * (N - 1)
    req = wait_for(lambda: ApprovalRequest.objects.filter(
        pk=approval_id, status__in=("executed", "failed")).first(), timeout=90)
    assert req.status == "executed", req.failure_reason
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "deleted"
    assert key_name in [k.name for k in gateway.keys(hsm).list_deleted_keys()]
    deletes = AuditEvent.objects.filter(action="key.delete").order_by("seq")
    assert [e.outcome for e in deletes] == ["intent", "succeeded"]
    # The key's own audit rows carry the request's correlation id.
    assert deletes[0].detail["correlation_id"] == req.correlation_id
    assert deletes[0].actor_name == requester.username
