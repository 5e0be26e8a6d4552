"""Celery tasks of the audit trail: thin wrappers that call one service each.

A PortalError (no HSM registered yet, storage unreachable) is a logged sentence and the
next beat tries again; the services audit what they did.
"""
import logging

from celery import shared_task

from portal.errors import PortalError

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def hsm_audit_ingest() -> dict:
    """Beat: read new HSM AuditEvents from the diagnostic setting's storage (or workspace)."""
    from portal.audit.hsm_events import hsm_audit_ingest as ingest

    try:
        return ingest()
    except PortalError as exc:
        logger.warning("HSM audit events were not read: %s", exc.message)
        return {}


@shared_task(acks_late=True)
def audit_checkpoint() -> int | None:
    """Beat: sign the chain head with the HSM key and store the checkpoint."""
    from portal.audit.checkpoints import checkpoint_create

    try:
        checkpoint = checkpoint_create()
    except PortalError as exc:
        logger.warning("No audit checkpoint was signed: %s", exc.message)
        return None
    return checkpoint.seq if checkpoint else None


@shared_task(acks_late=True)
def audit_retention_purge() -> dict:
    """Beat (daily): remove audit rows past the retention, behind a signed anchor."""
    from portal.audit.checkpoints import audit_retention_purge as purge

    try:
        return purge()
    except PortalError as exc:
        logger.warning("The audit retention purge did not run: %s", exc.message)
        return {}


# A long trail takes minutes (about 20 s per million rows here): an hour's limit.
@shared_task(bind=True, acks_late=True, soft_time_limit=3600, time_limit=3660)
def audit_verify_job(self, job_id: int) -> None:
    """Run one "Verify now" Job. Delivering it twice does no harm."""
    from portal.audit.checkpoints import audit_verify_job_run
    from portal.jobs import services

    if not services.job_claim(job_id=job_id, token=self.request.id or f"local-{job_id}"):
        return
    audit_verify_job_run(job_id=job_id)
