"""What approvers see beside a local RBAC request: the exact change, and the current
effective access where it lands (registered with the approvals registry as `describe=`)."""
from datetime import timezone as dt_timezone

from django.utils import timezone

from access_app.models import AccessRequest, RoleAssignmentRecord, RoleDefinitionRecord
from access_app.selectors import effective_access, principal_names


def _when(value) -> str:
    return timezone.localtime(value, dt_timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _current_access(hsm, scope: str) -> list[tuple[str, str]]:
    """Who holds what where the change lands: a key's merged effective access, or the
    assignments at `/` or `/keys`."""
    if hsm is None:
        return []
    if scope.lower().startswith("/keys/"):
        rows = effective_access(hsm=hsm, key_name=scope.split("/", 2)[2])
        return [(f"{r.principal_name or r.assignment.principal_id}",
                 f"{r.assignment.role_name} at {r.assignment.scope}"
                 f"{' (can unwrap)' if r.can_unwrap else ''}, since {_when(r.since)}"
                 f"{', until ' + _when(r.expires_at) if r.expires_at else ''}") for r in rows]
    rows = list(RoleAssignmentRecord.objects.filter(hsm=hsm, removed_at__isnull=True,
                                                    scope__iexact=scope))
    names = principal_names([r.principal_id for r in rows])
    return [(names.get(r.principal_id.lower()) or r.principal_id,
             f"{r.role_name} at {r.scope}, since {_when(r.first_seen_at)}") for r in rows]


def _hsm(name):
    from portal.gateway.models import HsmInstance

    return HsmInstance.objects.filter(name=name).first()


def describe_grant(payload: dict) -> dict:
    """role_assignment.create: grant role R at scope S to principal P for N hours."""
    hsm = _hsm(payload.get("hsm"))
    request = AccessRequest.objects.filter(pk=payload.get("access_request_id")).first()
    role = request.role_name if request else payload.get("role_definition_id", "")
    principal = payload.get("principal_id", "")
    name = (request.principal_name if request else "") or principal
    scope = payload.get("scope", "")
    change = [("Grant", role), ("To", f"{name} ({principal})" if name != principal else principal),
              ("Scope", scope), ("HSM", payload.get("hsm", "")),
              ("For", f"{payload.get('duration_hours')} hours, then removed automatically")]
    if payload.get("kind") == AccessRequest.Kind.ADOPT:
        change.insert(0, ("Adopts", f"assignment {payload.get('assignment_name')} made outside "
                                    "the portal (it stays, time-boxed)"))
    if request is not None:
        change.append(("Access request", f"#{request.pk}, ticket {request.ticket or '—'}"))
    return {"title": f"Grant {role} at {scope} on {payload.get('hsm')}", "change": change,
            "context": _current_access(hsm, scope)}


def describe_revoke(payload: dict) -> dict:
    """role_assignment.delete: remove one assignment."""
    hsm = _hsm(payload.get("hsm"))
    scope = payload.get("scope", "")
    definition = RoleDefinitionRecord.objects.filter(
        hsm=hsm, definition_id__iexact=payload.get("role_definition_id", "")).first()
    role = definition.role_name if definition else payload.get("role_definition_id", "")
    principal = payload.get("principal_id", "")
    name = principal_names([principal]).get(principal.lower(), "")
    return {"title": f"Revoke {role} at {scope} on {payload.get('hsm')}",
            "change": [("Revoke", role), ("From", f"{name} ({principal})" if name else principal),
                       ("Scope", scope), ("Assignment", payload.get("assignment_name", "")),
                       ("Reason", payload.get("reason", ""))],
            "context": _current_access(hsm, scope)}
