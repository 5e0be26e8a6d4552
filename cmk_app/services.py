"""Customer-managed keys: the attach wizard (a Job with live steps that undoes what it did
when a step fails), detach and switch with approval, the usage scan, and the HSM's Azure
resource (public network access and private endpoints with approval, replica regions).

Every change is audited: intent before, outcome after. Services never import azure.*: the
management plane is portal.gateway.arm, local RBAC portal.gateway.rbac.
"""
from __future__ import annotations

import logging
import re

from django.db import IntegrityError, transaction
from django.utils import timezone

from cmk_app.models import CmkBinding
from portal import gateway
from portal.approvals.models import ApprovalRequest
from portal.approvals.services import approval_require
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result
from portal.errors import BadInput, Conflict, NotFound, PortalError
from portal.gateway import arm, rbac
from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_resolve
from portal.jobs.models import Job
from portal.jobs.services import job_create, job_enqueue_on_commit, job_finish, job_progress

logger = logging.getLogger(__name__)

# Managed HSM Crypto Service Encryption User: get, wrapKey, unwrapKey; nothing else.
ENCRYPTION_USER = "33413926-3206-4cdd-b39a-83574fe37a17"
ENCRYPTION_USER_NAME = "Managed HSM Crypto Service Encryption User"
# Roles that already let an identity wrap and unwrap with a key (no grant needed).
WRAPPING_ROLES = {ENCRYPTION_USER, "21dbd100-6940-42c2-9190-5d6cb909625b"}  # + Crypto User
IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")
REGION = re.compile(r"^[a-z][a-z0-9]{2,39}$")
MAX_DESCRIPTION = 140

REASONS = {
    "purge_protection": "HSM {hsm} does not have purge protection on; Azure services only use "
                        "keys from an HSM with purge protection. Turn it on (HSM {hsm} > Azure "
                        "resource; it cannot be turned off again), then attach again.",
    "permission": "The identity {identity} (principal id {principal}) has no role that lets it "
                  "wrap and unwrap with key {key}. Grant it Managed HSM Crypto Service "
                  "Encryption User at /keys/{key} (tick 'Grant the role' in the wizard), then "
                  "attach again.",
    "not_found": "Key {key} was not found on HSM {hsm}: it was deleted or renamed. Choose "
                 "another key.",
    "disabled": "Key {key} is disabled: enable it (or choose another key), then attach again.",
    "key_ops": "Key {key} does not allow wrapKey and unwrapKey, which a service needs to "
               "protect its data keys. Allow both operations on the key (or choose an RSA-HSM "
               "key that allows them), then attach again.",
    "unreachable": "The service could not reach HSM {hsm}: check the HSM's network rules "
                   "(trusted services, private endpoints), then attach again.",
}


def binding_target(binding: CmkBinding | None = None, *, hsm_name: str = "", key: str = "",
                   resource: str = "") -> str:
    """The audit target text of a binding: the HSM, the key and the resource's name."""
    if binding is not None:
        hsm_name, key, resource = binding.hsm.name, binding.key_name, binding.resource_name
    return f"hsm:{hsm_name}/key:{key}/resource:{resource}"


def _subscription(hsm: HsmInstance) -> str:
    if not hsm.arm_resource_id:
        raise BadInput(f"HSM {hsm.name} has no Azure resource id in the portal: register it with "
                       "its resource id to attach its keys to Azure resources.",
                       code="no_resource_id")
    return arm.parse_id(hsm.arm_resource_id)["sub"]


def _vault(hsm: HsmInstance) -> str:
    return hsm.uri.rstrip("/").lower()


def _correlation(approval) -> dict:
    return {"correlation_id": approval.correlation_id, "approval_id": approval.pk} \
        if approval is not None else {}


# -- the attach wizard ----------------------------------------------------------------------

def cmk_attach_start(*, hsm: HsmInstance | str, key_name: str, resource_id: str, actor,
                     request_id: str, identity_id: str = "", identity_name: str = "",
                     grant: bool = True, approval=None, justification: str = "",
                     ticket: str = "") -> Job | ApprovalRequest:
    """Queue the attach wizard for one key and one resource. Audited (`cmk.attach`).

    identity_id picks an existing user-assigned identity; otherwise identity_name (or a name
    made from the resource's) is created in the resource's group. The binding row is the
    lock: a resource being attached is refused (409) until that job ends. A resource that
    already uses another key of the portal switches keys, which needs approval
    (`cmk.switch`): without one it returns the pending ApprovalRequest.
    """
    hsm = hsm_resolve(hsm)
    from keys_app.models import KeyRecord

    record = KeyRecord.objects.filter(hsm=hsm, name__iexact=key_name,
                                      state=KeyRecord.State.ACTIVE).first()
    if record is None:
        raise NotFound(f"No key named {key_name} on HSM {hsm.name} (refresh the inventory if it "
                       "was made outside the portal).", code="key_not_found")
    key_name = record.name
    kind = arm.kind_of(resource_id)
    resource_name = arm.parse_id(resource_id)["name"]
    _subscription(hsm)
    if identity_id:
        parts = arm.parse_id(identity_id)
        if f"{parts['ns']}/{parts['type']}".lower() != arm.IDENTITY_TYPE.lower():
            raise BadInput("That is not a user-assigned managed identity.",
                           fields={"identity_id": ["Pick a user-assigned identity."]})
    elif identity_name and not IDENTITY_NAME.match(identity_name):
        raise BadInput("An identity name is 3-128 letters, digits, hyphens and underscores, "
                       "starting with a letter or digit.",
                       fields={"identity_name": ["3-128 letters, digits, - and _."]})
    existing = CmkBinding.objects.filter(resource_id__iexact=resource_id).first()
    if existing is not None and existing.in_use and (
            existing.hsm_id != hsm.pk or existing.key_name.lower() != key_name.lower()):
        payload = {"hsm": hsm.name, "key_name": key_name, "resource_id": resource_id,
                   "identity_id": identity_id, "identity_name": identity_name, "grant": grant}
        pending = approval_require(
            operation="cmk.switch", actor=actor, payload=payload,
            target=binding_target(hsm_name=hsm.name, key=key_name, resource=resource_name),
            request_id=request_id, approval=approval, justification=justification,
            ticket=ticket, context={"hsm": hsm.name, "scope": f"/keys/{key_name}",
                                    "from_key": existing.key_name})
        if pending is not None:
            return pending
    params = {"hsm": hsm.name, "key_name": key_name, "resource_id": resource_id, "kind": kind,
              "identity_id": identity_id, "identity_name": identity_name, "grant": bool(grant),
              **_correlation(approval)}
    with transaction.atomic():
        row = CmkBinding.objects.select_for_update().filter(resource_id__iexact=resource_id).first()
        if row is not None and row.status in (CmkBinding.Status.ATTACHING,
                                              CmkBinding.Status.DETACHING):
            raise Conflict(f"{resource_name} is being changed by job #{row.job_id}; wait for it "
                           "to finish.", code="cmk_busy")
        if row is not None and row.in_use and row.hsm_id == hsm.pk and \
                row.key_name.lower() == key_name.lower():
            raise Conflict(f"{resource_name} already uses {key_name}.", code="no_change")
        job = job_create(kind="cmk.attach", actor=actor, hsm=hsm, params=params)
        audit_record(actor=actor, action="cmk.attach",
                     target=binding_target(hsm_name=hsm.name, key=key_name, resource=resource_name),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"job": job.pk, "resource_id": resource_id, "kind": kind,
                             "grant": bool(grant), "identity": identity_id or identity_name or
                             "(new)", **_correlation(approval)})
        try:
            with transaction.atomic():
                if row is None:
                    row = CmkBinding.objects.create(
                        hsm=hsm, key_name=key_name, resource_id=resource_id, kind=kind,
                        resource_name=resource_name, status=CmkBinding.Status.ATTACHING, job=job)
                else:
                    # The resource's former binding: it stays as it is on Azure until the
                    # job switches it (previous key kept in the job's params for the undo).
                    job.params = {**params, "previous": {
                        "status": row.status, "key_name": row.key_name, "hsm": row.hsm.name}}
                    job.save(update_fields=["params"])
                    CmkBinding.objects.filter(pk=row.pk).update(
                        status=CmkBinding.Status.ATTACHING, job=job, error="")
        except IntegrityError:
            raise Conflict(f"{resource_name} is being attached by someone else right now.",
                           code="cmk_busy") from None
        from cmk_app.tasks import cmk_attach_run as cmk_attach_run_task

        job_enqueue_on_commit(job=job, task=cmk_attach_run_task)
    return job


class _Wizard:
    """One run of the attach wizard: steps, each logged on the Job; undo in reverse."""

    def __init__(self, job: Job) -> None:
        self.job = job
        p = job.params
        self.hsm = hsm_resolve(p["hsm"])
        self.key = p["key_name"]
        self.resource_id = p["resource_id"]
        self.kind = p["kind"]
        self.grant = p.get("grant", True)
        self.binding = CmkBinding.objects.get(resource_id__iexact=self.resource_id)
        self.identity: dict | None = None
        self.created_identity = ""
        self.assignment = ""
        self.encryption_changed = False
        self.before: dict | None = None
        self.done = 0

    def step(self, text: str, percent: int) -> None:
        job_progress(job_id=self.job.pk, percent=percent, step=text, log=text)

    def log(self, text: str) -> None:
        job_progress(job_id=self.job.pk, percent=0, log=text)

    def run(self) -> dict:
        hsm, key = self.hsm, self.key
        self.step(f"Checking key {key} on HSM {hsm.name}", 5)
        with gateway.translated_errors(hsm=hsm.name):
            props = gateway.keys(hsm).get_key(key).properties
        self.version = props.version or ""

        self.step(f"Reading {self.binding.resource_name}", 15)
        self.before = arm.consumer_get(self.resource_id)
        self.location = self.before["location"]
        self.notes = self._replica_note()
        for note in self.notes:
            self.log(note)

        self.step("Ensuring a user-assigned identity", 30)
        self.identity = self._identity()

        if self.grant:
            self.step(f"Granting {ENCRYPTION_USER_NAME} at /keys/{key}", 45)
            self._grant()
        else:
            self.log("Not granting a role (the wizard was asked not to).")

        self.step("Checking purge protection and key operations", 60)
        self._checks(props)

        self.step(f"Setting {self.binding.resource_name}'s encryption to {key} (versionless)", 75)
        try:
            after = arm.consumer_encryption_set(
                self.resource_id, identity_id=self.identity["id"], vault_url=hsm.uri,
                key_name=key, key_version="")
        except arm.CmkRefused as exc:
            raise self._refusal(exc.reason) from exc
        self.encryption_changed = True

        self.step("Reading the encryption back to verify it", 90)
        after = arm.consumer_get(self.resource_id)
        found = after.get("key") or {}
        if not (found.get("vault") == _vault(hsm) and found.get("name", "").lower() == key.lower()
                and found.get("identity", "").lower() == self.identity["id"].lower()
                and not found.get("version")):
            raise Conflict(f"{self.binding.resource_name} does not show key {key} as its "
                           "encryption key after the change; the wizard undid it.",
                           code="cmk_not_verified")
        version = found.get("current_version") or self.version
        with transaction.atomic():
            CmkBinding.objects.filter(pk=self.binding.pk).update(
                hsm=hsm, key_name=key, status=CmkBinding.Status.ACTIVE, origin=CmkBinding.Origin.WIZARD,
                resource_group=after["resource_group"], location=after["location"],
                identity_id=self.identity["id"], identity_principal_id=self.identity["principal_id"],
                identity_created=bool(self.created_identity), role_assignment=self.assignment,
                versionless=True, version_in_use=version, error="", last_seen_at=timezone.now())
        return {"resource": self.binding.resource_name, "key": key, "version_in_use": version,
                "identity": self.identity["name"], "identity_created": bool(self.created_identity),
                "role_assignment": self.assignment, "notes": self.notes}

    def _replica_note(self) -> list[str]:
        from cmk_app.selectors import replica_notes

        try:
            regions = arm.hsm_resource_get(self.hsm)["regions"]
        except PortalError:
            return []
        return list(replica_notes(hsm=self.hsm, locations=[self.location], regions=regions).values())

    def _identity(self) -> dict:
        p = self.job.params
        if p.get("identity_id"):
            found = arm.identity_get(p["identity_id"])
            if found is None:
                raise NotFound("The chosen managed identity no longer exists; pick another or "
                               "let the wizard create one.", code="identity_not_found")
            self.log(f"Using identity {found['name']} (principal id {found['principal_id']}).")
            return found
        held = [rid for rid in self.before["identities"]]
        name = p.get("identity_name") or f"id-{self.binding.resource_name}-cmk"[:128]
        parts = arm.parse_id(self.resource_id)
        rid = (f"/subscriptions/{parts['sub']}/resourceGroups/{parts['rg']}/providers/"
               f"{arm.IDENTITY_TYPE}/{name}")
        existing = arm.identity_get(rid)
        if existing is not None:
            self.log(f"Identity {name} exists already: using it (it stays if the attach fails).")
            return existing
        intent = audit_record(actor=self.job.actor, action="cmk.identity_create",
                              target=binding_target(self.binding),
                              detail={"identity": rid, "job": self.job.pk})
        try:
            made = arm.identity_create(subscription_id=parts["sub"], resource_group=parts["rg"],
                                       name=name, location=self.location)
        except PortalError as exc:
            audit_result(intent, ok=False, detail={"error": exc.code})
            raise
        audit_result(intent, ok=True, detail={"principal_id": made["principal_id"]})
        self.created_identity = made["id"]
        CmkBinding.objects.filter(pk=self.binding.pk).update(identity_id=made["id"],
                                                             identity_created=True)
        self.log(f"Created identity {name} (principal id {made['principal_id']})."
                 + (" The resource keeps its other identities." if held else ""))
        return made

    def _grant(self) -> None:
        principal = self.identity["principal_id"]
        scopes = {"/", "/keys", f"/keys/{self.key}".lower()}
        for item in rbac.role_assignments_list(self.hsm, f"/keys/{self.key}"):
            if item["principal_id"] == principal and item["scope"].lower() in scopes and \
                    rbac.definition_name(item["role_definition_id"]) in WRAPPING_ROLES:
                self.log(f"The identity already holds a wrapping role at {item['scope']}: no "
                         "grant needed.")
                return
        name = arm.new_name()
        scope = f"/keys/{self.key}"
        intent = audit_record(actor=self.job.actor, action="role_assignment.create",
                              target=f"hsm:{self.hsm.name}/scope:{scope}",
                              detail={"role": ENCRYPTION_USER_NAME, "principal_id": principal,
                                      "assignment": name, "by": "cmk wizard", "job": self.job.pk,
                                      **{k: v for k, v in self.job.params.items()
                                         if k == "correlation_id"}})
        try:
            made = rbac.role_assignment_create(
                self.hsm, scope=scope, definition_id=rbac.DEFINITION_ID_PREFIX + ENCRYPTION_USER,
                principal_id=principal, name=name)
        except PortalError as exc:
            audit_result(intent, ok=False, detail={"error": exc.code, "message": exc.message[:300]})
            raise PortalError(f"The portal could not grant {ENCRYPTION_USER_NAME} at {scope} to "
                              f"the identity: {exc.message} Grant it yourself, or ask an HSM "
                              "administrator, then attach again.", code="cmk_grant_failed") from exc
        audit_result(intent, ok=True)
        self.assignment = made["name"] or name
        CmkBinding.objects.filter(pk=self.binding.pk).update(role_assignment=self.assignment)
        _record_assignment(self.hsm, self.assignment, scope, principal)
        self.log(f"Granted {ENCRYPTION_USER_NAME} at {scope} (assignment {self.assignment}).")

    def _checks(self, props) -> None:
        resource = arm.hsm_resource_get(self.hsm)
        if not resource["purge_protection"]:
            raise self._refusal("purge_protection")
        with gateway.translated_errors(hsm=self.hsm.name):
            key = gateway.keys(self.hsm).get_key(self.key)
        if not key.properties.enabled:
            raise self._refusal("disabled")
        ops = {str(getattr(op, "value", op)) for op in key.key_operations or []}
        if not {"wrapKey", "unwrapKey"} <= ops:
            raise self._refusal("key_ops")
        self.log("Purge protection is on; the key is enabled and allows wrapKey and unwrapKey.")

    def _refusal(self, reason: str) -> PortalError:
        identity = self.identity or {}
        text = REASONS.get(reason, "The service refused the key.").format(
            hsm=self.hsm.name, key=self.key, identity=identity.get("name", "?"),
            principal=identity.get("principal_id", "?"))
        return BadInput(text, code=f"cmk_{reason}")

    def undo(self) -> list[str]:
        """Remove what this run made, newest first; each undo is audited. What could not be
        undone is returned (and logged) so a person can finish it."""
        left = []
        if self.encryption_changed:
            try:
                prev = (self.before or {}).get("key")
                if prev and prev.get("vault"):
                    arm.consumer_encryption_set(self.resource_id, identity_id=prev["identity"],
                                                vault_url=prev["vault"], key_name=prev["name"],
                                                key_version=prev["version"])
                else:
                    arm.consumer_encryption_clear(self.resource_id,
                                                  remove_identity=self.created_identity)
                self.log("Undid: the resource's encryption is back as it was.")
            except PortalError as exc:
                left.append(f"the encryption of {self.binding.resource_name} ({exc.message})")
        if self.assignment:
            scope = f"/keys/{self.key}"
            if self._undo_audited(
                    "role_assignment.delete", f"hsm:{self.hsm.name}/scope:{scope}",
                    {"assignment": self.assignment},
                    lambda: rbac.role_assignment_delete(self.hsm, scope=scope, name=self.assignment),
                    left, f"role assignment {self.assignment} at {scope}"):
                _forget_assignment(self.hsm, self.assignment)
                self.log(f"Undid: removed role assignment {self.assignment}.")
        if self.created_identity and self._undo_audited(
                "cmk.identity_delete", binding_target(self.binding),
                {"identity": self.created_identity},
                lambda: arm.identity_delete(self.created_identity),
                left, f"identity {self.created_identity}"):
            self.log("Undid: deleted the identity the wizard created.")
        return left

    def _undo_audited(self, action: str, target: str, detail: dict, call, left: list[str],
                      what: str) -> bool:
        """One audited undo step: True when done, else `what` and the reason go to `left`."""
        intent = audit_record(actor=self.job.actor, action=action, target=target,
                              detail={**detail, "by": "cmk wizard undo", "job": self.job.pk})
        try:
            call()
        except PortalError as exc:
            audit_result(intent, ok=False, detail={"error": exc.code})
            left.append(f"{what} ({exc.message})")
            return False
        audit_result(intent, ok=True)
        return True


def _record_assignment(hsm: HsmInstance, name: str, scope: str, principal: str) -> None:
    """Local RBAC's inventory knows the wizard's grant (not drift on the next sync)."""
    from access_app.models import RoleAssignmentRecord

    RoleAssignmentRecord.objects.update_or_create(hsm=hsm, name=name, defaults={
        "scope": scope, "principal_id": principal,
        "role_definition_id": rbac.DEFINITION_ID_PREFIX + ENCRYPTION_USER,
        "role_name": ENCRYPTION_USER_NAME, "origin": RoleAssignmentRecord.Origin.PORTAL,
        "removed_at": None})


def _forget_assignment(hsm: HsmInstance, name: str) -> None:
    from access_app.models import RoleAssignmentRecord

    RoleAssignmentRecord.objects.filter(hsm=hsm, name=name, removed_at__isnull=True).update(
        removed_at=timezone.now())


def cmk_attach_run(*, job_id: int) -> Job:
    """Run a claimed attach job: each step on the Job's log; on failure, undo and explain."""
    job = Job.objects.select_related("hsm").get(pk=job_id)
    wizard = _Wizard(job)
    try:
        result = wizard.run()
    except Exception as exc:  # any failure is undone; the sentence is the job's error
        message = exc.message if isinstance(exc, PortalError) else \
            f"The attach stopped unexpectedly ({exc.__class__.__name__}); what it did was undone."
        if not isinstance(exc, PortalError):
            logger.exception("cmk attach job %s failed", job_id)
        wizard.log(f"Failed: {message}")
        left = wizard.undo()
        if left:
            message += " Could not undo: " + "; ".join(left) + "."
        previous = job.params.get("previous")
        with transaction.atomic():
            if previous and previous.get("status") in (CmkBinding.Status.ACTIVE,):
                CmkBinding.objects.filter(pk=wizard.binding.pk).update(
                    status=CmkBinding.Status.ACTIVE, error=message[:2000])
            else:
                CmkBinding.objects.filter(pk=wizard.binding.pk).update(
                    status=CmkBinding.Status.FAILED, error=message[:2000],
                    identity_created=False, role_assignment="",
                    identity_id="" if wizard.created_identity else wizard.binding.identity_id)
            audit_record(actor=job.actor, action="cmk.attach", target=binding_target(wizard.binding),
                         outcome=AuditEvent.Outcome.FAILED,
                         detail={"job": job.pk, "error": getattr(exc, "code", "internal_error"),
                                 "message": message[:500], "undone": not left})
        return job_finish(job_id=job_id, ok=False, error=message,
                          step=f"Failed: {message[:180]}")
    with transaction.atomic():
        audit_record(actor=job.actor, action="cmk.attach", target=binding_target(wizard.binding),
                     outcome=AuditEvent.Outcome.SUCCEEDED,
                     detail={"job": job.pk, **result,
                             **({"correlation_id": job.params["correlation_id"]}
                                if job.params.get("correlation_id") else {})})
    return job_finish(job_id=job_id, ok=True, result=result,
                      step=f"{wizard.binding.resource_name} uses {wizard.key}")


# -- detach ---------------------------------------------------------------------------------

def cmk_detach(*, binding_id: int, actor, request_id: str, approval=None,
               justification: str = "", ticket: str = "") -> CmkBinding | ApprovalRequest:
    """Point the resource back at service-managed keys and remove what the wizard made
    (the role assignment; the identity if the wizard created it). Needs approval
    (`cmk.detach`): without one it returns the pending ApprovalRequest. Audited."""
    from cmk_app.selectors import binding_get

    binding = binding_get(binding_id=binding_id)
    if binding.status != CmkBinding.Status.ACTIVE:
        raise Conflict(f"{binding.resource_name} does not use {binding.key_name} now "
                       f"({binding.get_status_display().lower()}).", code="not_in_use")
    pending = approval_require(
        operation="cmk.detach", actor=actor, payload={"binding_id": binding.pk},
        target=binding_target(binding), request_id=request_id, approval=approval,
        justification=justification, ticket=ticket,
        context={"hsm": binding.hsm.name, "scope": f"/keys/{binding.key_name}",
                 "resource": binding.resource_name})
    if pending is not None:
        return pending
    with transaction.atomic():
        if not CmkBinding.objects.filter(pk=binding.pk, status=CmkBinding.Status.ACTIVE).update(
                status=CmkBinding.Status.DETACHING):
            raise Conflict(f"{binding.resource_name} is being changed already.", code="cmk_busy")
        intent = audit_record(actor=actor, action="cmk.detach", target=binding_target(binding),
                              request_id=request_id,
                              detail={"resource_id": binding.resource_id, **_correlation(approval)})
    try:
        arm.consumer_encryption_clear(binding.resource_id, remove_identity=binding.identity_id
                                      if binding.identity_created else "")
    except PortalError as exc:
        CmkBinding.objects.filter(pk=binding.pk).update(status=CmkBinding.Status.ACTIVE)
        audit_result(intent, ok=False, detail={"error": exc.code, "message": exc.message[:300]})
        raise
    notes = []
    if binding.role_assignment:
        try:
            rbac.role_assignment_delete(binding.hsm, scope=f"/keys/{binding.key_name}",
                                        name=binding.role_assignment)
            _forget_assignment(binding.hsm, binding.role_assignment)
        except PortalError as exc:
            notes.append(f"role assignment {binding.role_assignment} stays ({exc.message})")
    if binding.identity_created and binding.identity_id:
        try:
            arm.identity_delete(binding.identity_id)
        except PortalError as exc:
            notes.append(f"identity stays ({exc.message})")
    with transaction.atomic():
        CmkBinding.objects.filter(pk=binding.pk).update(
            status=CmkBinding.Status.DETACHED, role_assignment="", identity_created=False,
            error="; ".join(notes))
        audit_result(intent, ok=True, detail={"left": notes} if notes else None)
    binding.refresh_from_db()
    return binding


# -- the usage scan -------------------------------------------------------------------------

def cmk_usage_scan() -> dict:
    """Beat: read every CMK consumer of every subscription that holds a registered HSM and
    record which key (and version) each uses. New uses and uses that ended are audited as
    observations. A subscription that cannot be read is skipped (its rows stay as they were).
    Returns counts {"seen", "found", "gone", "errors"}.
    """
    from keys_app.models import KeyRecord

    hsms = {_vault(h): h for h in HsmInstance.objects.exclude(arm_resource_id="")}
    subscriptions = {arm.parse_id(h.arm_resource_id)["sub"] for h in hsms.values()}
    counts = {"seen": 0, "found": 0, "gone": 0, "errors": 0}
    started = timezone.now()
    scanned_subs = set()
    for sub in sorted(subscriptions):
        try:
            consumers = arm.consumers_list(sub)
        except PortalError as exc:
            logger.warning("CMK usage scan of a subscription failed: %s", exc.code)
            counts["errors"] += 1
            continue
        scanned_subs.add(sub.lower())
        for item in consumers:
            key = item.get("key")
            hsm = hsms.get((key or {}).get("vault", ""))
            if not key or hsm is None:
                continue
            counts["seen"] += 1
            version = key["version"] or key["current_version"]
            if not version:
                latest = KeyRecord.objects.filter(hsm=hsm, name__iexact=key["name"]).first()
                version = latest.version if latest else ""
            with transaction.atomic():
                row = CmkBinding.objects.select_for_update().filter(
                    resource_id__iexact=item["id"]).first()
                if row is not None and row.status in (CmkBinding.Status.ATTACHING,
                                                      CmkBinding.Status.DETACHING):
                    continue  # a job owns it now
                fields = {"hsm": hsm, "key_name": key["name"], "kind": item["kind"],
                          "resource_name": item["name"], "resource_group": item["resource_group"],
                          "location": item["location"], "identity_id": key["identity"],
                          "identity_principal_id": item["identities"].get(
                              key["identity"], {}).get("principal_id", ""),
                          "versionless": not key["version"], "version_in_use": version,
                          "status": CmkBinding.Status.ACTIVE, "last_seen_at": started}
                if row is None or not row.in_use or row.key_name.lower() != key["name"].lower():
                    counts["found"] += 1
                    audit_record(actor=None, action="cmk.usage_found",
                                 target=binding_target(hsm_name=hsm.name, key=key["name"],
                                                       resource=item["name"]),
                                 outcome=AuditEvent.Outcome.RECORDED,
                                 detail={"resource_id": item["id"], "version": version,
                                         "versionless": not key["version"]})
                if row is None:
                    CmkBinding.objects.create(resource_id=item["id"],
                                              origin=CmkBinding.Origin.SCAN, **fields)
                else:
                    for name, value in fields.items():
                        setattr(row, name, value)
                    row.save()
    # In use before, not seen now, in a subscription that was read: the use ended.
    for row in CmkBinding.objects.filter(status=CmkBinding.Status.ACTIVE).filter(
            last_seen_at__lt=started) | CmkBinding.objects.filter(
            status=CmkBinding.Status.ACTIVE, last_seen_at__isnull=True):
        if arm.parse_id(row.resource_id)["sub"].lower() not in scanned_subs:
            continue
        with transaction.atomic():
            if CmkBinding.objects.filter(pk=row.pk, status=CmkBinding.Status.ACTIVE).update(
                    status=CmkBinding.Status.DETACHED, error="No longer uses the key "
                                                            "(changed outside the portal)."):
                counts["gone"] += 1
                audit_record(actor=None, action="cmk.usage_gone", target=binding_target(row),
                             outcome=AuditEvent.Outcome.RECORDED,
                             detail={"resource_id": row.resource_id})
    return counts


# -- the HSM's Azure resource ---------------------------------------------------------------

def _hsm_target(hsm: HsmInstance) -> str:
    return f"hsm:{hsm.name}"


def _hsm_call(intent: AuditEvent, call):
    try:
        return call()
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.code, "message": exc.message[:300]})
        raise


def hsm_network_access_set(*, hsm: HsmInstance | str, enabled: bool, actor, request_id: str,
                           approval=None, justification: str = "",
                           ticket: str = "") -> dict | ApprovalRequest:
    """Turn the HSM's public network access on or off. Needs approval
    (`hsm.public_network_access`); audited (`hsm.public_network_access`) with the value
    Azure reports after."""
    hsm = hsm_resolve(hsm)
    current = arm.hsm_resource_get(hsm)
    wanted = "Enabled" if enabled else "Disabled"
    if current["public_network_access"] == wanted:
        raise BadInput(f"Public network access of HSM {hsm.name} is already {wanted.lower()}.",
                       code="no_change")
    pending = approval_require(operation="hsm.public_network_access", actor=actor,
                               payload={"hsm": hsm.name, "enabled": bool(enabled)},
                               target=_hsm_target(hsm), request_id=request_id, approval=approval,
                               justification=justification, ticket=ticket,
                               context={"hsm": hsm.name, "scope": "resource"})
    if pending is not None:
        return pending
    intent = audit_record(actor=actor, action="hsm.public_network_access",
                          target=_hsm_target(hsm), request_id=request_id,
                          detail={"from": current["public_network_access"], "to": wanted,
                                  **_correlation(approval)})
    after = _hsm_call(intent, lambda: arm.hsm_public_network_access_set(hsm, enabled=enabled))
    audit_result(intent, ok=after["public_network_access"] == wanted,
                 detail={"now": after["public_network_access"]})
    if after["public_network_access"] != wanted:
        raise Conflict(f"Azure still reports public network access {after['public_network_access']}"
                       f" for HSM {hsm.name}.", code="not_applied")
    return after


def hsm_purge_protection_enable(*, hsm: HsmInstance | str, actor, request_id: str, approval=None,
                                justification: str = "", ticket: str = "") -> dict | ApprovalRequest:
    """Turn on the HSM's purge protection, which Azure services require of a CMK's HSM and
    which can never be turned off. Needs approval (`hsm.purge_protection`); audited."""
    hsm = hsm_resolve(hsm)
    if arm.hsm_resource_get(hsm)["purge_protection"]:
        raise BadInput(f"Purge protection of HSM {hsm.name} is already on.", code="no_change")
    pending = approval_require(operation="hsm.purge_protection", actor=actor,
                               payload={"hsm": hsm.name}, target=_hsm_target(hsm),
                               request_id=request_id, approval=approval,
                               justification=justification, ticket=ticket,
                               context={"hsm": hsm.name, "scope": "resource"})
    if pending is not None:
        return pending
    intent = audit_record(actor=actor, action="hsm.purge_protection", target=_hsm_target(hsm),
                          request_id=request_id, detail={"to": True, **_correlation(approval)})
    after = _hsm_call(intent, lambda: arm.hsm_purge_protection_enable(hsm))
    audit_result(intent, ok=after["purge_protection"], detail={"now": after["purge_protection"]})
    return after


def hsm_private_endpoint_decide(*, hsm: HsmInstance | str, name: str, status: str,
                                description: str = "", actor, request_id: str, approval=None,
                                justification: str = "", ticket: str = "") -> dict | ApprovalRequest:
    """Approve or reject a private endpoint connection to the HSM. Needs approval
    (`hsm.private_endpoint`); audited with the state Azure reports after."""
    hsm = hsm_resolve(hsm)
    if status not in ("Approved", "Rejected"):
        raise BadInput("A private endpoint connection is Approved or Rejected.",
                       fields={"status": ["Approved or Rejected."]})
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise BadInput(f"The description is at most {MAX_DESCRIPTION} characters.",
                       fields={"description": [f"At most {MAX_DESCRIPTION} characters."]})
    connections = {c["name"]: c for c in arm.hsm_resource_get(hsm)["private_endpoint_connections"]}
    if name not in connections:
        raise NotFound(f"HSM {hsm.name} has no private endpoint connection named {name}.")
    if connections[name]["status"] == status:
        raise BadInput(f"Connection {name} is already {status.lower()}.", code="no_change")
    pending = approval_require(operation="hsm.private_endpoint", actor=actor,
                               payload={"hsm": hsm.name, "name": name, "status": status,
                                        "description": description},
                               target=f"{_hsm_target(hsm)}/private-endpoint:{name}",
                               request_id=request_id, approval=approval,
                               justification=justification, ticket=ticket,
                               context={"hsm": hsm.name, "scope": "resource"})
    if pending is not None:
        return pending
    intent = audit_record(actor=actor, action="hsm.private_endpoint",
                          target=f"{_hsm_target(hsm)}/private-endpoint:{name}",
                          request_id=request_id,
                          detail={"from": connections[name]["status"], "to": status,
                                  **_correlation(approval)})
    after = _hsm_call(intent, lambda: arm.hsm_private_endpoint_set(
        hsm, name=name, status=status, description=description))
    audit_result(intent, ok=after["status"] == status, detail={"now": after["status"]})
    return after


def _regions_change(*, hsm: HsmInstance, region: str, add: bool, actor, request_id: str) -> dict:
    region = (region or "").replace(" ", "").lower()
    if not REGION.match(region):
        raise BadInput("Name an Azure region, such as northeurope.",
                       fields={"region": ["An Azure region name, such as northeurope."]})
    current = arm.hsm_resource_get(hsm)
    regions = current["regions"] or [{"name": current["location"], "is_primary": True}]
    names = [r["name"] for r in regions]
    primary = next((r["name"] for r in regions if r["is_primary"]), current["location"])
    if add and region in [n.lower() for n in names]:
        raise BadInput(f"HSM {hsm.name} already has {region}.", code="no_change")
    if not add and region == primary.lower():
        raise BadInput(f"{region} is HSM {hsm.name}'s primary region; only a replica can be "
                       "removed.", fields={"region": ["Not the primary region."]})
    if not add and region not in [n.lower() for n in names]:
        raise NotFound(f"HSM {hsm.name} has no replica in {region}.")
    wanted = [primary] + [n for n in names if n.lower() not in (primary.lower(), region)] + \
        ([region] if add else [])
    action = "hsm.replica_add" if add else "hsm.replica_remove"
    intent = audit_record(actor=actor, action=action, target=_hsm_target(hsm),
                          request_id=request_id, detail={"region": region, "regions": wanted})
    after = _hsm_call(intent, lambda: arm.hsm_regions_set(hsm, regions=wanted))
    now = {r["name"].lower(): r["provisioning_state"] for r in after["regions"]}
    ok = (region in now) if add else (region not in now or now[region] == "Deleting")
    audit_result(intent, ok=ok, detail={"regions": now})
    if not ok:
        raise Conflict(f"Azure did not apply the change of region {region}.", code="not_applied")
    return after


def hsm_replica_add(*, hsm: HsmInstance, region: str, actor, request_id: str) -> dict:
    """Add a secondary region (a replica) to the HSM. Audited (`hsm.replica_add`)."""
    return _regions_change(hsm=hsm, region=region, add=True, actor=actor, request_id=request_id)


def hsm_replica_remove(*, hsm: HsmInstance, region: str, actor, request_id: str) -> dict:
    """Remove the HSM's replica in a region. Audited (`hsm.replica_remove`)."""
    return _regions_change(hsm=hsm, region=region, add=False, actor=actor, request_id=request_id)


def attach_choices(*, hsm: HsmInstance) -> dict:
    """What the wizard offers for one HSM, read now: its keys that can wrap (from the
    inventory), the subscription's CMK-capable resources and user-assigned identities (from
    Resource Manager), and the HSM's regions (for the replica note). Reads only."""
    from keys_app.models import KeyRecord

    keys = [k.name for k in KeyRecord.objects.filter(hsm=hsm, state=KeyRecord.State.ACTIVE)
            .order_by("name")]
    sub = _subscription(hsm)
    resources = arm.consumers_list(sub)
    identities = arm.identities_list(sub)
    try:
        regions = arm.hsm_resource_get(hsm)["regions"]
    except PortalError:
        regions = []
    return {"keys": keys, "resources": resources, "identities": identities, "regions": regions}
