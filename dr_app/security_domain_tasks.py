"""Celery tasks of the security domain: claim the Job, call one service."""
from celery import shared_task


@shared_task(bind=True, acks_late=True)
def security_domain_activate_run(self, job_id: int) -> None:
    """Run one activation Job. Delivering it twice does no harm (job_claim)."""
    from dr_app import security_domain
    from portal.jobs.services import job_claim

    if not job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    security_domain.security_domain_activate_run(job_id=job_id)


@shared_task(bind=True, acks_late=True)
def security_domain_upload_run(self, job_id: int) -> None:
    """Run one security-domain upload Job. Delivering it twice does no harm (job_claim)."""
    from dr_app import security_domain
    from portal.jobs.services import job_claim

    if not job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    security_domain.security_domain_upload_run(job_id=job_id)


@shared_task
def security_domain_housekeeping() -> dict:
    """Beat (every 5 minutes): resume jobs whose worker died, delete expired files."""
    from dr_app.security_domain import security_domain_housekeeping as run

    return run()
