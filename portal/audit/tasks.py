"""Celery tasks of the audit trail: thin wrappers that call one service each."""
from celery import shared_task


@shared_task(acks_late=True)
def hsm_audit_ingest() -> dict:
    """Beat: read new HSM AuditEvents from the diagnostic setting's storage (or workspace)."""
    from portal.audit.hsm_events import hsm_audit_ingest as ingest

    return ingest()


@shared_task(acks_late=True)
def audit_checkpoint() -> int | None:
    """Beat: sign the chain head with the HSM key and store the checkpoint."""
    from portal.audit.checkpoints import checkpoint_create

    checkpoint = checkpoint_create()
    return checkpoint.seq if checkpoint else None


@shared_task(acks_late=True)
def audit_retention_purge() -> dict:
    """Beat (daily): remove audit rows past the retention, behind a signed anchor."""
    from portal.audit.checkpoints import audit_retention_purge as purge

    return purge()


@shared_task(bind=True, acks_late=True)
def audit_verify_job(self, job_id: int) -> None:
    """Run one "Verify now" Job. Delivering it twice does no harm."""
    from portal.audit.checkpoints import audit_verify_job_run
    from portal.jobs import services

    if not services.job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    audit_verify_job_run(job_id=job_id)
