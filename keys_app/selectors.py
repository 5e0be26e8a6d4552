"""Reads of the key inventory cache for pages, the API and exports."""
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from keys_app.models import InventoryState, KeyRecord
from portal.errors import NotFound
from portal.gateway.models import HsmInstance

SORTS = {"name": ("name",), "-name": ("-name",), "expires": ("expires", "name"),
         "-expires": ("-expires", "name"), "created": ("created_on", "name"),
         "-created": ("-created_on", "name"), "updated": ("updated_on", "name"),
         "-updated": ("-updated_on", "name")}


@dataclass(frozen=True)
class KeyFilter:
    """What the key list filters on; empty fields filter nothing."""

    q: str = ""                 # name contains
    tag: str = ""               # "name" (has tag) or "name=value"
    kty: str = ""
    state: str = "active"       # active | disabled | enabled | deleted | all
    expiry: str = ""            # expired | 30d | 90d | none
    rotation: str = ""          # yes | no
    drift: bool = False
    sort: str = "name"


def key_list(*, hsm: HsmInstance, filters: KeyFilter) -> QuerySet[KeyRecord]:
    """Keys of one HSM matching the filter, sorted; every filter runs in the database."""
    qs = KeyRecord.objects.filter(hsm=hsm)
    if filters.state == "deleted":
        qs = qs.filter(state=KeyRecord.State.DELETED)
    elif filters.state != "all":
        qs = qs.filter(state=KeyRecord.State.ACTIVE)
        if filters.state in ("enabled", "disabled"):
            qs = qs.filter(enabled=filters.state == "enabled")
    if filters.q:
        qs = qs.filter(name__icontains=filters.q)
    if filters.tag:
        name, sep, value = filters.tag.partition("=")
        line = f"{name}={value}" if sep else f"{name}="
        # tags_text holds "name=value" lines: match a whole line (or a line's start).
        if sep:
            qs = qs.filter(Q(tags_text=line) | Q(tags_text__startswith=line + "\n")
                           | Q(tags_text__contains="\n" + line + "\n")
                           | Q(tags_text__endswith="\n" + line))
        else:
            qs = qs.filter(Q(tags_text__startswith=line) | Q(tags_text__contains="\n" + line))
    if filters.kty:
        qs = qs.filter(kty=filters.kty)
    now = timezone.now()
    if filters.expiry == "expired":
        qs = qs.filter(expires__lte=now)
    elif filters.expiry in ("30d", "90d"):
        qs = qs.filter(expires__gt=now, expires__lte=now + timedelta(days=int(filters.expiry[:-1])))
    elif filters.expiry == "none":
        qs = qs.filter(expires__isnull=True)
    if filters.rotation in ("yes", "no"):
        qs = qs.filter(has_rotation_policy=filters.rotation == "yes")
    if filters.drift:
        qs = qs.filter(drift=True)
    return qs.order_by(*SORTS.get(filters.sort, SORTS["name"]))


def key_get(*, hsm: HsmInstance, name: str) -> KeyRecord:
    """One cached key (live or deleted; names are case-insensitive), or NotFound."""
    record = KeyRecord.objects.filter(hsm=hsm, name__iexact=name).first()
    if record is None:
        raise NotFound(f"No key named {name} on {hsm.name} (refresh the inventory if it was "
                       f"created outside the portal).")
    record.hsm = hsm  # the caller's HSM: no second read of it for the output
    return record


def key_exists(hsm_name: str, name: str) -> bool:
    """Whether the inventory of the HSM named hsm_name holds a key of that name (any state)."""
    return KeyRecord.objects.filter(hsm__name=hsm_name, name__iexact=name).exists()


def inventory_state(*, hsm: HsmInstance) -> InventoryState | None:
    """When the HSM's inventory was last synced (None: never)."""
    return InventoryState.objects.filter(hsm=hsm).first()


def key_activity(*, hsm: HsmInstance, name: str, limit: int = 50):
    """This key's latest audit events, newest first.

    A restore's intent targets the HSM (the key's name is in the backup blob, known only
    from the HSM's answer); its outcome targets the key and names the intent, which is
    shown here too.
    """
    from portal.audit.models import AuditEvent
    from portal.audit.selectors import AuditFilter, audit_event_queryset

    target = f"hsm:{hsm.name}/key:{name}"
    rows = list(audit_event_queryset(filters=AuditFilter(target=target))
                .filter(target=target)[:limit])
    seen = {row.seq for row in rows}
    linked = {row.detail.get("intent_seq") for row in rows
              if row.action == "key.restore" and isinstance(row.detail, dict)} - seen - {None}
    if linked:
        rows += AuditEvent.objects.filter(seq__in=linked, action="key.restore",
                                          target=f"hsm:{hsm.name}")
        rows = sorted(rows, key=lambda row: row.seq, reverse=True)[:limit]
    return rows


def hsm_key_facts(*, hsm: HsmInstance) -> list:
    """An HSM's keys at a glance, for its Essentials: counts link to the filtered key list."""
    from django.db.models import Count
    from django.urls import reverse

    from portal.objects import Fact

    live = KeyRecord.objects.filter(hsm=hsm, state=KeyRecord.State.ACTIVE)
    now = timezone.now()
    url = reverse("keys:key-list", kwargs={"hsm_id": hsm.name})
    state = inventory_state(hsm=hsm)
    counts = live.aggregate(
        total=Count("pk"), disabled=Count("pk", filter=Q(enabled=False)),
        expiring=Count("pk", filter=Q(expires__gt=now, expires__lte=now + timedelta(days=30))),
        manual=Count("pk", filter=Q(has_rotation_policy=False)),
        drift=Count("pk", filter=Q(drift=True)))
    deleted = KeyRecord.objects.filter(hsm=hsm, state=KeyRecord.State.DELETED).count()
    return [
        Fact("Keys", counts["total"], url=url),
        Fact("Disabled keys", counts["disabled"], url=f"{url}?state=disabled"),
        Fact("Expiring within 30 days", counts["expiring"], url=f"{url}?expiry=30d"),
        Fact("Without automatic rotation", counts["manual"], url=f"{url}?rotation=no"),
        Fact("Changed outside the portal", counts["drift"], url=f"{url}?drift=on"),
        Fact("Deleted keys", deleted,
             url=reverse("keys:deleted-list", kwargs={"hsm_id": hsm.name})),
        Fact("Inventory synced", state.last_synced_at if state else None, kind="time",
             note="Not synced yet"),
    ]
