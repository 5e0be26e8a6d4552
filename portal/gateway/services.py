"""Registering and deregistering HSMs. Audited."""
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result
from portal.errors import BadInput, Conflict, PortalError
from portal.gateway.endpoints import HsmUrlRefused, hsm_url_checked
from portal.gateway.models import HsmInstance


def _checked_uri(uri: str) -> str:
    try:
        return hsm_url_checked(uri)
    except HsmUrlRefused as exc:
        raise BadInput(f"The HSM's URL is not accepted: {exc}", code="bad_input",
                       fields={"uri": [str(exc)]}) from None


def _taken(name: str, uri: str) -> None:
    """409 when the name or the URL is already registered (names are compared as typed)."""
    existing = HsmInstance.objects.filter(Q(name=name) | Q(uri__iexact=uri)).first()
    if existing is None:
        return
    if existing.name == name:
        raise Conflict(f"An HSM named {name} is already registered.", code="hsm_exists",
                       fields={"name": [f"{name} is taken."]})
    raise Conflict(f"That URL is already registered as HSM {existing.name}.", code="hsm_exists",
                   fields={"uri": [f"Already registered as {existing.name}."]})


def hsm_register(*, actor, name: str, uri: str, arm_resource_id: str = "", region: str = "",
                 role: str = HsmInstance.Role.PRIMARY, request_id: str = "") -> HsmInstance:
    """Add an HSM to the portal (no call to it). The audit row commits with the row or neither.

    The URL must be a Managed HSM of the configured cloud or a named emulator host
    (`endpoints.hsm_url_checked`); a name or URL already registered is a Conflict (409).
    """
    hsm = HsmInstance(name=name, uri=(uri or "").strip(), arm_resource_id=arm_resource_id,
                      region=region, role=role)
    try:
        hsm.full_clean(exclude=["uri"], validate_unique=False)
    except ValidationError as exc:
        raise BadInput("The HSM's details are not valid.", fields=exc.message_dict) from exc
    hsm.uri = _checked_uri(hsm.uri)
    _taken(name, hsm.uri)
    try:
        with transaction.atomic():
            audit_record(actor=actor, action="hsm.register", target=f"hsm:{name}",
                         request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                         detail={"uri": hsm.uri, "region": region, "role": role})
            hsm.save()
    except IntegrityError as exc:  # registered by someone else meanwhile
        raise Conflict(f"An HSM named {name} or with that URL is already registered.",
                       code="hsm_exists") from exc
    return hsm


def hsm_upsert_system(*, name: str, uri: str, role: str, region: str = "",
                      arm_resource_id: str = "") -> HsmInstance:
    """Register or re-point an HSM from configuration (make run, the emulator). Audited as system.

    The URL follows the same rule as hsm_register (the emulator's hosts are named in
    HSM_EMULATOR_HOSTS); a refused URL raises BadInput.
    """
    uri = _checked_uri(uri)
    with transaction.atomic():
        hsm, created = HsmInstance.objects.update_or_create(
            name=name, defaults={"uri": uri, "role": role, "region": region,
                                 "arm_resource_id": arm_resource_id})
        audit_record(actor=None, action="hsm.register" if created else "hsm.update",
                     target=f"hsm:{name}", outcome=AuditEvent.Outcome.RECORDED,
                     detail={"uri": hsm.uri, "role": role, "source": "configuration"})
    return hsm


def hsm_deregister(*, actor, hsm: HsmInstance, confirm_name: str | None,
                   request_id: str = "") -> dict:
    """Remove an HSM from the portal (never touches the HSM itself). Audited intent + outcome.

    Needs the HSM's name typed again. Its cache goes with it (key inventory, versions, sync
    state); jobs that ran on it are kept, with their HSM emptied (the audit trail still names
    it). Refused (409) while a job on it is running; queued jobs on it are failed first,
    so a worker never picks one up for an HSM that is gone. Returns what was removed.
    """
    from portal.jobs.models import Job
    from portal.jobs.services import job_finish

    if confirm_name != hsm.name:
        raise BadInput(f"Type the HSM's name ({hsm.name}) to confirm.",
                       code="confirmation_required",
                       fields={"confirm_name": [f"Type {hsm.name} to confirm."]})
    target = f"hsm:{hsm.name}"
    # Its own transaction: the intent is on record before anything is removed.
    intent = audit_record(actor=actor, action="hsm.deregister", target=target,
                          request_id=request_id, detail={"uri": hsm.uri})
    try:
        with transaction.atomic():
            # Locking the HSM's jobs makes a worker's claim (a conditional UPDATE) wait for
            # this decision, then find the job no longer queued.
            jobs = list(Job.objects.select_for_update().filter(
                hsm_id=hsm.pk, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]))
            running = [job for job in jobs if job.status == Job.Status.RUNNING]
            if running:
                raise Conflict(f"Job {running[0].pk} ({running[0].kind}) is running on HSM "
                               f"{hsm.name}; deregister it once the job has finished.",
                               code="hsm_busy")
            for job in jobs:
                job_finish(job_id=job.pk, ok=False,
                           error=f"HSM {hsm.name} was deregistered before the job ran.")
            kept_jobs = Job.objects.filter(hsm_id=hsm.pk).count()
            deleted, by_model = HsmInstance.objects.filter(pk=hsm.pk).delete()
            if not deleted:
                raise Conflict(f"HSM {hsm.name} was deregistered meanwhile.", code="hsm_gone")
            removed = {"cached_rows": deleted - by_model.get("gateway.HsmInstance", 0),
                       "jobs_kept": kept_jobs, "queued_jobs_failed": len(jobs)}
            audit_result(intent, ok=True, detail=removed)
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.code, "message": exc.message[:300]})
        raise
    return removed


def hsm_settings_list(*, hsm: HsmInstance) -> list[dict]:
    """The HSM's account settings as the data plane reports them (read-only, not audited)."""
    from portal import gateway

    with gateway.translated_errors():
        settings_ = gateway.hsm_settings(hsm).list_settings()
        return [{"name": item.name, "value": item.value,
                 "type": str(getattr(item.setting_type, "value", item.setting_type) or "")}
                for item in settings_]
