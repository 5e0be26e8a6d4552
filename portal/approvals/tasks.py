"""Celery tasks of the approvals app: thin wrappers that claim a Job and call one service."""
from celery import shared_task


@shared_task(bind=True, acks_late=True)
def approval_execute(self, job_id: int) -> None:
    """Run one approved request (a claimed approval.execute Job). Delivering it twice does no
    harm: the job claim and the approval claim each let one run through."""
    from portal.approvals import services
    from portal.jobs.services import job_claim

    if not job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    services.approval_execute(job_id=job_id)


@shared_task
def approval_expire_due() -> None:
    """Beat: mark open requests past their expiry as expired, and queue again the approved
    ones whose job never ran."""
    from portal.approvals import services

    services.approval_expire_due()
    services.approval_requeue_stalled()


@shared_task
def approval_notify(approval_id: int) -> None:
    """Email the approvers of one new request."""
    from portal.approvals import services

    services.approval_notify(approval_id=approval_id)
