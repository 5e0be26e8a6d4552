"""Local RBAC: every grant is a request, approved by someone else, time-boxed, and revoked
automatically; everything here is audited (intent before the HSM is touched, outcome after).

- `access_request_create` records the request and asks for approval
  (`role_assignment.create`, policy context role + scope + HSM). On final approval the
  approvals job calls `role_assignment_grant`, which creates the assignment on the HSM once
  (a conditional UPDATE claims the request; the assignment's name is fixed when the request
  is made, so even a repeat call to the HSM is one assignment) and records its expiry.
- `access_housekeeping` (Celery beat) removes expired grants from the HSM and closes
  review campaigns that have ended.
- `rbac_sync` reads definitions and assignments from the HSM into the cache; assignments
  the portal did not make are drift, to adopt into a request or revoke (with approval).
- Every audit row of one grant carries its request's correlation id as request_id:
  request -> approval(s) -> assignment -> revocation read as one story.
"""
import logging
import re
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from access_app.models import (AccessRequest, ReviewCampaign, ReviewItem, RoleAssignmentRecord,
                               RoleDefinitionRecord)
from access_app.selectors import principal_names, role_definition_by_id_or_name
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result
from portal.errors import BadInput, Conflict, NotAllowed, NotFound, PortalError
from portal.gateway import rbac
from portal.gateway.models import HsmInstance

logger = logging.getLogger(__name__)

SCOPE_RE = re.compile(r"^/(keys(/[0-9A-Za-z-]{1,127})?)?$")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")
TICKET_RE = re.compile(r"^[0-9A-Za-z._:#/-]{0,64}$")
HSM_ADMINS = "HSM admins"
JUSTIFICATION_MIN, JUSTIFICATION_MAX = 10, 2000
# The roles whose grants at "/" need two approvers by the default policy.
PRIVILEGED_ROLES = ("Managed HSM Administrator", "Managed HSM Policy Administrator",
                    "Managed HSM Crypto Officer")


def now() -> datetime:
    """The service's clock (tests move it to see a grant expire)."""
    return timezone.now()


def max_duration_hours() -> int:
    return int(getattr(settings, "ACCESS_MAX_DURATION_HOURS", 72))


def assignment_target(hsm_name: str, scope: str) -> str:
    """The audit target of an assignment scope: hsm:<name>/key:<key> for a key, else scope."""
    if scope.lower().startswith("/keys/"):
        return f"hsm:{hsm_name}/key:{scope.split('/', 2)[2]}"
    return f"hsm:{hsm_name}/rbac:{scope}"


def scope_validate(scope: str) -> str:
    """`/`, `/keys` or `/keys/<key name>`; anything else is a 400 sentence."""
    scope = (scope or "").strip()
    if len(scope) > 140 or not SCOPE_RE.match(scope):
        raise BadInput("The scope must be /, /keys or /keys/<key name>.", code="bad_scope",
                       fields={"scope": ["Use /, /keys or /keys/<key name> (1-127 letters, "
                                         "digits and hyphens)."]})
    return scope


def _hsm(value) -> HsmInstance:
    if isinstance(value, HsmInstance):
        return value
    hsm = HsmInstance.objects.filter(name=value).first()
    if hsm is None:
        raise NotFound(f"No HSM named {value} is registered.")
    return hsm


def _closed(intent: AuditEvent, exc: PortalError) -> None:
    audit_result(intent, ok=False, detail={"error": exc.code, "message": exc.message[:300]})


# -- the portal's own identity -----------------------------------------------------------

_self_ids: dict[str, tuple[float, set[str]]] = {}


def portal_principal_ids() -> set[str]:
    """Object ids the portal itself signs in as: ACCESS_PORTAL_PRINCIPAL_ID, else the service
    principal of AZURE_CLIENT_ID found in the directory (cached 10 minutes; empty when the
    directory cannot say). Its assignments are never drift, never revoked or adopted: they
    are how the portal manages the HSM."""
    import time

    explicit = (getattr(settings, "ACCESS_PORTAL_PRINCIPAL_ID", "") or "").strip().lower()
    if explicit:
        return {explicit}
    client_id = (getattr(settings, "AZURE_CLIENT_ID", "") or "").strip()
    if not GUID_RE.match(client_id):
        return set()
    cached = _self_ids.get(client_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    found: set[str] = set()
    try:
        from portal.gateway import directory

        found = {p["id"].lower() for p in directory.principal_search(client_id)
                 if p.get("kind") == "service_principal" and
                 (p.get("app_id") or "").lower() == client_id.lower()}
    except Exception as exc:  # noqa: BLE001 - unknown: nothing is treated as the portal
        logger.warning("Could not find the portal's own principal: %s", exc.__class__.__name__)
        return set()
    _self_ids[client_id] = (time.monotonic() + 600, found)
    return found


def _refuse_self(principal_id: str) -> None:
    if principal_id.lower() in portal_principal_ids():
        raise Conflict("This assignment is the portal's own access to the HSM; removing or "
                       "time-boxing it would stop the portal managing this HSM. Change it "
                       "with the Azure CLI if you really mean to.", code="portal_identity")


# -- sync ------------------------------------------------------------------------------


def rbac_sync(*, hsm: HsmInstance, actor=None, request_id: str = "") -> dict:
    """Refresh role definitions and assignments from the HSM; flag and audit drift.

    Returns counts: {"definitions", "assignments", "drift_new", "removed_outside"}.
    """
    started = timezone.now()
    definitions = rbac.role_definitions_list(hsm)
    assignments = rbac.role_assignments_list(hsm, "/")
    with transaction.atomic():
        seen = []
        for item in definitions:
            seen.append(item["name"])
            RoleDefinitionRecord.objects.update_or_create(
                hsm=hsm, name=item["name"], defaults={
                    "definition_id": item["id"], "role_name": item["role_name"],
                    "role_type": item["role_type"], "description": item["description"],
                    "permissions": item["permissions"], "synced_at": started})
        RoleDefinitionRecord.objects.filter(hsm=hsm).exclude(name__in=seen).delete()
    role_names = {d["id"].lower(): d["role_name"] for d in definitions}
    by_name = {a["name"].lower(): a for a in assignments}
    requests = {r.assignment_name.lower(): r for r in AccessRequest.objects.filter(
        hsm=hsm, assignment_name__in=[a["name"] for a in assignments])}
    drift_new = 0
    own = portal_principal_ids()
    known = {row.name.lower(): row for row in RoleAssignmentRecord.objects.filter(hsm=hsm)}
    # Seen now: one statement for every known row; a row whose fields changed is rewritten.
    RoleAssignmentRecord.objects.filter(
        pk__in=[known[k].pk for k in by_name if k in known]).update(last_seen_at=started)
    for key, item in by_name.items():
        role_name = role_names.get(item["role_definition_id"].lower(), "")
        request = requests.get(key)
        row = known.get(key)
        if row is not None:
            fields = {"removed_at": None, "role_name": role_name, "scope": item["scope"],
                      "principal_id": item["principal_id"],
                      "role_definition_id": item["role_definition_id"]}
            if row.origin == RoleAssignmentRecord.Origin.DRIFT and \
                    item["principal_id"].lower() in own:
                fields["origin"] = RoleAssignmentRecord.Origin.SELF
            if any(getattr(row, name) != value for name, value in fields.items()):
                RoleAssignmentRecord.objects.filter(pk=row.pk).update(**fields)
            continue
        origin = (RoleAssignmentRecord.Origin.PORTAL if request else
                  RoleAssignmentRecord.Origin.SELF if item["principal_id"].lower() in own
                  else RoleAssignmentRecord.Origin.DRIFT)
        try:
            with transaction.atomic():
                RoleAssignmentRecord.objects.create(
                    hsm=hsm, name=item["name"], scope=item["scope"],
                    principal_id=item["principal_id"],
                    role_definition_id=item["role_definition_id"], role_name=role_name,
                    origin=origin, access_request=request, first_seen_at=started,
                    last_seen_at=started)
                if origin == RoleAssignmentRecord.Origin.DRIFT:
                    # An observation, not an action: one row, outcome recorded.
                    audit_record(actor=actor, action="role_assignment.drift",
                                 target=assignment_target(hsm.name, item["scope"]),
                                 request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                                 detail={"assignment": item["name"], "role": role_name,
                                         "principal_id": item["principal_id"],
                                         "scope": item["scope"],
                                         "finding": "made outside the portal"})
                    drift_new += 1
        except IntegrityError:
            continue  # a concurrent sync recorded it first
    # Gone from the HSM: only rows not seen since this sync began (a grant recorded while
    # it ran is newer and stays).
    gone = RoleAssignmentRecord.objects.filter(
        hsm=hsm, removed_at__isnull=True, last_seen_at__lt=started).exclude(
        name__in=[a["name"] for a in assignments])
    removed_outside = 0
    for row in list(gone):
        with transaction.atomic():
            if not RoleAssignmentRecord.objects.filter(pk=row.pk, removed_at__isnull=True,
                                                       last_seen_at__lt=started).update(
                    removed_at=started):
                continue
            audit_record(actor=actor, action="role_assignment.drift",
                         target=assignment_target(hsm.name, row.scope),
                         request_id=(row.access_request.correlation_id
                                     if row.access_request_id else request_id),
                         outcome=AuditEvent.Outcome.RECORDED,
                         detail={"assignment": row.name, "role": row.role_name,
                                 "principal_id": row.principal_id, "scope": row.scope,
                                 "finding": "removed outside the portal"})
            if row.access_request_id:
                AccessRequest.objects.filter(
                    pk=row.access_request_id, status=AccessRequest.Status.ACTIVE).update(
                    status=AccessRequest.Status.REVOKED, ended_at=started,
                    error="Removed on the HSM outside the portal.")
            removed_outside += 1
    counts = {"definitions": len(definitions), "assignments": len(assignments),
              "drift_new": drift_new, "removed_outside": removed_outside}
    if actor is not None:  # someone asked for it (beat's syncs leave only their findings)
        audit_record(actor=actor, action="rbac.sync", target=f"hsm:{hsm.name}",
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED, detail=counts)
    return counts


def rbac_sync_all() -> None:
    """Sync local RBAC of every registered HSM (beat); one HSM failing does not stop the rest."""
    for hsm in HsmInstance.objects.all():
        try:
            rbac_sync(hsm=hsm)
        except PortalError as exc:
            logger.warning("Local RBAC sync of %s failed: %s", hsm.name, exc.code)


def _definition(hsm: HsmInstance, role: str) -> RoleDefinitionRecord:
    definition = role_definition_by_id_or_name(hsm=hsm, value=role)
    if definition is None:
        rbac_sync(hsm=hsm)  # a role created a moment ago, outside the portal
        definition = role_definition_by_id_or_name(hsm=hsm, value=role)
    if definition is None:
        raise BadInput(f"HSM {hsm.name} has no role definition {role}.", code="unknown_role",
                       fields={"role": ["Choose one of the HSM's role definitions."]})
    return definition


# -- access requests -------------------------------------------------------------------


def _request_payload(request: AccessRequest) -> dict:
    """The exact change an approval binds to (JSON; a changed row voids the approval)."""
    return {"access_request_id": request.pk, "hsm": request.hsm.name,
            "principal_id": request.principal_id.lower(),
            "role_definition_id": request.role_definition_id, "scope": request.scope,
            "duration_hours": request.duration_hours,
            "assignment_name": request.assignment_name, "kind": request.kind}


def _context(request_or_role: str, scope: str, hsm_name: str) -> dict:
    return {"role": request_or_role, "scope": scope, "hsm": hsm_name}


def access_request_create(*, hsm: HsmInstance, principal_id: str, role: str, scope: str,
                          justification: str, ticket: str = "", duration_hours,
                          actor, request_id: str, adopt: RoleAssignmentRecord | None = None):
    """Request role `role` (GUID, definition id or role name) at `scope` for a principal.

    Returns (access_request, pending approval or None). Validates every input into a
    sentence; the request and its approval commit together with the audit intent.
    """
    from portal.approvals.services import approval_require

    principal_id = (principal_id or "").strip().lower()
    if not GUID_RE.match(principal_id):
        raise BadInput("The principal must be a directory object id (a GUID).",
                       code="bad_principal",
                       fields={"principal_id": ["Enter the principal's object id."]})
    scope = scope_validate(scope)
    justification = (justification or "").strip()
    if not JUSTIFICATION_MIN <= len(justification) <= JUSTIFICATION_MAX:
        raise BadInput(f"Say why this access is needed ({JUSTIFICATION_MIN} to "
                       f"{JUSTIFICATION_MAX} characters).", code="bad_justification",
                       fields={"justification": [f"{JUSTIFICATION_MIN}-{JUSTIFICATION_MAX} "
                                                 "characters."]})
    ticket = (ticket or "").strip()
    if not TICKET_RE.match(ticket):
        raise BadInput("The ticket reference may hold up to 64 letters, digits and . _ : # / -.",
                       code="bad_ticket", fields={"ticket": ["Up to 64 letters, digits, . _ : # / -"]})
    limit = max_duration_hours()
    try:
        hours = int(duration_hours)
    except (TypeError, ValueError):
        hours = 0
    if not 1 <= hours <= limit or str(duration_hours).strip() not in (str(hours), f"{hours}.0"):
        raise BadInput(f"The duration must be a whole number of hours from 1 to {limit}.",
                       code="bad_duration",
                       fields={"duration_hours": [f"1 to {limit} hours."]})
    definition = _definition(hsm, role)
    if adopt is None and RoleAssignmentRecord.objects.filter(
            hsm=hsm, removed_at__isnull=True, scope__iexact=scope, principal_id__iexact=principal_id,
            role_definition_id__iexact=definition.definition_id).exists():
        raise Conflict(f"{principal_id} already holds {definition.role_name} at {scope} on "
                       f"{hsm.name}.", code="already_assigned")
    name = principal_names([principal_id]).get(principal_id, "")
    with transaction.atomic():
        request = AccessRequest.objects.create(
            hsm=hsm, kind=AccessRequest.Kind.ADOPT if adopt else AccessRequest.Kind.GRANT,
            principal_id=principal_id, principal_name=name[:256],
            role_definition_id=definition.definition_id, role_name=definition.role_name,
            scope=scope, justification=justification, ticket=ticket, duration_hours=hours,
            assignment_name=adopt.name if adopt else str(uuid.uuid4()),
            requested_by=actor, requested_by_name=actor.get_username() if actor else "",
            correlation_id=(request_id or uuid.uuid4().hex)[:64])
        pending = approval_require(
            operation="role_assignment.create", actor=actor, payload=_request_payload(request),
            target=assignment_target(hsm.name, scope), request_id=request_id,
            justification=justification, ticket=ticket,
            context=_context(definition.role_name, scope, hsm.name))
        if pending is not None:
            # One correlation id from here on: the approval's (its rows carry it in detail).
            request.approval_request_id = pending.pk
            request.correlation_id = pending.correlation_id
            AccessRequest.objects.filter(pk=request.pk).update(
                approval_request_id=pending.pk, correlation_id=pending.correlation_id)
        audit_record(actor=actor, action="access_request.create",
                     target=assignment_target(hsm.name, scope), request_id=request.correlation_id,
                     outcome=AuditEvent.Outcome.RECORDED,
                     detail={"correlation_id": request.correlation_id,
                             "access_request": request.pk, "principal_id": principal_id,
                             "role": definition.role_name, "scope": scope,
                             "duration_hours": hours, "ticket": ticket, "kind": request.kind,
                             "adopts": adopt.name if adopt else "",
                             "approval_id": request.approval_request_id})
    if pending is None:  # a policy that needs no approver: grant now
        request = role_assignment_grant(actor=actor, approval=None, request_id=request_id,
                                        **_request_payload(request))
    return request, pending


def role_assignment_grant(*, actor, approval=None, request_id: str = "", access_request_id: int,
                          hsm: str, principal_id: str, role_definition_id: str, scope: str,
                          duration_hours: int, assignment_name: str, kind: str = "grant"):
    """Create the approved assignment on the HSM (the service behind role_assignment.create).

    Runs once per request whatever calls it how often: the approval is claimed by
    `approval_require`, then the request row by a conditional UPDATE (pending -> granting),
    and the assignment's name was fixed when the request was made.
    """
    from portal.approvals.services import approval_require

    request = AccessRequest.objects.select_related("hsm").filter(pk=access_request_id).first()
    if request is None:
        raise NotFound(f"No access request #{access_request_id}.")
    payload = {"access_request_id": access_request_id, "hsm": hsm, "principal_id": principal_id,
               "role_definition_id": role_definition_id, "scope": scope,
               "duration_hours": duration_hours, "assignment_name": assignment_name, "kind": kind}
    if payload != _request_payload(request):
        raise Conflict(f"Access request #{request.pk} no longer matches what was approved; "
                       "nothing was granted.", code="request_changed")
    pending = approval_require(
        operation="role_assignment.create", actor=actor, payload=payload,
        target=assignment_target(hsm, scope), request_id=request.correlation_id,
        approval=approval, justification=request.justification, ticket=request.ticket,
        context=_context(request.role_name, scope, hsm))
    if pending is not None:
        return pending
    if not AccessRequest.objects.filter(pk=request.pk, status=AccessRequest.Status.PENDING).update(
            status=AccessRequest.Status.GRANTING, claimed_at=timezone.now()):
        request.refresh_from_db()
        return request  # granted (or being granted) by another execution
    intent = audit_record(actor=actor, action="role_assignment.create",
                          target=assignment_target(hsm, scope), request_id=request.correlation_id,
                          detail={"correlation_id": request.correlation_id,
                                  "access_request": request.pk, "assignment": assignment_name,
                                  "principal_id": principal_id, "role": request.role_name,
                                  "scope": scope, "duration_hours": duration_hours,
                                  "approval": getattr(approval, "pk", None)})
    try:
        created = rbac.role_assignment_create(request.hsm, scope=scope,
                                              definition_id=role_definition_id,
                                              principal_id=principal_id, name=assignment_name)
    except PortalError as exc:
        _closed(intent, exc)
        AccessRequest.objects.filter(pk=request.pk).update(
            status=AccessRequest.Status.FAILED, error=exc.message[:500], ended_at=timezone.now())
        raise
    granted = now()
    with transaction.atomic():
        origin = (RoleAssignmentRecord.Origin.ADOPTED if kind == AccessRequest.Kind.ADOPT
                  else RoleAssignmentRecord.Origin.PORTAL)
        row, made = RoleAssignmentRecord.objects.get_or_create(
            hsm=request.hsm, name=created["name"], defaults={
                "scope": created["scope"], "principal_id": created["principal_id"],
                "role_definition_id": created["role_definition_id"],
                "role_name": request.role_name, "origin": origin, "access_request": request,
                "first_seen_at": granted, "last_seen_at": timezone.now()})
        if not made:
            RoleAssignmentRecord.objects.filter(pk=row.pk).update(
                origin=origin, access_request=request, removed_at=None,
                last_seen_at=timezone.now(), role_name=request.role_name)
        expires = granted + timedelta(hours=duration_hours)
        AccessRequest.objects.filter(pk=request.pk).update(
            status=AccessRequest.Status.ACTIVE, granted_at=granted, expires_at=expires)
        audit_result(intent, ok=True, detail={"expires_at": expires.isoformat()},
                     done=f"The HSM granted {request.role_name} at {scope}")
    request.refresh_from_db()
    return request


def _revoke_payload(row: RoleAssignmentRecord, reason: str) -> dict:
    return {"hsm": row.hsm.name, "assignment_name": row.name, "scope": row.scope,
            "principal_id": row.principal_id.lower(), "role_definition_id": row.role_definition_id,
            "reason": reason}


def role_assignment_revoke_request(*, hsm: HsmInstance, name: str, actor, request_id: str,
                                   reason: str = "revoke", justification: str = ""):
    """Ask for an assignment's removal (role_assignment.delete needs approval).

    Returns the pending approval request (or the revoked row if no approval is needed).
    """
    row = RoleAssignmentRecord.objects.select_related("hsm", "access_request").filter(
        hsm=hsm, name__iexact=name, removed_at__isnull=True).first()
    if row is None:
        raise NotFound(f"No role assignment {name} on HSM {hsm.name}.")
    _refuse_self(row.principal_id)
    correlation = row.access_request.correlation_id if row.access_request_id else request_id
    return role_assignment_revoke(actor=actor, approval=None, request_id=correlation,
                                  justification=justification, **_revoke_payload(row, reason))


def role_assignment_revoke(*, actor, approval=None, request_id: str = "", hsm: str,
                           assignment_name: str, scope: str, principal_id: str,
                           role_definition_id: str, reason: str = "revoke",
                           justification: str = ""):
    """Remove an assignment from the HSM (the service behind role_assignment.delete)."""
    from portal.approvals.services import approval_require

    _refuse_self(principal_id)
    hsm_row = _hsm(hsm)
    row = RoleAssignmentRecord.objects.select_related("access_request").filter(
        hsm=hsm_row, name__iexact=assignment_name).first()
    role_name = row.role_name if row else role_definition_id
    correlation = (row.access_request.correlation_id if row and row.access_request_id
                   else request_id)
    payload = {"hsm": hsm, "assignment_name": assignment_name, "scope": scope,
               "principal_id": principal_id, "role_definition_id": role_definition_id,
               "reason": reason}
    pending = approval_require(
        operation="role_assignment.delete", actor=actor, payload=payload,
        target=assignment_target(hsm, scope), request_id=correlation, approval=approval,
        justification=justification or f"Revoke {role_name} at {scope} ({reason})",
        context=_context(role_name, scope, hsm))
    if pending is not None:
        return pending
    return _assignment_remove(hsm=hsm_row, row=row, actor=actor, correlation=correlation,
                              reason=reason, scope=scope, name=assignment_name,
                              approval=approval)


def _assignment_remove(*, hsm: HsmInstance, row: RoleAssignmentRecord | None, actor,
                       correlation: str, reason: str, scope: str, name: str, approval=None,
                       final_status: str = AccessRequest.Status.REVOKED):
    intent = audit_record(actor=actor, action="role_assignment.delete",
                          target=assignment_target(hsm.name, scope), request_id=correlation,
                          detail={"correlation_id": correlation,
                                  "assignment": name, "scope": scope, "reason": reason,
                                  "role": row.role_name if row else "",
                                  "principal_id": row.principal_id if row else "",
                                  "approval": getattr(approval, "pk", None)})
    try:
        rbac.role_assignment_delete(hsm, scope=scope, name=name)
    except PortalError as exc:
        _closed(intent, exc)
        raise
    ended = now()
    with transaction.atomic():
        if row is not None:
            RoleAssignmentRecord.objects.filter(pk=row.pk).update(removed_at=timezone.now())
            if row.access_request_id:
                AccessRequest.objects.filter(pk=row.access_request_id).exclude(
                    status__in=(AccessRequest.Status.EXPIRED, AccessRequest.Status.REVOKED)).update(
                    status=final_status, ended_at=ended)
        audit_result(intent, ok=True, done=f"The HSM removed assignment {name}")
    return row


def access_expire_due(*, at: datetime | None = None) -> int:
    """Remove every grant whose time is up from the HSM (beat). Returns how many."""
    at = at or now()
    count = 0
    due = AccessRequest.objects.select_related("hsm").filter(
        status=AccessRequest.Status.ACTIVE, expires_at__lte=at).order_by("expires_at")[:500]
    for request in due:
        # One remover per grant across workers: active -> revoking, conditionally.
        if not AccessRequest.objects.filter(pk=request.pk, status=AccessRequest.Status.ACTIVE).update(
                status=AccessRequest.Status.REVOKING, claimed_at=timezone.now()):
            continue
        row = RoleAssignmentRecord.objects.filter(hsm=request.hsm,
                                                  name__iexact=request.assignment_name).first()
        try:
            _assignment_remove(hsm=request.hsm, row=row, actor=None,
                               correlation=request.correlation_id, reason="expired",
                               scope=request.scope, name=request.assignment_name,
                               final_status=AccessRequest.Status.EXPIRED)
        except PortalError as exc:
            # Try again next beat.
            AccessRequest.objects.filter(pk=request.pk).update(
                status=AccessRequest.Status.ACTIVE, error=exc.message[:500])
            logger.warning("Expiring access request %s failed: %s", request.pk, exc.code)
            continue
        AccessRequest.objects.filter(pk=request.pk).update(status=AccessRequest.Status.EXPIRED,
                                                           ended_at=at)
        count += 1
    return count


def access_requests_settle(*, ids: list[int] | None = None) -> int:
    """Close pending requests whose approval ended without running (denied, expired,
    cancelled, voided, failed): their status says so, audited. Returns how many."""
    from portal.approvals.models import ApprovalRequest

    approval_status = ApprovalRequest.Status
    pending = AccessRequest.objects.select_related("hsm").filter(
        status=AccessRequest.Status.PENDING, approval_request_id__isnull=False)
    if ids is not None:
        pending = pending.filter(pk__in=ids)
    pending = list(pending[:500])
    approvals = ApprovalRequest.objects.in_bulk([r.approval_request_id for r in pending])
    at = timezone.now()
    settled = 0
    for request in pending:
        approval = approvals.get(request.approval_request_id)
        if approval is None:
            status, why = AccessRequest.Status.NOT_GRANTED, "Its approval request no longer exists."
        elif approval.status == approval_status.DENIED:
            status, why = AccessRequest.Status.DENIED, "An approver denied it."
        elif approval.status == approval_status.FAILED:
            status, why = AccessRequest.Status.FAILED, (approval.failure_reason or
                                                        "The approved grant failed.")[:500]
        elif approval.status in (approval_status.EXPIRED, approval_status.CANCELLED,
                                 approval_status.VOID) or (
                approval.status == approval_status.PENDING and approval.expires <= at):
            status, why = AccessRequest.Status.NOT_GRANTED, (
                f"Its approval request is {approval.get_status_display().lower()}."
                if approval.status != approval_status.PENDING else
                "Its approval request expired before enough approvers decided.")
        else:
            continue
        with transaction.atomic():
            if not AccessRequest.objects.filter(pk=request.pk,
                                                status=AccessRequest.Status.PENDING).update(
                    status=status, error=why, ended_at=at):
                continue
            audit_record(actor=None, action="access_request.close",
                         target=assignment_target(request.hsm.name, request.scope),
                         request_id=request.correlation_id, outcome=AuditEvent.Outcome.RECORDED,
                         detail={"correlation_id": request.correlation_id,
                                 "access_request": request.pk, "status": status, "reason": why})
        settled += 1
    return settled


def access_request_deny_sync(*, request: AccessRequest) -> AccessRequest:
    """The request with its status brought up to date with its approval (pages call it)."""
    if request.status == AccessRequest.Status.PENDING and request.approval_request_id:
        if access_requests_settle(ids=[request.pk]):
            request.refresh_from_db()
    return request


def drift_adopt(*, hsm: HsmInstance, name: str, justification: str, ticket: str = "",
                duration_hours, actor, request_id: str):
    """Put an assignment made outside the portal into a request (time-boxed once approved)."""
    row = RoleAssignmentRecord.objects.filter(hsm=hsm, name__iexact=name,
                                              removed_at__isnull=True).first()
    if row is None:
        raise NotFound(f"No role assignment {name} on HSM {hsm.name}.")
    if row.origin != RoleAssignmentRecord.Origin.DRIFT:
        raise Conflict("This assignment is already the portal's.", code="not_drift")
    if AccessRequest.objects.filter(hsm=hsm, assignment_name__iexact=row.name).exists():
        raise Conflict("This assignment already has a request.", code="already_requested")
    return access_request_create(hsm=hsm, principal_id=row.principal_id,
                                 role=row.role_definition_id, scope=row.scope,
                                 justification=justification, ticket=ticket,
                                 duration_hours=duration_hours, actor=actor,
                                 request_id=request_id, adopt=row)


# -- role definitions ------------------------------------------------------------------


def _actions_validate(values, field: str) -> list[str]:
    values = list(values or [])
    if len(values) > len(rbac.DATA_ACTIONS):
        raise BadInput("Too many data actions.", fields={field: ["Too many."]})
    unknown = [v for v in values if v not in rbac.DATA_ACTIONS]
    if unknown:
        raise BadInput(f"Unknown data action(s): {', '.join(str(u)[:80] for u in unknown[:3])}.",
                       code="bad_data_action",
                       fields={field: ["Choose from the Managed HSM data actions."]})
    return sorted(set(values), key=rbac.DATA_ACTIONS.index)


def role_definition_save(*, hsm: HsmInstance, name: str | None, role_name: str,
                         description: str = "", data_actions, not_data_actions=(), actor,
                         request_id: str) -> RoleDefinitionRecord:
    """Create (name None) or update a custom role definition on the HSM, audited."""
    role_name = (role_name or "").strip()
    if not 1 <= len(role_name) <= 200:
        raise BadInput("Name the role (1 to 200 characters).", code="bad_role_name",
                       fields={"role_name": ["1-200 characters."]})
    description = (description or "").strip()
    if len(description) > 500:
        raise BadInput("The description may be up to 500 characters.",
                       fields={"description": ["Up to 500 characters."]})
    data_actions = _actions_validate(data_actions, "data_actions")
    not_data_actions = _actions_validate(not_data_actions, "not_data_actions")
    if not data_actions:
        raise BadInput("Pick at least one data action.", code="no_data_actions",
                       fields={"data_actions": ["Pick at least one."]})
    if name is not None:
        if not GUID_RE.match(name):
            raise NotFound(f"No role definition {name} on HSM {hsm.name}.")
        existing = RoleDefinitionRecord.objects.filter(hsm=hsm, name__iexact=name).first()
        if existing is None:
            raise NotFound(f"No role definition {name} on HSM {hsm.name}.")
        if not existing.is_custom:
            raise BadInput(f"{existing.role_name} is a built-in role; it cannot be changed.",
                           code="builtin_role")
    elif RoleDefinitionRecord.objects.filter(hsm=hsm, role_name__iexact=role_name).exists():
        raise Conflict(f"HSM {hsm.name} already has a role named {role_name}.",
                       code="role_name_taken")
    new_name = name or str(uuid.uuid4())
    intent = audit_record(actor=actor, action="role_definition.update" if name else
                          "role_definition.create", target=f"hsm:{hsm.name}/role:{new_name}",
                          request_id=request_id,
                          detail={"role_name": role_name, "data_actions": data_actions,
                                  "not_data_actions": not_data_actions})
    try:
        item = rbac.role_definition_set(hsm, name=new_name, role_name=role_name,
                                        description=description, data_actions=data_actions,
                                        not_data_actions=not_data_actions)
    except PortalError as exc:
        _closed(intent, exc)
        raise
    with transaction.atomic():
        record, _ = RoleDefinitionRecord.objects.update_or_create(
            hsm=hsm, name=item["name"], defaults={
                "definition_id": item["id"], "role_name": item["role_name"],
                "role_type": item["role_type"], "description": item["description"],
                "permissions": item["permissions"], "synced_at": timezone.now()})
        audit_result(intent, ok=True)
    return record


def role_definition_delete(*, hsm: HsmInstance, name: str, confirm_name: str | None, actor,
                           request_id: str) -> None:
    """Delete a custom role definition (typed role name to confirm), audited."""
    record = RoleDefinitionRecord.objects.filter(hsm=hsm, name__iexact=name).first()
    if record is None:
        raise NotFound(f"No role definition {name} on HSM {hsm.name}.")
    if not record.is_custom:
        raise BadInput(f"{record.role_name} is a built-in role; it cannot be deleted.",
                       code="builtin_role")
    if confirm_name != record.role_name:
        raise BadInput(f"Type the role name ({record.role_name}) to confirm.",
                       code="confirmation_required",
                       fields={"confirm_name": [f"Type {record.role_name} to confirm."]})
    intent = audit_record(actor=actor, action="role_definition.delete",
                          target=f"hsm:{hsm.name}/role:{record.name}", request_id=request_id,
                          detail={"role_name": record.role_name})
    try:
        rbac.role_definition_delete(hsm, record.name)
    except PortalError as exc:
        _closed(intent, exc)
        raise
    with transaction.atomic():
        RoleDefinitionRecord.objects.filter(pk=record.pk).delete()
        audit_result(intent, ok=True)


# -- access reviews --------------------------------------------------------------------


def _owner(hsm: HsmInstance, scope: str) -> str:
    if scope.lower().startswith("/keys/"):
        from keys_app.models import KeyRecord

        key = KeyRecord.objects.filter(hsm=hsm, name__iexact=scope.split("/", 2)[2]).first()
        owner = ((key.tags or {}).get("owner") or "").strip() if key else ""
        if owner:
            return owner[:256]
    return HSM_ADMINS


def campaign_start(*, hsm: HsmInstance, name: str, days, actor, request_id: str) -> ReviewCampaign:
    """Open an access review of every standing assignment of the HSM (synced first)."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 120:
        raise BadInput("Name the review (1 to 120 characters).", fields={"name": ["1-120 characters."]})
    try:
        days = int(days)
    except (TypeError, ValueError):
        days = 0
    if not 1 <= days <= 90:
        raise BadInput("A review lasts 1 to 90 days.", code="bad_days",
                       fields={"days": ["1 to 90 days."]})
    rbac_sync(hsm=hsm, actor=actor, request_id=request_id)
    with transaction.atomic():
        campaign = ReviewCampaign.objects.create(
            hsm=hsm, name=name, started_by=actor, started_by_name=actor.get_username(),
            correlation_id=(request_id or uuid.uuid4().hex)[:64], ends_at=now() + timedelta(days=days))
        # The portal's own access is not reviewed: it is how the portal works.
        rows = RoleAssignmentRecord.objects.filter(hsm=hsm, removed_at__isnull=True).exclude(
            origin=RoleAssignmentRecord.Origin.SELF)
        ReviewItem.objects.bulk_create([ReviewItem(
            campaign=campaign, assignment=row, assignment_name=row.name,
            principal_id=row.principal_id, role_name=row.role_name, scope=row.scope,
            owner=_owner(hsm, row.scope)) for row in rows])
        audit_record(actor=actor, action="access_review.start", target=f"hsm:{hsm.name}",
                     request_id=campaign.correlation_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"campaign": campaign.pk, "name": name, "items": len(rows),
                             "ends_at": campaign.ends_at.isoformat()})
    return campaign


def review_may_answer(*, user, item: ReviewItem) -> bool:
    """The key's owner answers (by username, email or object id); "HSM admins" items are
    answered by a portal administrator."""
    from portal.accounts.identity import principal_id

    if item.owner == HSM_ADMINS:
        return user.has_perm("access_app.review_reviewcampaign")
    owner = item.owner.lower()
    return owner in {user.get_username().lower(), (user.email or "").lower(),
                     principal_id(user).lower()}


def review_answer(*, item_id: int, decision: str, comment: str = "", actor,
                  request_id: str) -> ReviewItem:
    """Re-approve (keep) or revoke one standing assignment; a revoke goes to approval."""
    item = ReviewItem.objects.select_related("campaign", "campaign__hsm").filter(pk=item_id).first()
    if item is None:
        raise NotFound(f"No review item #{item_id}.")
    if decision not in (ReviewItem.Decision.KEEP, ReviewItem.Decision.REVOKE):
        raise BadInput("Answer keep or revoke.", fields={"decision": ["keep or revoke"]})
    comment = (comment or "").strip()
    if len(comment) > 500:
        raise BadInput("The comment may be up to 500 characters.", fields={"comment": ["Up to 500."]})
    if item.campaign.status != ReviewCampaign.Status.OPEN:
        raise Conflict("This review is closed.", code="review_closed")
    if not review_may_answer(user=actor, item=item):
        raise NotAllowed(f"Only {item.owner} answers for this assignment.")
    with transaction.atomic():
        if not ReviewItem.objects.filter(pk=item.pk, decision=ReviewItem.Decision.PENDING).update(
                decision=decision, decided_by_name=actor.get_username(), decided_at=now(),
                comment=comment):
            raise Conflict("This assignment has been answered already.", code="already_answered")
        audit_record(actor=actor, action="access_review.answer",
                     target=assignment_target(item.campaign.hsm.name, item.scope),
                     request_id=item.campaign.correlation_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"campaign": item.campaign_id, "assignment": item.assignment_name,
                             "decision": decision, "comment": comment})
    if decision == ReviewItem.Decision.REVOKE:
        _review_revoke(item, actor, request_id, f"access review: revoked by {actor.get_username()}")
    item.refresh_from_db()
    return item


def _review_revoke(item: ReviewItem, actor, request_id: str, why: str) -> None:
    try:
        pending = role_assignment_revoke_request(
            hsm=item.campaign.hsm, name=item.assignment_name, actor=actor,
            request_id=request_id or item.campaign.correlation_id, reason="access review",
            justification=why)
    except NotFound:
        return  # gone already
    if pending is not None and hasattr(pending, "status") and not isinstance(
            pending, RoleAssignmentRecord):
        ReviewItem.objects.filter(pk=item.pk).update(revoke_approval_id=pending.pk)


def campaign_close_due(*, at: datetime | None = None) -> int:
    """Close ended campaigns: unanswered items expire and their revocation goes to approval
    (requested on behalf of whoever started the campaign). Returns campaigns closed."""
    at = at or now()
    closed = 0
    for campaign in ReviewCampaign.objects.select_related("hsm", "started_by").filter(
            status=ReviewCampaign.Status.OPEN, ends_at__lte=at):
        if not ReviewCampaign.objects.filter(pk=campaign.pk, status=ReviewCampaign.Status.OPEN).update(
                status=ReviewCampaign.Status.CLOSED, closed_at=at):
            continue
        unanswered = list(campaign.items.filter(decision=ReviewItem.Decision.PENDING))
        ReviewItem.objects.filter(pk__in=[i.pk for i in unanswered]).update(
            decision=ReviewItem.Decision.EXPIRED, decided_at=at, decided_by_name="system")
        audit_record(actor=None, action="access_review.close", target=f"hsm:{campaign.hsm.name}",
                     request_id=campaign.correlation_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"campaign": campaign.pk, "unanswered": len(unanswered)})
        for item in unanswered:
            item.campaign = campaign
            try:
                _review_revoke(item, campaign.started_by, campaign.correlation_id,
                               "access review ended without an answer")
            except PortalError as exc:
                logger.warning("Revocation request for review item %s failed: %s", item.pk, exc.code)
        closed += 1
    return closed


CLAIM_LEASE = timedelta(minutes=10)  # longer than any grant or removal takes


def access_requests_recover() -> int:
    """Finish what a dead worker left: a grant claimed longer than CLAIM_LEASE ago is looked
    up on the HSM (there: active from now, audited; not there: failed); a removal is
    released to active so the next beat removes it again. Returns how many."""
    stale = timezone.now() - CLAIM_LEASE
    count = 0
    for request in AccessRequest.objects.select_related("hsm").filter(
            status=AccessRequest.Status.REVOKING, claimed_at__lt=stale):
        count += AccessRequest.objects.filter(pk=request.pk, status=AccessRequest.Status.REVOKING,
                                              claimed_at__lt=stale).update(
            status=AccessRequest.Status.ACTIVE, claimed_at=None)
    for request in AccessRequest.objects.select_related("hsm").filter(
            status=AccessRequest.Status.GRANTING, claimed_at__lt=stale):
        try:
            found = rbac.role_assignment_get(request.hsm, request.assignment_name, request.scope)
        except PortalError as exc:
            logger.warning("Recovering access request %s: %s", request.pk, exc.code)
            continue
        granted = now()
        with transaction.atomic():
            if found is None:
                updated = AccessRequest.objects.filter(
                    pk=request.pk, status=AccessRequest.Status.GRANTING,
                    claimed_at__lt=stale).update(
                    status=AccessRequest.Status.FAILED, ended_at=granted,
                    error="The grant was interrupted before the HSM made the assignment.")
            else:
                updated = AccessRequest.objects.filter(
                    pk=request.pk, status=AccessRequest.Status.GRANTING,
                    claimed_at__lt=stale).update(
                    status=AccessRequest.Status.ACTIVE, granted_at=granted,
                    expires_at=granted + timedelta(hours=request.duration_hours))
                if updated:
                    RoleAssignmentRecord.objects.update_or_create(
                        hsm=request.hsm, name=found["name"], defaults={
                            "scope": found["scope"], "principal_id": found["principal_id"],
                            "role_definition_id": found["role_definition_id"],
                            "role_name": request.role_name, "access_request": request,
                            "origin": RoleAssignmentRecord.Origin.PORTAL, "removed_at": None,
                            "last_seen_at": timezone.now()})
            if updated:
                audit_record(actor=None, action="access_request.recover",
                             target=assignment_target(request.hsm.name, request.scope),
                             request_id=request.correlation_id,
                             outcome=AuditEvent.Outcome.RECORDED,
                             detail={"correlation_id": request.correlation_id,
                                     "access_request": request.pk,
                                     "found_on_hsm": found is not None})
        count += updated
    return count


def access_housekeeping() -> dict:
    """Beat: expire time-boxed grants, close ended reviews, settle requests whose approval
    ended without running."""
    return {"recovered": access_requests_recover(), "expired": access_expire_due(),
            "campaigns_closed": campaign_close_due(), "settled": access_requests_settle()}
