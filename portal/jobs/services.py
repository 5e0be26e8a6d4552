"""Creating, claiming, advancing and finishing Jobs. Start and finish are audited."""
import time

from django.db import transaction
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.audit.redaction import redact
from portal.audit.services import audit_record
from portal.errors import QueueUnavailable
from portal.jobs.models import Job

MAX_LOG_LINES = 500


def job_target(job: Job) -> str:
    """The audit target text of a job."""
    return f"job:{job.pk}:{job.kind}"


def job_create(*, kind: str, actor, hsm=None, params: dict | None = None) -> Job:
    """A queued Job row (call inside the transaction that audits the request)."""
    return Job.objects.create(kind=kind, actor=actor if getattr(actor, "pk", None) else None,
                              actor_name=actor.get_username() if actor else "system",
                              hsm=hsm, params=redact(params or {}))


def job_enqueue_on_commit(*, job: Job, task) -> None:
    """Queue task(job.id) once the job's row commits; if the broker refuses, fail the job.

    A job whose message never reached the broker would wait forever: it is marked failed
    (audited) and the caller gets a 503 it can retry.
    """
    def enqueue() -> None:
        try:
            task.delay(job.id)
        except Exception as exc:  # kombu raises many kinds: any is "not queued"
            job_finish(job_id=job.id, ok=False,
                       error=f"The task queue is unavailable ({exc.__class__.__name__}).")
            raise QueueUnavailable("The task queue is unavailable; the job was not started. "
                                   "Try again shortly.") from exc

    transaction.on_commit(enqueue, robust=False)


def job_claim(*, job_id: int, token: str) -> bool:
    """Take a job for one worker: queued -> running, or running with the same token.

    A conditional UPDATE, so two deliveries of one message never both run it. False when
    another worker owns it or it has finished.
    """
    with transaction.atomic():
        claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.RUNNING, claim_token=token, started=timezone.now())
        if claimed:
            job = Job.objects.get(pk=job_id)
            audit_record(actor=None, action="job.start", target=job_target(job),
                         outcome=AuditEvent.Outcome.RECORDED,
                         detail={"kind": job.kind, "requested_by": job.actor_name})
            return True
    return Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, claim_token=token).exists()


def job_progress(*, job_id: int, percent: int, step: str = "", log: str = "") -> None:
    """Record progress (0-100, never backwards), the current step and a log line."""
    job = Job.objects.get(pk=job_id)
    lines = job.log
    if log:
        lines = (lines + [{"time": timezone.now().isoformat(timespec="seconds"),
                           "text": redact(log)}])[-MAX_LOG_LINES:]
    Job.objects.filter(pk=job_id).update(progress=max(job.progress, min(100, max(0, percent))),
                                         step=redact(step)[:200] or job.step, log=lines)


def job_finish(*, job_id: int, ok: bool, error: str = "", result: dict | None = None,
               step: str = "") -> Job:
    """End a running job (succeeded or failed) and audit the outcome. Idempotent.

    `step` replaces the default last step ("Finished", or "Failed during: <last step>")
    when the job knows better what failed.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.is_finished:
            return job
        job.status = Job.Status.SUCCEEDED if ok else Job.Status.FAILED
        job.progress = 100 if ok else job.progress
        job.step = redact(step)[:200] if step else \
            "Finished" if ok else f"Failed during: {job.step or 'start'}"[:200]
        job.error = redact(error)
        job.result = redact(result or {})
        job.finished = timezone.now()
        job.save(update_fields=["status", "progress", "step", "error", "result", "finished"])
        audit_record(actor=None, action="job.finish", target=job_target(job),
                     outcome=AuditEvent.Outcome.SUCCEEDED if ok else AuditEvent.Outcome.FAILED,
                     detail={"kind": job.kind, "error": job.error[:500]})
    return job


def selfcheck_start(*, actor, request_id: str) -> Job:
    """Queue a connectivity self-check (database, broker, every registered HSM). Audited."""
    from portal.jobs.tasks import selfcheck_run as selfcheck_run_task

    with transaction.atomic():
        job = job_create(kind="system.selfcheck", actor=actor)
        audit_record(actor=actor, action="job.request", target=job_target(job),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"kind": job.kind})
        job_enqueue_on_commit(job=job, task=selfcheck_run_task)
    return job


def selfcheck_run(*, job_id: int) -> Job:
    """Run each check of a claimed self-check job, reporting progress after each."""
    from django.db import connection

    from portal import gateway
    from portal.celery import app
    from portal.errors import PortalError
    from portal.gateway.models import HsmInstance

    checks = [("database", lambda: connection.ensure_connection()),
              ("broker", lambda: app.connection_for_write().ensure_connection(max_retries=1, interval_start=0, timeout=5))]
    for hsm in HsmInstance.objects.order_by("name"):
        checks.append((f"hsm {hsm.name}", lambda hsm=hsm: gateway.hsm_ping(hsm)))
    results, reasons, latency_ms = {}, {}, {}
    for done, (name, check) in enumerate(checks, start=1):
        started = time.monotonic()
        try:
            check()
        except PortalError as exc:
            reasons[name] = exc.message
        except Exception as exc:  # a check reports any failure; the job goes on
            reasons[name] = f"The {name} check failed ({exc.__class__.__name__})."
        # The dashboard shows each HSM's round trip from here, not a live call per page.
        latency_ms[name] = round((time.monotonic() - started) * 1000)
        results[name] = f"failed: {reasons[name]}" if name in reasons else "ok"
        job_progress(job_id=job_id, percent=int(done * 100 / len(checks)),
                     step=f"Checked {name}", log=f"{name}: {results[name]}")
    failed = [name for name, _check in checks if name in reasons]
    # Say which check failed (an HSM by its name), not merely the last one that ran.
    return job_finish(job_id=job_id, ok=not failed,
                      result={"checks": results, "latency_ms": latency_ms},
                      step=("Failed: " + ", ".join(failed)) if failed else "",
                      error=" ".join(f"{name}: {reasons[name]}" for name in failed))
