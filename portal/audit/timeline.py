"""One timeline per key, principal and HSM (selectors): the portal's audit rows and the HSM's
own AuditEvents, newest first, each HSM event joined to the portal rows that caused it.

The join: the portal sends its request id (or the open intent's, in a job) to the HSM as
x-ms-client-request-id, which the HSM logs as correlationId; an HSM event's correlation_key
equals the portal row's request_id, or the correlation_id in its detail (approvals).
"""
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from portal.audit.models import AuditEvent, HsmAuditEvent

SOURCES = ("portal", "hsm")
PAGE = 100


@dataclass(frozen=True)
class TimelineScope:
    """Whose timeline: kind "key" (hsm + key), "hsm" (hsm), "principal" (principal id)."""

    kind: str
    hsm: str = ""
    key: str = ""
    principal: str = ""

    @property
    def label(self) -> str:
        if self.kind == "key":
            return f"key {self.key} on {self.hsm}"
        if self.kind == "hsm":
            return f"HSM {self.hsm}"
        return f"principal {self.principal}"


@dataclass(frozen=True)
class TimelineFilter:
    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None
    source: str = ""


@dataclass
class Entry:
    """One line of a timeline, whichever side recorded it."""

    source: str
    time: datetime
    actor: str
    action: str
    target: str
    outcome: str
    correlation: str
    ref: str
    detail: dict = field(default_factory=dict)
    caused_by: list = field(default_factory=list)

    @property
    def short_target(self) -> str:
        """What the page shows: an HSM URL as its path (/keys/<name>/<version>)."""
        if self.source == "hsm" and "://" in self.target:
            from urllib.parse import urlsplit

            return urlsplit(self.target).path or self.target
        return self.target

    def as_dict(self) -> dict:
        return {"source": self.source, "time": self.time.isoformat(), "actor": self.actor,
                "action": self.action, "target": self.target, "outcome": self.outcome,
                "correlation": self.correlation, "ref": self.ref, "detail": self.detail,
                "caused_by": self.caused_by}


def _principal_users(principal: str) -> list[str]:
    from portal.accounts.models import DirectoryIdentity

    if principal.startswith("local:"):
        return [principal.split(":", 1)[1]]
    return [str(pk) for pk in DirectoryIdentity.objects.filter(
        object_id=principal.lower()).values_list("user_id", flat=True)]


def portal_queryset(scope: TimelineScope, filters: TimelineFilter):
    qs = AuditEvent.objects.all()
    if scope.kind == "key":
        base = f"hsm:{scope.hsm}/key:{scope.key}"
        qs = qs.filter(Q(target=base) | Q(target__startswith=base + "/"))
    elif scope.kind == "hsm":
        base = f"hsm:{scope.hsm}"
        qs = qs.filter(Q(target=base) | Q(target__startswith=base + "/"))
    else:
        qs = qs.filter(actor_id__in=_principal_users(scope.principal))
    from portal.audit.selectors import audit_event_filter

    return audit_event_filter(qs, actor=filters.actor, action=filters.action,
                              target=filters.target, since=filters.since, until=filters.until)


def hsm_queryset(scope: TimelineScope, filters: TimelineFilter, *, correlations=()):
    qs = HsmAuditEvent.objects.all()
    if scope.kind == "key":
        qs = qs.filter(hsm_name=scope.hsm, key_name=scope.key)
    elif scope.kind == "hsm":
        qs = qs.filter(hsm_name=scope.hsm)
    else:
        # The principal's own calls to the HSM, and the calls the portal made for them.
        who = Q(caller_oid=scope.principal.lower()) if not scope.principal.startswith(
            "local:") else Q(pk__in=[])
        qs = qs.filter(who | Q(correlation_key__in=list(correlations)))
    if filters.actor:
        qs = qs.filter(Q(caller_upn=filters.actor) | Q(caller_oid=filters.actor)
                       | Q(caller_appid=filters.actor))
    if filters.action:
        qs = qs.filter(operation__startswith=filters.action)
    if filters.target:
        qs = qs.filter(Q(object_id__icontains=filters.target)
                       | Q(request_uri__icontains=filters.target))
    if filters.since:
        qs = qs.filter(time__gte=filters.since)
    if filters.until:
        qs = qs.filter(time__lt=filters.until)
    return qs


def _portal_entry(event: AuditEvent) -> Entry:
    detail = event.detail if isinstance(event.detail, dict) else {}
    return Entry(source="portal", time=event.time, actor=event.actor_name, action=event.action,
                 target=event.target, outcome=event.outcome,
                 correlation=str(detail.get("correlation_id") or event.request_id),
                 ref=f"#{event.seq}", detail=detail)


def _hsm_entry(event: HsmAuditEvent) -> Entry:
    actor = event.caller_upn or event.caller_oid or event.caller_appid or "(no identity)"
    return Entry(source="hsm", time=event.time, actor=actor, action=event.operation,
                 target=event.object_id or event.request_uri, outcome=event.result_signature,
                 correlation=event.correlation_key, ref=f"{event.hsm_name}:{event.pk}",
                 detail={"status": event.status_code, "result": event.result_type,
                         "duration_ms": event.duration_ms, "caller_oid": event.caller_oid,
                         "caller_appid": event.caller_appid, "caller_ip": event.caller_ip,
                         "request_uri": event.request_uri})


def _join(entries: list[Entry]) -> None:
    """Name, on each HSM event, the portal rows with its correlation id (request id or
    the approval chain's correlation id)."""
    keys = {entry.correlation for entry in entries if entry.source == "hsm" and entry.correlation}
    if not keys:
        return
    rows = AuditEvent.objects.filter(Q(request_id__in=keys) | Q(
        detail__correlation_id__in=list(keys))).order_by("seq")[:2000]
    by_key: dict[str, list] = {}
    for row in rows:
        detail = row.detail if isinstance(row.detail, dict) else {}
        for key in {row.request_id, str(detail.get("correlation_id") or "")} & keys:
            by_key.setdefault(key, []).append({"seq": row.seq, "action": row.action,
                                               "actor": row.actor_name,
                                               "outcome": row.outcome})
    for entry in entries:
        if entry.source == "hsm":
            entry.caused_by = by_key.get(entry.correlation, [])[:10]


def timeline_page(*, scope: TimelineScope, filters: TimelineFilter,
                  before: datetime | None = None, limit: int = PAGE
                  ) -> tuple[list[Entry], datetime | None]:
    """One page, newest first, and the cursor (a time) for the next page, or None.

    Both sources are read newest first with limit+1 rows; rows sharing the last time are
    all kept on this page, so a time cursor never skips a row.
    """
    portal_rows, hsm_rows = [], []
    if filters.source in ("", "portal"):
        qs = portal_queryset(scope, filters)
        if before:
            qs = qs.filter(time__lt=before)
        portal_rows = list(qs.order_by("-time", "-seq")[: limit + 1])
    if filters.source in ("", "hsm"):
        correlations = ()
        if scope.kind == "principal":
            correlations = {_portal_entry(row).correlation for row in portal_rows} or \
                set(portal_queryset(scope, filters).order_by("-seq").values_list(
                    "request_id", flat=True)[:500])
        qs = hsm_queryset(scope, filters, correlations=correlations)
        if before:
            qs = qs.filter(time__lt=before)
        hsm_rows = list(qs.order_by("-time", "-id")[: limit + 1])
    entries = sorted([_portal_entry(row) for row in portal_rows]
                     + [_hsm_entry(row) for row in hsm_rows],
                     key=lambda entry: entry.time, reverse=True)
    next_before = None
    if len(entries) > limit:
        cut = entries[limit - 1].time
        keep = [entry for entry in entries if entry.time >= cut]
        # Rows at exactly `cut` beyond limit+1 may remain unread: fetch them all.
        extra_portal = [] if filters.source == "hsm" else list(
            portal_queryset(scope, filters).filter(time=cut).exclude(
                seq__in=[row.seq for row in portal_rows]))
        extra_hsm = [] if filters.source == "portal" else list(
            hsm_queryset(scope, filters, correlations=()).filter(time=cut).exclude(
                pk__in=[row.pk for row in hsm_rows]))
        entries = keep + [_portal_entry(row) for row in extra_portal] + [
            _hsm_entry(row) for row in extra_hsm]
        entries.sort(key=lambda entry: entry.time, reverse=True)
        next_before = cut
    _join(entries)
    return entries, next_before


def timeline_all(*, scope: TimelineScope, filters: TimelineFilter, batch: int = 1000):
    """Every entry, newest first, page by page (for exports; never all in memory)."""
    before = None
    while True:
        entries, before = timeline_page(scope=scope, filters=filters, before=before, limit=batch)
        yield from entries
        if before is None:
            return
