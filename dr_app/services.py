"""Backups, restores, schedules, retention and DR drills (writes; every action audited).

Long work runs as Jobs (portal.jobs). Every HSM operation a job starts goes through
`_operation`, which makes it resumable and never started twice:

1. the audit intent is written and `requested_at` stored on the Job (a conditional write:
   only the worker holding the claim token may do it) BEFORE the HSM is asked;
2. as soon as the HSM accepts, its continuation token (the status URL) and operation id
   are stored on the Job, before any wait;
3. while waiting, the worker renews its lease (JobLease) every few seconds.

A worker that dies anywhere leaves either nothing (step 1 not reached: the next worker
starts the operation), a stored token (the next worker resumes polling it), or, in the
instant between the HSM accepting and step 2, `requested_at` without a token: the next
worker does not guess, it fails the job and says which folder to check. `dr_tick` (beat)
hands a job whose lease is older than DR_JOB_LEASE_SECONDS to a new worker.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dr_app.models import (AuthMode, BackupRecord, BackupSchedule, DrDrill, HsmOperationSlot,
                           JobLease)
from portal import gateway
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result
from portal.errors import BadInput, Conflict, NotFound, PortalError
from portal.gateway import backups as storage
from portal.gateway.models import HsmInstance
from portal.jobs.models import Job
from portal.jobs.services import (job_create, job_enqueue_on_commit, job_finish, job_progress,
                                  job_target)

logger = logging.getLogger(__name__)

KIND_BACKUP, KIND_RESTORE, KIND_DRILL = "dr.backup", "dr.restore", "dr.drill"
DR_KINDS = (KIND_BACKUP, KIND_RESTORE, KIND_DRILL)
RESTORE_WINDOW = timedelta(minutes=30)  # the service's rule: a full backup this recent
CONTAINER_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,127}$")
KEY_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


class Superseded(Exception):
    """This worker no longer owns the job (another took it over); stop quietly."""


def hsm_target(hsm: HsmInstance) -> str:
    """Audit target text of an HSM."""
    return f"hsm:{hsm.name}"


def _hsm(hsm_id: str) -> HsmInstance:
    try:
        return HsmInstance.objects.get(name=hsm_id)
    except HsmInstance.DoesNotExist:
        raise NotFound(f"No HSM named {hsm_id} is registered.") from None


def _container(container: str) -> str:
    container = (container or settings.DR_BACKUP_CONTAINER).strip()
    if not CONTAINER_NAME.fullmatch(container):
        raise BadInput("A container name is 3 to 63 lower-case letters, digits and single "
                       "hyphens, starting and ending with a letter or digit.",
                       fields={"container": ["Not a valid container name."]})
    return container


def _auth_mode(auth_mode: str) -> str:
    if auth_mode not in AuthMode.values:
        raise BadInput("Authorize the HSM with 'sas' or 'managed_identity'.",
                       fields={"auth_mode": ["Choose sas or managed_identity."]})
    return auth_mode


def _folder(folder: str) -> str:
    if not FOLDER_NAME.fullmatch(folder or ""):
        raise BadInput("A backup folder name is letters, digits and hyphens (at most 128), "
                       "like mhsm-myhsm-2026113009151234.",
                       fields={"folder": ["Not a valid backup folder name."]})
    return folder


# ---------------------------------------------------------------- job plumbing

def _lease_renew(job_id: int, token: str) -> None:
    """Say this worker still runs the job; Superseded if another worker owns it now."""
    if not Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, claim_token=token).exists():
        raise Superseded()
    JobLease.objects.update_or_create(job_id=job_id, defaults={"beat": timezone.now()})


def _ops(job_id: int) -> dict:
    return dict(Job.objects.get(pk=job_id).params.get("ops", {}))


def _op_update(job_id: int, owner: str, step: str, **fields) -> dict:
    """Merge fields into params.ops[step] if this worker still owns the job (row lock)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.claim_token != owner or job.status != Job.Status.RUNNING:
            raise Superseded()
        ops = job.params.setdefault("ops", {})
        ops.setdefault(step, {}).update(fields)
        update = ["params"]
        if fields.get("operation_id"):
            job.external_operation_id = fields["operation_id"]
            update.append("external_operation_id")
        job.save(update_fields=update)
        return ops[step]


def _param_update(job_id: int, **fields) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        job.params.update(fields)
        job.save(update_fields=["params"])


def _poller(job_id: int, token: str, *, label: str, low: int, high: int):
    """on_poll callback: renew the lease, move the bar toward `high` as time passes."""
    started = timezone.now()

    def on_poll(status: str) -> None:
        _lease_renew(job_id, token)
        elapsed = (timezone.now() - started).total_seconds()
        percent = low + int((high - low) * elapsed / (elapsed + 30))
        job_progress(job_id=job_id, percent=percent,
                     step=f"{label}: the HSM reports {status or 'in progress'} "
                          f"({int(elapsed)} s)")
    return on_poll


def _slot_take(job: Job, hsm: HsmInstance) -> int | None:
    """Take the HSM's operation slot for this job; None if taken, else the holder's job id."""
    HsmOperationSlot.objects.get_or_create(hsm=hsm)
    with transaction.atomic():
        slot = HsmOperationSlot.objects.select_for_update().get(hsm=hsm)
        holder = slot.job_id
        if holder in (None, job.pk) or Job.objects.filter(
                pk=holder, status__in=Job.FINISHED).exists():
            if holder != job.pk:
                HsmOperationSlot.objects.filter(hsm=hsm).update(job=job, since=timezone.now())
            return None
        return holder


def _slot_wait(job: Job, token: str, hsm: HsmInstance, label: str) -> None:
    """Wait (renewing the lease) until this job holds the HSM's slot, at most
    DR_SLOT_WAIT_SECONDS; Conflict after that."""
    deadline = time.monotonic() + settings.DR_SLOT_WAIT_SECONDS
    told = None
    while (holder := _slot_take(job, hsm)) is not None:
        if time.monotonic() >= deadline:
            raise Conflict(f"HSM {hsm.name} is busy with job {holder} (one backup or restore "
                           "at a time); this job stopped waiting. Start it again later.",
                           code="hsm_busy")
        if told != holder:
            job_progress(job_id=job.pk, percent=job.progress,
                         step=f"{label}: waiting for HSM {hsm.name}",
                         log=f"{label}: HSM {hsm.name} is busy with job {holder}; waiting.")
            told = holder
        _lease_renew(job.pk, token)
        time.sleep(2)  # the HSM allows one operation at a time: the holder's job takes minutes


def _slot_free(job: Job, hsm: HsmInstance) -> None:
    HsmOperationSlot.objects.filter(hsm=hsm, job=job).update(job=None, since=None)


def _operation(*, job: Job, token: str, step: str, label: str, audit_action: str,
               target: str, detail: dict, start, resume, low: int, high: int,
               hsm: HsmInstance):
    """Run one HSM operation of a job exactly once, resumable (see the module docstring).

    `start(on_started, on_poll)` starts and waits; `resume(continuation_token, on_poll)`
    only waits. Returns the operation's result (JSON), also stored in params.ops[step].
    """
    state = _ops(job.pk).get(step, {})
    if state.get("done"):
        return state.get("result")
    _slot_wait(job, token, hsm, label)
    try:
        result = _operation_run(job=job, token=token, step=step, label=label, state=state,
                                audit_action=audit_action, target=target, detail=detail,
                                start=start, resume=resume, low=low, high=high)
    except Superseded:
        raise  # the worker that took the job over holds the slot now (same job)
    except BaseException:
        _slot_free(job, hsm)
        raise
    _slot_free(job, hsm)
    return result


def _operation_run(*, job: Job, token: str, step: str, label: str, state: dict,
                   audit_action: str, target: str, detail: dict, start, resume, low: int,
                   high: int):
    on_poll = _poller(job.pk, token, label=label, low=low, high=high)
    if state.get("continuation"):
        job_progress(job_id=job.pk, percent=low, step=f"{label}: resuming",
                     log=f"{label}: resuming the HSM's operation {state.get('operation_id')} "
                         "(started by an earlier worker); nothing new is started.")
        intent = AuditEvent.objects.filter(pk=state.get("audit_intent")).first()
        try:
            result = resume(state["continuation"], on_poll)
        except PortalError as exc:
            if intent is not None:
                audit_result(intent, ok=False, detail={"error": exc.code, "step": step})
            raise
    elif state.get("requested_at"):
        raise Conflict(f"{label}: the worker stopped while the HSM was accepting this "
                       "operation, so it may have started; it was not started again. Check "
                       "the HSM's backup folders (or its keys) before trying again.",
                       code="operation_unknown")
    else:
        intent = audit_record(actor=job.actor, action=audit_action, target=target,
                              detail={**detail, "job": job.pk})
        _op_update(job.pk, token, step, requested_at=timezone.now().isoformat(),
                   audit_intent=intent.pk)
        job_progress(job_id=job.pk, percent=low, step=f"{label}: asking the HSM",
                     log=f"{label}: starting.")

        def on_started(continuation: str) -> None:
            op_id = storage.operation_id(continuation)
            _op_update(job.pk, token, step, continuation=continuation, operation_id=op_id,
                       started_at=timezone.now().isoformat())
            job_progress(job_id=job.pk, percent=low + 1, step=f"{label}: started",
                         log=f"{label}: the HSM accepted it as operation {op_id}.")
        try:
            result = start(on_started, on_poll)
        except PortalError as exc:
            audit_result(intent, ok=False, detail={"error": exc.code, "step": step})
            raise
    if intent is not None:
        audit_result(intent, ok=True, detail={"step": step})
    _op_update(job.pk, token, step, done=True, result=result,
               finished_at=timezone.now().isoformat())
    job_progress(job_id=job.pk, percent=high, step=f"{label}: done", log=f"{label}: done.")
    return result


def _backup_operation(*, job: Job, token: str, step: str, hsm: HsmInstance, container: str,
                      auth_mode: str, label: str, low: int, high: int,
                      schedule: BackupSchedule | None = None) -> BackupRecord:
    """A full backup of `hsm` as one step of a job; its catalog row, succeeded."""
    mi = auth_mode == AuthMode.MANAGED_IDENTITY
    record, _created = BackupRecord.objects.get_or_create(
        job=job, hsm=hsm, defaults={"source_hsm_name": hsm.name, "container": container,
                                    "auth_mode": auth_mode, "schedule": schedule,
                                    "started": timezone.now()})
    storage.storage_container_ensure(container)

    def start(on_started, on_poll):
        return storage.backup_run(hsm, container=container, use_managed_identity=mi,
                                  on_started=on_started, on_poll=on_poll)

    def resume(continuation, on_poll):
        return storage.backup_run(hsm, container=container, use_managed_identity=mi,
                                  continuation_token=continuation, on_poll=on_poll)
    try:
        folder_url = _operation(job=job, token=token, step=step, label=label,
                                audit_action="backup.create", target=hsm_target(hsm),
                                detail={"container": container, "auth": auth_mode},
                                start=start, resume=resume, low=low, high=high, hsm=hsm)
    except PortalError as exc:
        BackupRecord.objects.filter(pk=record.pk).update(
            status=BackupRecord.Status.FAILED, error=exc.message[:2000], finished=timezone.now())
        raise
    _container_name, folder = storage.storage_split_folder_url(folder_url)
    listing = storage.storage_folder(container, folder) or {}
    manifest = listing.get("manifest") or {}
    started = _op_time(job.pk, step, "started_at") or record.started
    with transaction.atomic():
        # A folder the catalog already found in storage becomes this job's row.
        BackupRecord.objects.filter(container=container, folder=folder).exclude(
            pk=record.pk).delete()
        BackupRecord.objects.filter(pk=record.pk).update(
            status=BackupRecord.Status.SUCCEEDED, folder=folder, folder_url=folder_url,
            started=started, finished=timezone.now(), key_count=manifest.get("key_count"),
            size_bytes=listing.get("size_bytes"), blob_count=listing.get("blob_count"),
            seen_in_storage=timezone.now() if listing else None)
    record.refresh_from_db()
    job_progress(job_id=job.pk, percent=high, log=f"{label}: folder {folder} "
                 f"({listing.get('blob_count', 0)} blobs, {listing.get('size_bytes', 0)} bytes).")
    return record


def _op_time(job_id: int, step: str, name: str):
    from django.utils.dateparse import parse_datetime

    value = _ops(job_id).get(step, {}).get(name)
    return parse_datetime(value) if value else None


def _restore_operation(*, job: Job, token: str, step: str, hsm: HsmInstance, folder_url: str,
                       auth_mode: str, key_name: str, label: str, low: int, high: int) -> None:
    mi = auth_mode == AuthMode.MANAGED_IDENTITY

    def start(on_started, on_poll):
        storage.restore_run(hsm, folder_url=folder_url, use_managed_identity=mi,
                            key_name=key_name, on_started=on_started, on_poll=on_poll)

    def resume(continuation, on_poll):
        storage.restore_run(hsm, folder_url=folder_url, use_managed_identity=mi,
                            key_name=key_name, continuation_token=continuation, on_poll=on_poll)
    _container_name, folder = storage.storage_split_folder_url(folder_url)
    _operation(job=job, token=token, step=step, label=label,
               audit_action="restore.selective" if key_name else "restore.full",
               target=hsm_target(hsm), detail={"folder": folder, "key": key_name,
                                               "auth": auth_mode},
               start=start, resume=resume, low=low, high=high, hsm=hsm)


def _run_job(job_id: int, token: str, body) -> Job | None:
    """Run a claimed job's body; finish it failed on a PortalError; stop if superseded."""
    job = Job.objects.select_related("hsm", "actor").get(pk=job_id)
    try:
        _lease_renew(job_id, token)
        return body(job)
    except Superseded:
        return None
    except PortalError as exc:
        return job_finish(job_id=job_id, ok=False, error=exc.message)
    except Exception as exc:  # noqa: BLE001 - a job must end, not be resumed into the same bug
        logger.exception("dr_app job %s failed unexpectedly", job_id)
        return job_finish(job_id=job_id, ok=False,
                          error=f"The job failed unexpectedly ({exc.__class__.__name__}); "
                                "the portal's log has the details.")


# ---------------------------------------------------------------- backups

def backup_start(*, hsm: HsmInstance, actor, request_id: str, container: str = "",
                 auth_mode: str = AuthMode.SAS, schedule: BackupSchedule | None = None) -> Job:
    """Queue a full backup of one HSM (a Job) into a container, by SAS or managed identity."""
    from dr_app.tasks import backup_run as backup_run_task

    container, auth_mode = _container(container), _auth_mode(auth_mode)
    with transaction.atomic():
        job = job_create(kind=KIND_BACKUP, actor=actor, hsm=hsm, params={
            "container": container, "auth_mode": auth_mode,
            "schedule": schedule.pk if schedule else None})
        audit_record(actor=actor, action="backup.request", target=hsm_target(hsm),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"job": job.pk, "container": container, "auth": auth_mode,
                             "schedule": schedule.name if schedule else ""})
        job_enqueue_on_commit(job=job, task=backup_run_task)
    return job


def backup_run(*, job_id: int, token: str) -> Job | None:
    """Run a claimed backup job: one full backup, resumable; the catalog row follows it."""
    def body(job: Job) -> Job:
        schedule = BackupSchedule.objects.filter(pk=job.params.get("schedule")).first()
        record = _backup_operation(job=job, token=token, step="backup", hsm=job.hsm,
                                   container=job.params["container"],
                                   auth_mode=job.params["auth_mode"],
                                   label=f"Full backup of {job.hsm.name}", low=5, high=95,
                                   schedule=schedule)
        return job_finish(job_id=job.pk, ok=True, result={
            "folder": record.folder, "folder_url": record.folder_url,
            "key_count": record.key_count, "size_bytes": record.size_bytes})
    return _run_job(job_id, token, body)


def pre_backup_check(*, hsm: HsmInstance, actor, request_id: str, container: str = "",
                     auth_mode: str = AuthMode.SAS) -> dict:
    """Ask the HSM whether it could back up into the container now (nothing is written)."""
    container, auth_mode = _container(container), _auth_mode(auth_mode)
    intent = audit_record(actor=actor, action="backup.precheck", target=hsm_target(hsm),
                          request_id=request_id, detail={"container": container,
                                                         "auth": auth_mode})
    try:
        storage.storage_container_ensure(container)
        storage.pre_backup_check(hsm, container=container,
                                 use_managed_identity=auth_mode == AuthMode.MANAGED_IDENTITY)
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.code})
        return {"ok": False, "message": exc.message}
    audit_result(intent, ok=True)
    return {"ok": True, "message": f"HSM {hsm.name} can back up into container {container}."}


def catalog_refresh(*, hsm: HsmInstance | None = None, container: str = "", actor=None,
                    request_id: str = "") -> int:
    """Add folders found in storage to the catalog (rows the portal did not start) and
    update the sizes of known ones. Reads storage, writes only the catalog (audited as
    `backup.catalog.refresh` with the count); the number of new rows."""
    container = _container(container)
    intent = audit_record(actor=actor, action="backup.catalog.refresh",
                          target=hsm_target(hsm) if hsm else f"container:{container}",
                          request_id=request_id, detail={"container": container})
    try:
        added = _catalog_merge(hsm=hsm, container=container)
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.code})
        raise
    audit_result(intent, ok=True, detail={"added": added})
    return added


def _catalog_merge(*, hsm: HsmInstance | None, container: str) -> int:
    hsms = {h.name.lower(): h for h in HsmInstance.objects.all()}
    by_uri = {h.uri.rstrip("/").lower(): h for h in hsms.values()}
    added = 0
    now = timezone.now()
    found = set()
    for entry in storage.storage_folders(container):
        folder = entry["folder"]
        found.add(folder)
        manifest = entry.get("manifest") or {}
        source = str(manifest.get("hsm") or _folder_hsm(folder))
        # The manifest's HSM URL names the HSM whatever the portal calls it; else its name.
        source_hsm = by_uri.get(str(manifest.get("hsm_uri") or "").rstrip("/").lower()) \
            or hsms.get(source.lower())
        if hsm is not None and source_hsm != hsm:
            continue
        updated = BackupRecord.objects.filter(container=container, folder=folder).update(
            seen_in_storage=now, size_bytes=entry["size_bytes"], blob_count=entry["blob_count"])
        if updated:
            continue
        _obj, created = BackupRecord.objects.get_or_create(
            container=container, folder=folder, defaults={
                "hsm": source_hsm, "source_hsm_name": source,
                "folder_url": storage.storage_folder_url(container, folder),
                "status": BackupRecord.Status.FOUND, "key_count": manifest.get("key_count"),
                "size_bytes": entry["size_bytes"], "blob_count": entry["blob_count"],
                "started": _unix(manifest.get("started")) or _folder_time(folder),
                "finished": _unix(manifest.get("finished")) or entry["last_modified"],
                "seen_in_storage": now})
        added += created
    # Folders the catalog knew that storage no longer holds were deleted outside the portal.
    gone = BackupRecord.objects.filter(
        container=container, status__in=(BackupRecord.Status.SUCCEEDED,
                                         BackupRecord.Status.FOUND)).exclude(folder="") \
        .exclude(folder__in=found)
    if hsm is not None:
        gone = gone.filter(hsm=hsm)
    gone.update(status=BackupRecord.Status.DELETED,
                error="Not in the storage container any more (deleted outside the portal).")
    return added


def _unix(value):
    """A manifest's Unix time as an aware datetime, or None."""
    from datetime import datetime, timezone as tz

    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=tz.utc)


def _folder_hsm(folder: str) -> str:
    """The HSM name in a folder name mhsm-<hsm>-<16 digits>."""
    match = re.fullmatch(r"mhsm-(.+)-(\d{16})", folder)
    return match.group(1) if match else ""


def _folder_time(folder: str):
    from datetime import datetime, timezone as tz

    match = re.fullmatch(r"mhsm-.+-(\d{14})(\d{2})", folder)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=tz.utc)


# ---------------------------------------------------------------- retention

def retention_apply(*, schedule: BackupSchedule, actor=None, request_id: str = "") -> list[str]:
    """Delete the schedule's backup folders past its rule (older than N days and/or beyond
    the last N). Each deletion is audited; the newest successful backup is always kept."""
    kept = BackupRecord.objects.filter(
        schedule=schedule, status=BackupRecord.Status.SUCCEEDED).order_by("-finished", "-id")
    newest = kept.first()
    doomed = []
    if schedule.keep_last:
        doomed += list(kept[schedule.keep_last:])
    if schedule.retention_days:
        cutoff = timezone.now() - timedelta(days=schedule.retention_days)
        doomed += list(kept.filter(finished__lt=cutoff))
    deleted = []
    for record in {r.pk: r for r in doomed}.values():
        if newest is not None and record.pk == newest.pk:
            continue
        intent = audit_record(actor=actor, action="backup.delete",
                              target=f"backup:{record.container}/{record.folder}",
                              request_id=request_id,
                              detail={"hsm": record.source_hsm_name, "schedule": schedule.name,
                                      "reason": "retention"})
        try:
            blobs = storage.storage_folder_delete(record.container, record.folder)
        except PortalError as exc:
            audit_result(intent, ok=False, detail={"error": exc.code})
            continue
        BackupRecord.objects.filter(pk=record.pk).update(
            status=BackupRecord.Status.DELETED,
            error=f"Deleted by the retention rule of schedule {schedule.name}.")
        audit_result(intent, ok=True, detail={"blobs": blobs})
        deleted.append(record.folder)
    return deleted


# ---------------------------------------------------------------- schedules

def schedule_save(*, hsm: HsmInstance, actor, request_id: str, name: str, every_hours: int,
                  at_minute: int = 0, container: str = "", auth_mode: str = AuthMode.SAS,
                  retention_days: int | None = None, keep_last: int | None = None,
                  enabled: bool = True) -> BackupSchedule:
    """Create or change a backup schedule (every 1-168 hours at a minute, with retention)."""
    errors = {}
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}", name or ""):
        errors["name"] = ["1 to 64 letters, digits, spaces, dots, dashes or underscores."]
    if not isinstance(every_hours, int) or not 1 <= every_hours <= 168:
        errors["every_hours"] = ["Every 1 to 168 hours."]
    if not isinstance(at_minute, int) or not 0 <= at_minute <= 59:
        errors["at_minute"] = ["A minute from 0 to 59."]
    if retention_days is not None and not 1 <= retention_days <= 3650:
        errors["retention_days"] = ["Keep backups 1 to 3650 days, or leave empty."]
    if keep_last is not None and not 1 <= keep_last <= 1000:
        errors["keep_last"] = ["Keep the last 1 to 1000 backups, or leave empty."]
    if errors:
        raise BadInput("The schedule is not valid: " + " ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), fields=errors)
    container, auth_mode = _container(container), _auth_mode(auth_mode)
    values = {"container": container, "auth_mode": auth_mode, "every_hours": every_hours,
              "at_minute": at_minute, "retention_days": retention_days, "keep_last": keep_last,
              "enabled": enabled, "next_run": _next_run(every_hours, at_minute)}
    with transaction.atomic():
        schedule, created = BackupSchedule.objects.update_or_create(hsm=hsm, name=name,
                                                                   defaults=values)
        audit_record(actor=actor, action="backup.schedule.create" if created
                     else "backup.schedule.update", target=hsm_target(hsm),
                     request_id=request_id, outcome=AuditEvent.Outcome.SUCCEEDED,
                     detail={"schedule": name, **{k: v for k, v in values.items()
                                                  if k != "next_run"}})
    return schedule


def schedule_delete(*, schedule: BackupSchedule, actor, request_id: str) -> None:
    """Remove a schedule (its backups stay in the catalog and storage). Audited."""
    with transaction.atomic():
        audit_record(actor=actor, action="backup.schedule.delete",
                     target=hsm_target(schedule.hsm), request_id=request_id,
                     outcome=AuditEvent.Outcome.SUCCEEDED, detail={"schedule": schedule.name})
        schedule.delete()


def _next_run(every_hours: int, at_minute: int, after=None):
    """The first time after `after` (now) at :at_minute on an every_hours grid from midnight."""
    after = after or timezone.now()
    day = after.replace(hour=0, minute=at_minute, second=0, microsecond=0)
    candidate = day
    while candidate <= after:
        candidate += timedelta(hours=every_hours)
    return candidate


def schedules_run_due(*, now=None) -> list[int]:
    """Start the backup of every due schedule once (a conditional UPDATE claims each), then
    apply retention. Called by beat; safe when two beats run."""
    now = now or timezone.now()
    jobs = []
    for schedule in BackupSchedule.objects.filter(enabled=True, next_run__lte=now) \
            .select_related("hsm"):
        claimed = BackupSchedule.objects.filter(pk=schedule.pk, next_run=schedule.next_run) \
            .update(next_run=_next_run(schedule.every_hours, schedule.at_minute, now),
                    last_run=now)
        if not claimed:
            continue
        try:
            job = backup_start(hsm=schedule.hsm, actor=None, request_id="",
                               container=schedule.container, auth_mode=schedule.auth_mode,
                               schedule=schedule)
        except PortalError:
            continue
        BackupSchedule.objects.filter(pk=schedule.pk).update(last_job=job)
        jobs.append(job.pk)
        retention_apply(schedule=schedule)
    return jobs


# ---------------------------------------------------------------- restore

def _approval(*, operation: str, actor, payload: dict, target: str, request_id: str,
              approval, context: dict):
    """approval_require when the approvals engine is installed, else None (act now)."""
    try:
        from portal.approvals.services import approval_require
    except ImportError:
        return None
    return approval_require(operation=operation, actor=actor, payload=payload, target=target,
                            request_id=request_id, approval=approval, context=context)


def restore_start(*, hsm_id: str, folder: str, actor, request_id: str, container: str = "",
                  key_name: str = "", auth_mode: str = AuthMode.SAS, approval=None,
                  justification: str = ""):
    """Queue a restore into an HSM: the whole HSM (needs approval) or one key (selective).

    Returns the queued Job, or a pending ApprovalRequest for a full restore. The job runs
    the readiness gate first (see restore_run), then the restore.
    """
    from dr_app.tasks import restore_run as restore_run_task

    hsm = _hsm(hsm_id)
    container, auth_mode, folder = _container(container), _auth_mode(auth_mode), _folder(folder)
    if key_name and not KEY_NAME.fullmatch(key_name):
        raise BadInput("A key name is 1 to 127 letters, digits and hyphens.",
                       fields={"key_name": ["Not a valid key name."]})
    mode = "selective" if key_name else "full"
    payload = {"hsm_id": hsm.name, "folder": folder, "container": container,
               "auth_mode": auth_mode}
    if mode == "full":
        pending = _approval(operation="restore.full", actor=actor, payload=payload,
                            target=hsm_target(hsm), request_id=request_id, approval=approval,
                            context={"hsm": hsm.name, "folder": folder})
        if pending is not None:
            return pending
    with transaction.atomic():
        job = job_create(kind=KIND_RESTORE, actor=actor, hsm=hsm, params={
            **payload, "key_name": key_name, "mode": mode,
            "approval": getattr(approval, "pk", None)})
        audit_record(actor=actor, action="restore.request", target=hsm_target(hsm),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"job": job.pk, **payload, "key": key_name, "mode": mode})
        job_enqueue_on_commit(job=job, task=restore_run_task)
    return job


GATE_CHECKS = ("Target reachable and activated", "Storage reachable",
               "Folder exists and is complete", "Portal's roles on the target",
               "Same security domain (HSM's pre-restore check)",
               "Full backup of the target in the last 30 minutes")


def _gate(*, job: Job, token: str, hsm: HsmInstance, container: str, folder: str,
          auth_mode: str, low: int, high: int, safety_step: str) -> list[dict]:
    """The readiness gate: every check first, then the target's safety backup if needed.

    Each check is a job step and log line; the first failure stops the job with its
    sentence. Checks only read, so a resumed job runs them again.
    """
    folder_url = storage.storage_folder_url(container, folder)
    results: list[dict] = []
    span = (high - low) // (len(GATE_CHECKS) + 1)

    def check(index: int, name: str, run) -> None:
        job_progress(job_id=job.pk, percent=low + index * span, step=f"Checking: {name}")
        _lease_renew(job.pk, token)
        try:
            detail = run()
        except PortalError as exc:
            results.append({"check": name, "ok": False, "detail": exc.message})
            _param_update(job.pk, gate=results)
            job_progress(job_id=job.pk, percent=low + index * span,
                         log=f"✗ {name}: {exc.message}")
            raise PortalError(f"Not ready to restore — {name}: {exc.message}",
                              code="restore_not_ready") from exc
        results.append({"check": name, "ok": True, "detail": detail})
        _param_update(job.pk, gate=results)
        job_progress(job_id=job.pk, percent=low + (index + 1) * span, log=f"✓ {name}: {detail}")

    def reachable() -> str:
        gateway.hsm_ping(hsm)  # an un-activated HSM refuses every data-plane call
        return f"HSM {hsm.name} answered an authenticated data-plane call."

    def storage_ok() -> str:
        storage.storage_ping()
        return "The storage account answered."

    def folder_ok() -> str:
        listing = storage.storage_folder(container, folder)
        if listing is None:
            raise NotFound(f"Folder {folder} does not exist in container {container}.")
        manifest = listing.get("manifest")
        record = BackupRecord.objects.filter(container=container, folder=folder).first()
        if manifest is not None and manifest.get("complete") is False:
            raise Conflict(f"Folder {folder} is incomplete (its manifest says so).")
        if manifest is None and not (record and record.status == BackupRecord.Status.SUCCEEDED):
            raise Conflict(f"Folder {folder} has no manifest and no successful backup job: "
                           "it may be incomplete.")
        return f"{listing['blob_count']} blobs, {listing['size_bytes']} bytes" + (
            f", {manifest.get('key_count')} keys" if manifest and "key_count" in manifest else "")

    def roles_ok() -> str:
        for purpose in ("restore", "backup"):
            if not storage.portal_may(hsm, purpose=purpose):
                raise PortalError(f"The portal's identity has no role on HSM {hsm.name} that "
                                  f"allows {purpose} (Managed HSM Administrator, Backup or "
                                  "Restore User at scope /).", code="role_missing")
        return "The portal may back up and restore on this HSM."

    def same_domain() -> str:
        storage.pre_restore_check(hsm, folder_url=folder_url,
                                  use_managed_identity=auth_mode == AuthMode.MANAGED_IDENTITY)
        return "The HSM can read the folder and accepts it (same security domain)."

    state = job.params.get("gate_passed")
    if not state:
        for index, (name, run) in enumerate(zip(GATE_CHECKS[:5], (
                reachable, storage_ok, folder_ok, roles_ok, same_domain), strict=True)):
            check(index, name, run)
        _param_update(job.pk, gate_passed=True)
    # The service refuses a full restore unless the target had a full backup in the last
    # 30 minutes: take one now rather than fail.
    name = GATE_CHECKS[5]
    recent = BackupRecord.objects.filter(
        hsm=hsm, status=BackupRecord.Status.SUCCEEDED,
        finished__gte=timezone.now() - RESTORE_WINDOW + timedelta(minutes=2)).order_by(
        "-finished").first()
    if _ops(job.pk).get(safety_step):
        recent = None  # a safety backup was begun by this job: finish it
    if recent is not None:
        job_progress(job_id=job.pk, percent=low + 5 * span,
                     log=f"✓ {name}: {recent.folder} finished "
                         f"{recent.finished:%Y-%m-%d %H:%M:%S} UTC.")
        results.append({"check": name, "ok": True, "detail": recent.folder})
    else:
        job_progress(job_id=job.pk, percent=low + 5 * span,
                     log=f"{name}: none; taking a safety backup of {hsm.name} first.")
        record = _backup_operation(job=job, token=token, step=safety_step, hsm=hsm,
                                   container=container, auth_mode=auth_mode,
                                   label=f"Safety backup of {hsm.name}", low=low + 5 * span,
                                   high=high)
        results.append({"check": name, "ok": True,
                        "detail": f"safety backup taken: {record.folder}"})
    _param_update(job.pk, gate=results)
    return results


def restore_run(*, job_id: int, token: str) -> Job | None:
    """Run a claimed restore job: readiness gate (with safety backup), then the restore."""
    def body(job: Job) -> Job:
        p = job.params
        hsm = job.hsm
        gate = _gate(job=job, token=token, hsm=hsm, container=p["container"],
                     folder=p["folder"], auth_mode=p["auth_mode"], low=2, high=60,
                     safety_step="safety_backup")
        what = f"key {p['key_name']}" if p.get("key_name") else "the whole HSM"
        _restore_operation(job=job, token=token, step="restore", hsm=hsm,
                           folder_url=storage.storage_folder_url(p["container"], p["folder"]),
                           auth_mode=p["auth_mode"], key_name=p.get("key_name", ""),
                           label=f"Restore of {what} into {hsm.name}", low=60, high=95)
        _inventory_refresh(hsm)
        return job_finish(job_id=job.pk, ok=True, result={
            "folder": p["folder"], "mode": p["mode"], "key_name": p.get("key_name", ""),
            # Each check's detail is in params.gate and the log (✓ lines).
            "readiness": f"All {len(gate)} checks passed; " + gate[-1]["detail"]})
    return _run_job(job_id, token, body)


def _inventory_refresh(hsm: HsmInstance) -> None:
    """Queue a full key inventory sync of a restored HSM (its keys changed outside the cache)."""
    try:
        from keys_app.services import inventory_sync_start

        inventory_sync_start(hsm=hsm, actor=None, full=True)
    except PortalError:
        pass  # the next scheduled sync catches up


def pre_restore_check(*, hsm: HsmInstance, actor, request_id: str, folder: str,
                      container: str = "", auth_mode: str = AuthMode.SAS) -> dict:
    """The HSM's own pre-restore check of a folder (nothing is restored)."""
    container, auth_mode, folder = _container(container), _auth_mode(auth_mode), _folder(folder)
    intent = audit_record(actor=actor, action="restore.precheck", target=hsm_target(hsm),
                          request_id=request_id, detail={"container": container,
                                                         "folder": folder, "auth": auth_mode})
    try:
        storage.pre_restore_check(hsm, folder_url=storage.storage_folder_url(container, folder),
                                  use_managed_identity=auth_mode == AuthMode.MANAGED_IDENTITY)
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.code})
        return {"ok": False, "message": exc.message}
    audit_result(intent, ok=True)
    return {"ok": True, "message": f"HSM {hsm.name} can restore folder {folder}."}


# ---------------------------------------------------------------- DR drills

def drill_start(*, primary: HsmInstance, secondary: HsmInstance, actor, request_id: str,
                container: str = "", auth_mode: str = AuthMode.SAS,
                confirm_name: str = "") -> DrDrill:
    """Queue a DR drill: the secondary is overwritten with the primary's latest backup (after
    a safety backup of it); the typed name of the secondary confirms that."""
    from dr_app.tasks import drill_run as drill_run_task

    if primary.pk == secondary.pk:
        raise BadInput("Choose two different HSMs: the drill restores the primary into the "
                       "secondary.", fields={"secondary": ["Must differ from the primary."]})
    if confirm_name != secondary.name:
        raise BadInput(f"Type the secondary's name ({secondary.name}) to confirm that its keys "
                       "will be replaced.", fields={"confirm_name": ["Does not match."]})
    container, auth_mode = _container(container), _auth_mode(auth_mode)
    with transaction.atomic():
        job = job_create(kind=KIND_DRILL, actor=actor, hsm=secondary, params={
            "primary": primary.name, "secondary": secondary.name, "container": container,
            "auth_mode": auth_mode})
        drill = DrDrill.objects.create(primary=primary, secondary=secondary,
                                       primary_name=primary.name,
                                       secondary_name=secondary.name, container=container,
                                       job=job)
        audit_record(actor=actor, action="drill.request", target=hsm_target(secondary),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"job": job.pk, "drill": drill.pk, "primary": primary.name,
                             "secondary": secondary.name, "container": container})
        job_enqueue_on_commit(job=job, task=drill_run_task)
    return drill


def snapshot_compare(primary: dict, secondary: dict) -> dict:
    """Differences between two HSM snapshots: keys, versions, role assignments."""
    pk, sk = primary["keys"], secondary["keys"]
    version_diff = sorted(name for name in set(pk) & set(sk)
                          if pk[name]["versions"] != sk[name]["versions"])
    state_diff = sorted(name for name in set(pk) & set(sk)
                        if (pk[name]["enabled"], pk[name]["tags"])
                        != (sk[name]["enabled"], sk[name]["tags"]))
    pr = {tuple(r) for r in primary["role_assignments"]}
    sr = {tuple(r) for r in secondary["role_assignments"]}
    return {
        "keys_primary": len(pk), "keys_secondary": len(sk),
        "versions_primary": sum(len(v["versions"]) for v in pk.values()),
        "versions_secondary": sum(len(v["versions"]) for v in sk.values()),
        "role_assignments_primary": len(pr), "role_assignments_secondary": len(sr),
        "keys_missing": sorted(set(pk) - set(sk))[:100],
        "keys_extra": sorted(set(sk) - set(pk))[:100],
        "keys_versions_differ": version_diff[:100],
        "keys_state_differs": state_diff[:100],
        "role_assignments_missing": [list(r) for r in sorted(pr - sr)][:100],
        "role_assignments_extra": [list(r) for r in sorted(sr - pr)][:100],
    }


def drill_run(*, job_id: int, token: str) -> Job | None:
    """Run a claimed DR drill job: back up the primary, safety-back-up the secondary,
    restore the primary's backup into the secondary, compare, report RTO and RPO."""
    def body(job: Job) -> Job:
        p = job.params
        drill = DrDrill.objects.get(job=job)
        primary, secondary = _hsm(p["primary"]), _hsm(p["secondary"])
        container, auth_mode = p["container"], p["auth_mode"]
        source = _backup_operation(job=job, token=token, step="primary_backup", hsm=primary,
                                   container=container, auth_mode=auth_mode,
                                   label=f"1/4 Backup of the primary {primary.name}",
                                   low=2, high=30)
        # The simulated disaster happens now: the primary's latest backup is what survives.
        if not p.get("failure_at"):
            _param_update(job.pk, failure_at=timezone.now().isoformat())
        failure_at = _param_time(job.pk, "failure_at")
        job_progress(job_id=job.pk, percent=30, step="2/4 Safety backup of the secondary",
                     log=f"Simulated loss of {primary.name} at {failure_at:%H:%M:%S} UTC.")
        _gate(job=job, token=token, hsm=secondary, container=container, folder=source.folder,
              auth_mode=auth_mode, low=30, high=55, safety_step="secondary_backup")
        _restore_operation(job=job, token=token, step="restore", hsm=secondary,
                           folder_url=source.folder_url, auth_mode=auth_mode, key_name="",
                           label=f"3/4 Restore of {source.folder} into {secondary.name}",
                           low=55, high=85)
        job_progress(job_id=job.pk, percent=86, step="4/4 Comparing keys, versions and roles")
        _lease_renew(job.pk, token)
        def reading(name: str):
            def on_progress(count: int) -> None:
                _lease_renew(job.pk, token)  # a large HSM takes a while to read
                job_progress(job_id=job.pk, percent=88 if name == primary.name else 94,
                             step=f"4/4 Comparing: read {count} keys of {name}")
            return on_progress

        diff = snapshot_compare(
            storage.hsm_snapshot(primary, on_progress=reading(primary.name)),
            storage.hsm_snapshot(secondary, on_progress=reading(secondary.name)))
        verified_at = timezone.now()
        passed = not any(diff[k] for k in ("keys_missing", "keys_extra", "keys_versions_differ",
                                           "keys_state_differs", "role_assignments_missing",
                                           "role_assignments_extra"))
        rto = (verified_at - failure_at).total_seconds()
        rpo = (failure_at - source.started).total_seconds() if source.started else None
        report = {"passed": passed, "rto_seconds": round(rto, 1),
                  "rpo_seconds": round(rpo, 1) if rpo is not None else None,
                  "source_folder": source.folder, "failure_at": failure_at.isoformat(),
                  "verified_at": verified_at.isoformat(), "comparison": diff,
                  "gate": _job_params(job.pk).get("gate", [])}
        with transaction.atomic():
            DrDrill.objects.filter(pk=drill.pk).update(
                finished=verified_at, passed=passed, rto_seconds=rto, rpo_seconds=rpo,
                report=report)
            audit_record(actor=job.actor, action="drill.report", target=hsm_target(secondary),
                         outcome=AuditEvent.Outcome.SUCCEEDED if passed
                         else AuditEvent.Outcome.FAILED,
                         detail={"drill": drill.pk, "rto_seconds": report["rto_seconds"],
                                 "rpo_seconds": report["rpo_seconds"], "passed": passed})
        _inventory_refresh(secondary)
        return job_finish(job_id=job.pk, ok=passed, result=report,
                          error="" if passed else "The secondary differs from the primary "
                                                  "after the restore; see the report.",
                          step="Report ready" if passed else "Report ready: differences found")
    result = _run_job(job_id, token, body)
    job = Job.objects.get(pk=job_id)
    if job.status == Job.Status.FAILED:
        DrDrill.objects.filter(job_id=job_id, finished__isnull=True).update(
            finished=job.finished, passed=False)
    return result


def _job_params(job_id: int) -> dict:
    return Job.objects.get(pk=job_id).params


def _param_time(job_id: int, name: str):
    from django.utils.dateparse import parse_datetime

    return parse_datetime(_job_params(job_id)[name])


# ---------------------------------------------------------------- resuming and stuck jobs

def jobs_resume_stale(*, now=None) -> list[int]:
    """Hand every dr_app job whose worker stopped reporting to a new worker. Beat calls this.

    Running jobs with a lease older than DR_JOB_LEASE_SECONDS (or none) get a new claim
    token by a conditional UPDATE (so one takeover per lapse, across processes) and their
    task is queued again under that token; it resumes from the stored operation state.
    Queued jobs older than the lease are queued again (claiming makes a duplicate harmless).
    """
    from dr_app import tasks

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.DR_JOB_LEASE_SECONDS)
    task_for = {KIND_BACKUP: tasks.backup_run, KIND_RESTORE: tasks.restore_run,
                KIND_DRILL: tasks.drill_run}
    resumed = []
    stale = Job.objects.filter(kind__in=DR_KINDS, status=Job.Status.RUNNING).filter(
        Q(dr_lease__beat__lt=cutoff) | Q(dr_lease__isnull=True, started__lt=cutoff))
    for job in stale:
        new_token = f"resume-{uuid.uuid4().hex}"
        with transaction.atomic():
            taken = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING,
                                       claim_token=job.claim_token).update(claim_token=new_token)
            if not taken:
                continue
            lease, _ = JobLease.objects.select_for_update().get_or_create(
                job_id=job.pk, defaults={"beat": now})
            JobLease.objects.filter(pk=job.pk).update(beat=now, takeovers=lease.takeovers + 1)
            audit_record(actor=None, action="job.resume", target=job_target(job),
                         outcome=AuditEvent.Outcome.RECORDED,
                         detail={"kind": job.kind, "operation": job.external_operation_id,
                                 "silent_seconds": int((now - (lease.beat or now))
                                                       .total_seconds())})
            job_progress(job_id=job.pk, percent=job.progress,
                         log="The worker stopped reporting; another worker resumes the job.")
            transaction.on_commit(lambda j=job.pk, t=new_token, task=task_for[job.kind]:
                                  task.apply_async(args=[j], task_id=t))
        resumed.append(job.pk)
    for job in Job.objects.filter(kind__in=DR_KINDS, status=Job.Status.QUEUED,
                                  created__lt=cutoff):
        task_for[job.kind].delay(job.pk)
        resumed.append(job.pk)
    return resumed


def dr_tick() -> dict:
    """Beat's minute: due schedules, stale jobs resumed."""
    return {"schedules": schedules_run_due(), "resumed": jobs_resume_stale()}
