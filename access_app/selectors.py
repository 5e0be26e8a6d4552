"""Reads of local RBAC for pages and the API (the cache; the HSM is asked by services)."""
import logging
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from access_app.models import (AccessRequest, ReviewCampaign, ReviewItem, RoleAssignmentRecord,
                               RoleDefinitionRecord)
from portal.errors import NotFound

logger = logging.getLogger(__name__)

# Data actions that let a principal use a key to unwrap ("who can unwrap this key").
UNWRAP = "Microsoft.KeyVault/managedHsm/keys/unwrap/action"


def key_scopes(name: str) -> list[str]:
    """The scopes whose assignments reach a key: `/`, `/keys`, `/keys/<name>`."""
    return ["/", "/keys", f"/keys/{name}"]


def role_definitions(*, hsm) -> QuerySet[RoleDefinitionRecord]:
    return RoleDefinitionRecord.objects.filter(hsm=hsm)


def role_definition_get(*, hsm, name: str) -> RoleDefinitionRecord:
    row = RoleDefinitionRecord.objects.filter(hsm=hsm, name__iexact=name).first()
    if row is None:
        raise NotFound(f"No role definition {name} on HSM {hsm.name} (refresh if it is new).")
    return row


def role_definition_by_id_or_name(*, hsm, value: str) -> RoleDefinitionRecord | None:
    """A definition by GUID, full id, or role name (as the CLI accepts: --role)."""
    value = (value or "").strip()
    if not value:
        return None
    name = value.rstrip("/").rsplit("/", 1)[-1]
    return RoleDefinitionRecord.objects.filter(hsm=hsm).filter(
        Q(name__iexact=name) | Q(role_name__iexact=value)).first()


def role_assignments(*, hsm, scope: str | None = None, principal_id: str = "",
                     drift_only: bool = False) -> QuerySet[RoleAssignmentRecord]:
    """Present assignments of an HSM, optionally at one scope or for one principal."""
    rows = RoleAssignmentRecord.objects.filter(hsm=hsm, removed_at__isnull=True)
    if scope:
        rows = rows.filter(scope__iexact=scope)
    if principal_id:
        rows = rows.filter(principal_id__iexact=principal_id)
    if drift_only:
        rows = rows.filter(origin=RoleAssignmentRecord.Origin.DRIFT)
    return rows.select_related("access_request")


def role_assignment_get(*, hsm, name: str) -> RoleAssignmentRecord:
    row = RoleAssignmentRecord.objects.filter(hsm=hsm, name__iexact=name).select_related(
        "access_request").first()
    if row is None:
        raise NotFound(f"No role assignment {name} on HSM {hsm.name}.")
    return row


@dataclass
class EffectiveRow:
    """One assignment that reaches a key, with what it allows there."""

    assignment: RoleAssignmentRecord
    principal_name: str
    can_unwrap: bool
    since: datetime
    expires_at: datetime | None


def _grants(definition: RoleDefinitionRecord | None, action: str) -> bool:
    from fnmatch import fnmatchcase

    if definition is None:
        return False
    lowered = action.lower()
    for permission in definition.permissions:
        if any(fnmatchcase(lowered, p.lower()) for p in permission.get("data_actions", [])) and \
                not any(fnmatchcase(lowered, p.lower())
                        for p in permission.get("not_data_actions", [])):
            return True
    return False


def effective_access(*, hsm, key_name: str, action: str = UNWRAP) -> list[EffectiveRow]:
    """Every assignment at `/`, `/keys` or `/keys/<key_name>`, merged, with whether its role
    allows `action` (unwrap by default) and since when the portal knows it."""
    rows = list(RoleAssignmentRecord.objects.filter(
        hsm=hsm, removed_at__isnull=True).filter(
        Q(scope="/") | Q(scope__iexact="/keys") | Q(scope__iexact=f"/keys/{key_name}")
    ).select_related("access_request").order_by("scope", "role_name", "principal_id"))
    definitions = {d.definition_id.lower(): d for d in RoleDefinitionRecord.objects.filter(hsm=hsm)}
    names = principal_names([r.principal_id for r in rows])
    result = []
    for row in rows:
        request = row.access_request
        result.append(EffectiveRow(
            assignment=row, principal_name=names.get(row.principal_id.lower(), ""),
            can_unwrap=_grants(definitions.get(row.role_definition_id.lower()), action),
            since=row.first_seen_at,
            expires_at=request.expires_at if request is not None else None))
    return result


def principal_names(object_ids: list[str]) -> dict[str, str]:
    """Display names by (lower-cased) object id from the directory; {} when it cannot say.

    A directory failure never breaks a page: the object ids are shown instead.
    """
    ids = sorted({i.lower() for i in object_ids if i})
    if not ids:
        return {}
    try:
        from portal.gateway import directory

        found = directory.principals_by_ids(ids)
    except Exception as exc:  # noqa: BLE001 - the directory is a nicety on these pages
        logger.warning("Directory look-up failed: %s", exc.__class__.__name__)
        return {}
    return {str(k).lower(): v.get("display_name") or "" for k, v in (found or {}).items()
            if isinstance(v, dict) and v.get("display_name")}


def principal_search(text: str) -> tuple[list[dict], str]:
    """Directory matches for a picker, and a sentence when the directory cannot answer."""
    from portal.errors import PortalError

    try:
        from portal.gateway import directory

        return directory.principal_search(text), ""
    except PortalError as exc:
        return [], exc.message
    except Exception as exc:  # noqa: BLE001 - the picker degrades to typing an object id
        logger.warning("Directory search failed: %s", exc.__class__.__name__)
        return [], "The directory could not be searched; type the principal's object id."


def access_requests(*, status: str = "", hsm=None) -> QuerySet[AccessRequest]:
    rows = AccessRequest.objects.select_related("hsm")
    if status:
        rows = rows.filter(status=status)
    if hsm is not None:
        rows = rows.filter(hsm=hsm)
    return rows


def access_request_get(*, request_id: int) -> AccessRequest:
    row = AccessRequest.objects.select_related("hsm").filter(pk=request_id).first()
    if row is None:
        raise NotFound(f"No access request #{request_id}.")
    return row


def campaigns() -> QuerySet[ReviewCampaign]:
    return ReviewCampaign.objects.select_related("hsm")


def campaign_get(*, campaign_id: int) -> ReviewCampaign:
    row = ReviewCampaign.objects.select_related("hsm").filter(pk=campaign_id).first()
    if row is None:
        raise NotFound(f"No access review #{campaign_id}.")
    return row


def campaign_items(*, campaign: ReviewCampaign) -> QuerySet[ReviewItem]:
    return campaign.items.all()


def campaign_evidence(*, campaign: ReviewCampaign) -> dict:
    """The campaign and every answer, as kept evidence (the JSON export)."""
    return {
        "campaign": {"id": campaign.pk, "name": campaign.name, "hsm": campaign.hsm.name,
                     "started_by": campaign.started_by_name,
                     "started_at": campaign.started_at.isoformat(),
                     "ends_at": campaign.ends_at.isoformat(), "status": campaign.status,
                     "closed_at": campaign.closed_at.isoformat() if campaign.closed_at else None,
                     "correlation_id": campaign.correlation_id},
        "items": [{"assignment": item.assignment_name, "principal_id": item.principal_id,
                   "role": item.role_name, "scope": item.scope, "owner": item.owner,
                   "decision": item.decision, "decided_by": item.decided_by_name,
                   "decided_at": item.decided_at.isoformat() if item.decided_at else None,
                   "comment": item.comment, "revoke_approval_id": item.revoke_approval_id}
                  for item in campaign.items.all()],
    }
