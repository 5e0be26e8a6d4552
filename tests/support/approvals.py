"""Maker-checker in tests: approve a pending request as other people and run its job here.

Dangerous services return a pending ApprovalRequest instead of acting; tests that need the
effect (a key really deleted or purged in the emulator) approve it as fresh approvers (never
the requester) and run the approval.execute job in this process, as a worker would.
"""
import uuid

from portal.approvals.models import ApprovalRequest
from portal.approvals.services import approval_decide, approval_execute
from portal.jobs.services import job_claim
from tests.factories import user_in_role


def approve_and_run(req, *, approvers=()) -> ApprovalRequest:
    """Approve `req` (an ApprovalRequest, its id, or a 202 API response) until the policy is
    met, run its execution job, and return it refreshed. Fails if it did not execute."""
    if hasattr(req, "json"):
        assert req.status_code == 202, req.content
        req = req.json()["approval_request"]["id"]
    if not isinstance(req, ApprovalRequest):
        req = ApprovalRequest.objects.get(pk=req)
    people = list(approvers)
    while req.status == ApprovalRequest.Status.PENDING:
        approver = people.pop(0) if people else user_in_role(
            f"approver-{uuid.uuid4().hex[:8]}", "approver")
        req = approval_decide(approval_id=req.pk, actor=approver, decision="approve",
                              comment="approved in a test")
    run_job(req)
    req.refresh_from_db()
    assert req.status == ApprovalRequest.Status.EXECUTED, req.failure_reason
    return req


def run_job(req: ApprovalRequest) -> None:
    """Claim and run the request's approval.execute job in this process."""
    assert req.job_id, f"request #{req.pk} has no execution job ({req.status})"
    if job_claim(job_id=req.job_id, token=f"test-{req.job_id}"):
        approval_execute(job_id=req.job_id)


def run_approved(service, **kwargs):
    """Call a dangerous service the way its door does, then approve and run the request."""
    pending = service(**kwargs)
    assert isinstance(pending, ApprovalRequest), f"{service.__name__} did not ask for approval"
    return approve_and_run(pending)
