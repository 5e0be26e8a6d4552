"""Celery tasks of the keys app: thin wrappers that claim a Job and call one service."""
from celery import shared_task


@shared_task(bind=True, acks_late=True)
def inventory_sync_run(self, job_id: int) -> None:
    """Sync one HSM's key inventory (a claimed Job). Delivering it twice does no harm."""
    from keys_app import services
    from portal.jobs.services import job_claim

    if not job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    services.inventory_sync_run(job_id=job_id)


@shared_task
def inventory_sync_all() -> None:
    """Beat: queue an incremental inventory sync of every registered HSM."""
    from keys_app import services

    services.inventory_sync_all()
