"""Celery tasks of dr_app: claim a Job, call one service.

Backups and restores wait on the HSM for minutes (hours for a large HSM), so these tasks
have their own time limits; a worker that dies is replaced through `dr_tick` (the job's
stored continuation token is resumed, nothing is started twice).
"""
from celery import shared_task

LONG = {"soft_time_limit": 4 * 3600, "time_limit": 4 * 3600 + 60}


def _claimed(task, job_id: int) -> str | None:
    from portal.jobs.services import job_claim

    token = task.request.id or f"local-{job_id}"
    return token if job_claim(job_id=job_id, token=token) else None


@shared_task(bind=True, acks_late=True, **LONG)
def backup_run(self, job_id: int) -> None:
    """Run one full-backup Job. Delivering it twice does no harm."""
    from dr_app import services

    token = _claimed(self, job_id)
    if token:
        services.backup_run(job_id=job_id, token=token)


@shared_task(bind=True, acks_late=True, **LONG)
def restore_run(self, job_id: int) -> None:
    """Run one restore Job (readiness gate, safety backup, restore)."""
    from dr_app import services

    token = _claimed(self, job_id)
    if token:
        services.restore_run(job_id=job_id, token=token)


@shared_task(bind=True, acks_late=True, **LONG)
def drill_run(self, job_id: int) -> None:
    """Run one DR drill Job."""
    from dr_app import services

    token = _claimed(self, job_id)
    if token:
        services.drill_run(job_id=job_id, token=token)


@shared_task
def dr_tick() -> None:
    """Every minute (beat): start due scheduled backups, apply retention, resume jobs whose
    worker died."""
    from dr_app import services

    services.dr_tick()
