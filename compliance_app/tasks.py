"""Celery tasks of compliance_app: claim a Job, call one service."""
from celery import shared_task


def _claimed(task, job_id: int) -> bool:
    from portal.jobs.services import job_claim

    return job_claim(job_id=job_id, token=task.request.id or f"local-{job_id}")


@shared_task(bind=True, acks_late=True)
def posture_run(self, job_id: int) -> None:
    """Run one on-demand posture Job. Delivering it twice does no harm."""
    from compliance_app import services

    if _claimed(self, job_id):
        services.posture_run_execute(job_id=job_id)


@shared_task
def posture_run_scheduled() -> None:
    """The beat's posture run (POSTURE_RUN_SECONDS)."""
    from compliance_app import services

    services.posture_run_scheduled()


@shared_task(bind=True, acks_late=True, soft_time_limit=1800, time_limit=1860)
def evidence_pack_run(self, job_id: int) -> None:
    """Make one evidence pack (PDF + JSON). Delivering it twice does no harm."""
    from compliance_app import services

    if _claimed(self, job_id):
        services.evidence_pack_run(job_id=job_id)
