"""Reads for the backup catalog, schedules, restores and DR drills (ORM only)."""
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from dr_app.models import BackupRecord, BackupSchedule, DrDrill
from portal.jobs.models import Job

DR_KINDS = ("dr.backup", "dr.restore", "dr.drill")


def backup_list(*, hsm=None, status: str = "") -> QuerySet[BackupRecord]:
    """The catalog, newest first: what the portal ran and what storage holds."""
    qs = BackupRecord.objects.select_related("hsm", "job", "schedule")
    if hsm is not None:
        qs = qs.filter(hsm=hsm)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-started", "-id")


def backup_restorable(*, hsm=None) -> QuerySet[BackupRecord]:
    """Backups a restore may use (succeeded or found in storage, not deleted)."""
    return backup_list(hsm=hsm).filter(status__in=(BackupRecord.Status.SUCCEEDED,
                                                   BackupRecord.Status.FOUND)).exclude(folder="")


def backup_latest(*, hsm) -> BackupRecord | None:
    """The HSM's newest successful backup."""
    return backup_list(hsm=hsm, status=BackupRecord.Status.SUCCEEDED).order_by(
        "-finished").first()


def schedule_list(*, hsm=None) -> QuerySet[BackupSchedule]:
    qs = BackupSchedule.objects.select_related("hsm", "last_job")
    return qs.filter(hsm=hsm) if hsm is not None else qs


def schedule_get(*, hsm, schedule_id: int) -> BackupSchedule:
    return get_object_or_404(BackupSchedule, hsm=hsm, pk=schedule_id)


def dr_job_list(*, hsm=None, kind: str = "") -> QuerySet[Job]:
    """Backup, restore and drill jobs, newest first."""
    qs = Job.objects.select_related("hsm").filter(kind__in=DR_KINDS)
    if hsm is not None:
        qs = qs.filter(hsm=hsm)
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-created", "-id")


def jobs_needing_attention() -> QuerySet[Job]:
    """dr_app jobs with no final status DR_JOB_STUCK_HOURS after they were created."""
    cutoff = timezone.now() - timedelta(hours=settings.DR_JOB_STUCK_HOURS)
    return Job.objects.filter(kind__in=DR_KINDS, status__in=(Job.Status.QUEUED,
                                                             Job.Status.RUNNING),
                              created__lt=cutoff).order_by("created")


def jobs_needing_attention_count(user=None) -> int:
    return jobs_needing_attention().count()


def drill_list() -> QuerySet[DrDrill]:
    return DrDrill.objects.select_related("job").order_by("-created", "-id")


def drill_get(*, drill_id: int) -> DrDrill:
    return get_object_or_404(DrDrill.objects.select_related("job"), pk=drill_id)


def dashboard_figures(*, now) -> dict:
    """The dashboard's recovery tiles: stuck jobs, and HSMs without a recent backup."""
    from portal.gateway.models import HsmInstance

    since = now - timedelta(hours=24)
    backed_up = BackupRecord.objects.filter(
        status__in=(BackupRecord.Status.SUCCEEDED, BackupRecord.Status.FOUND),
        finished__gte=since, hsm__isnull=False).values("hsm")
    return {"attention": jobs_needing_attention_count(), "hours": settings.DR_JOB_STUCK_HOURS,
            "without_backup": HsmInstance.objects.exclude(pk__in=backed_up).count()}


def restore_describe(payload: dict) -> dict:
    """What an approver of a full restore sees: the target, the backup, what is replaced."""
    hsm, folder = payload.get("hsm_id", ""), payload.get("folder", "")
    container = payload.get("container", "")
    record = BackupRecord.objects.filter(container=container, folder=folder).first()
    change = [("Action", "Full restore: every key, version and role assignment of the HSM "
                         "is replaced by the backup's"),
              ("Target HSM", hsm), ("Backup folder", folder), ("Container", container),
              ("Storage access", payload.get("auth_mode", ""))]
    if record is None:
        context = [("In the catalog", "Not found (read the storage container to add it)")]
    else:
        context = [("Backup of", record.source_hsm_name),
                   ("Backup taken", f"{record.started:%Y-%m-%d %H:%M} UTC"
                    if record.started else "Unknown"),
                   ("Keys in the backup", record.key_count if record.key_count is not None
                    else "Unknown"),
                   ("Status", record.get_status_display())]
    try:
        from keys_app.models import KeyRecord

        context.append(("Keys on the target now (inventory)",
                        KeyRecord.objects.filter(hsm__name=hsm, state="active").count()))
    except ImportError:
        pass
    return {"title": f"Full restore of {hsm} from {folder}", "change": change,
            "context": context}


def restore_steps(job: Job) -> list[dict]:
    """A restore job's readiness checks and restore as steps: name, state, detail.

    state: passed, failed, running, waiting, or skipped once the job has ended (from
    params.gate and params.ops, written as the job goes).
    """
    from dr_app.services import GATE_CHECKS

    gate = job.params.get("gate", [])
    ops = job.params.get("ops", {})
    failed_job = job.status == Job.Status.FAILED
    steps, blocked = [], False
    for index, name in enumerate(GATE_CHECKS):
        if index < len(gate):
            entry = gate[index]
            state = "passed" if entry.get("ok") else "failed"
            blocked = blocked or state == "failed"
            steps.append({"name": name, "state": state, "detail": entry.get("detail", "")})
            continue
        current = not blocked and index == len(gate) and not job.is_finished
        if index == 5 and "safety_backup" in ops and not blocked:
            current = not job.is_finished
            detail = ("taking a safety backup: HSM operation "
                      f"{ops['safety_backup'].get('operation_id') or '(starting)'}")
        else:
            detail = ""
        state = "failed" if failed_job and not blocked and index == len(gate) else \
            "running" if current else "waiting"
        blocked = blocked or state == "failed"
        steps.append({"name": name, "state": state, "detail": detail})
    restore = ops.get("restore", {})
    what = f"Restore of key {job.params.get('key_name')}" if job.params.get("key_name") else \
        "Full restore"
    if restore.get("done"):
        state, detail = "passed", f"HSM operation {restore.get('operation_id', '')}"
    elif blocked:
        state, detail = "waiting", "not started"
    elif restore:
        state = "failed" if failed_job else "running"
        detail = f"HSM operation {restore.get('operation_id') or '(starting)'}"
    else:
        state, detail = ("failed" if failed_job else "waiting"), ""
    steps.append({"name": what, "state": state, "detail": detail})
    if job.is_finished:  # nothing waits any more: what did not run was skipped
        for step in steps:
            if step["state"] in ("waiting", "running"):
                step["state"], step["detail"] = "skipped", ""
    return steps


def restore_job_get(*, job_id: int) -> Job:
    """One restore job or 404."""
    return get_object_or_404(Job.objects.select_related("hsm"), pk=job_id, kind="dr.restore")
