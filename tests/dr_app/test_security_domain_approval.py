"""The security-domain upload is maker-checker: nothing runs before approval, the approval
binds the exact file (its SHA-256), the requester cannot approve it, a denied request
leaves nothing behind to run, and an approved request whose file expired does not run."""
from datetime import timedelta

import pytest
from django.utils import timezone

from dr_app import security_domain as services
from dr_app.models_sd import SecurityDomainFile, SecurityDomainState
from dr_app.security_domain_apps import describe_upload
from portal.approvals import registry
from portal.approvals.models import ApprovalRequest
from portal.approvals.services import approval_decide
from portal.errors import PortalError
from portal.gateway.models import HsmInstance
from portal.jobs.models import Job
from tests.support.approvals import approve_and_run, run_job
from tests.support.sessions import signed_in

pytestmark = pytest.mark.django_db

BLOB = b'{"EncData": "prepared offline for this exchange key"}'


@pytest.fixture
def recovering(db, settings, tmp_path):
    """An HSM whose recovery started (its exchange key was fetched)."""
    settings.VAR_DIR = tmp_path
    hsm = HsmInstance.objects.create(name="phoenix", uri="https://phoenix.managedhsm.azure.net")
    SecurityDomainState.objects.create(hsm=hsm, exchange_key_sha256="ab" * 32,
                                       exchange_key_fetched=timezone.now())
    return hsm


def request_upload(hsm, admin) -> ApprovalRequest:
    pending = services.security_domain_upload_request(hsm=hsm, blob=BLOB, actor=admin,
                                                      request_id="r", justification="drill")
    assert isinstance(pending, ApprovalRequest)
    return pending


def test_upload_waits_for_approval_bound_to_the_files_sha256(admin, recovering,
                                                             django_capture_on_commit_callbacks):
    pending = request_upload(recovering, admin)
    row = SecurityDomainFile.objects.get()
    assert pending.operation == "security_domain.upload"
    assert pending.payload == {"hsm": "phoenix", "file_id": str(row.pk),
                               "blob_sha256": row.sha256, "size": len(BLOB),
                               "exchange_key_sha256": "ab" * 32}
    with pytest.raises(PortalError, match="another registered HSM"):
        services.security_domain_upload_request(hsm=recovering, blob=BLOB, actor=admin,
                                                request_id="r", source_hsm="phoenix")
    assert not Job.objects.filter(kind=services.UPLOAD_KIND).exists()
    # The approver sees what they approve, the file by its digest.
    shown = dict(describe_upload(pending.payload)["change"])
    assert shown["Security domain file SHA-256"] == row.sha256
    assert registry.label("security_domain.upload") == "Upload a security domain (recovery)"
    # The requester may not approve their own upload.
    with pytest.raises(PortalError):
        approval_decide(approval_id=pending.pk, actor=admin, decision="approve")
    with django_capture_on_commit_callbacks(execute=False):
        approve_and_run(pending)
    job = Job.objects.get(kind=services.UPLOAD_KIND)
    assert job.params["blob_sha256"] == row.sha256 and job.params["approval"] == pending.pk
    assert SecurityDomainState.objects.get(hsm=recovering).current_job == job


def test_a_changed_payload_is_not_covered_by_the_approval(admin, recovering,
                                                          django_capture_on_commit_callbacks):
    pending = request_upload(recovering, admin)
    with django_capture_on_commit_callbacks(execute=False):
        approve_and_run(pending)
    # Calling the service again with the used approval and another file is refused.
    with pytest.raises(PortalError):
        services.security_domain_upload(
            actor=admin, approval=pending, request_id="r", hsm="phoenix",
            file_id=str(SecurityDomainFile.objects.get().pk), blob_sha256="00" * 32,
            size=len(BLOB), exchange_key_sha256="ab" * 32)
    assert Job.objects.filter(kind=services.UPLOAD_KIND).count() == 1


def test_an_approved_upload_whose_file_expired_does_not_run(admin, approver, recovering):
    pending = request_upload(recovering, admin)
    SecurityDomainFile.objects.update(expires=timezone.now() - timedelta(seconds=1))
    req = approval_decide(approval_id=pending.pk, actor=approver, decision="approve")
    while req.status == ApprovalRequest.Status.PENDING:
        from tests.factories import user_in_role

        req = approval_decide(approval_id=req.pk, decision="approve",
                              actor=user_in_role(f"second-{req.pk}", "approver"))
    run_job(req)
    req.refresh_from_db()
    assert req.status == ApprovalRequest.Status.FAILED
    assert "upload it again" in req.failure_reason
    assert not Job.objects.filter(kind=services.UPLOAD_KIND).exists()


def test_a_denied_upload_never_runs(admin, approver, recovering):
    pending = request_upload(recovering, admin)
    approval_decide(approval_id=pending.pk, actor=approver, decision="deny", comment="no")
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.DENIED
    assert pending.job_id is None
    assert not Job.objects.filter(kind=services.UPLOAD_KIND).exists()


def test_the_upload_is_bounded_and_never_logged(client, settings, admin, recovering, caplog):
    import logging

    from django.core.files.uploadedfile import SimpleUploadedFile


    signed_in(client, admin)
    settings.PORTAL_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    url = f"/api/v1/hsms/{recovering.name}/security-domain/upload/"
    big = client.post(url, {"file": SimpleUploadedFile("blob.json", b"x" * 5000)})
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
    assert not SecurityDomainFile.objects.exists()

    caplog.set_level(logging.DEBUG)
    fine = client.post(url, {"file": SimpleUploadedFile("blob.json", BLOB)})
    assert fine.status_code == 202 and "approval_request" in fine.json()
    assert SecurityDomainFile.objects.count() == 1
    assert b"prepared offline" not in caplog.text.encode()


def test_an_upload_prepared_for_an_older_exchange_key_does_not_run(admin, approver, recovering):
    pending = request_upload(recovering, admin)
    # Someone ran init-recovery again: the HSM has a new exchange key.
    SecurityDomainState.objects.filter(hsm=recovering).update(exchange_key_sha256="cd" * 32)
    req = approval_decide(approval_id=pending.pk, actor=approver, decision="approve")
    run_job(req)
    req.refresh_from_db()
    assert req.status == ApprovalRequest.Status.FAILED
    assert "exchange key changed" in req.failure_reason
    assert not Job.objects.filter(kind=services.UPLOAD_KIND).exists()
