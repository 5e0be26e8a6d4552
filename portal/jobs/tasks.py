"""Celery tasks of the jobs app: thin wrappers that claim a Job and call one service."""
from celery import shared_task


@shared_task(bind=True, acks_late=True)
def selfcheck_run(self, job_id: int) -> None:
    """Run one self-check Job. Delivering it twice does no harm."""
    from portal.jobs import services

    if not services.job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    services.selfcheck_run(job_id=job_id)
