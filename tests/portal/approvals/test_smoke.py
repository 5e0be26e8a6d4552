from portal.approvals.models import ApprovalRequest
from portal.approvals.services import approval_decide, approval_execute
from tests.portal.approvals.conftest import runs, test_operation


def test_request_approve_execute(admin, approver):
    req = test_operation(actor=admin, request_id="r1", note="hello")
    assert isinstance(req, ApprovalRequest) and req.status == "pending"
    req = approval_decide(approval_id=req.pk, actor=approver, decision="approve")
    assert req.status == "approved" and req.job is not None
    approval_execute(job_id=req.job.pk)
    req.refresh_from_db()
    assert req.status == "executed", req.failure_reason
    assert runs(req.pk) == 1
