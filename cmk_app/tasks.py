"""Celery tasks of cmk_app: thin wrappers that claim a Job (or run the beat scan)."""
from celery import shared_task


@shared_task(bind=True, acks_late=True)
def cmk_attach_run(self, job_id: int) -> None:
    """Run one attach wizard (a claimed Job). Delivering it twice does no harm."""
    from cmk_app import services
    from portal.jobs.services import job_claim

    if not job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    services.cmk_attach_run(job_id=job_id)


@shared_task
def cmk_usage_scan() -> dict:
    """Beat: which resources use which key, read from Resource Manager."""
    from cmk_app import services

    return services.cmk_usage_scan()
