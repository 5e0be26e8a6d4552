"""Reads of the audit trail for the auditor's page, the API and exports."""
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from portal.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    """What the auditor filters on; empty fields filter nothing."""

    actor: str = ""
    action: str = ""
    target: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    request_id: str = ""
    client_request_id: str = ""


def audit_event_queryset(*, filters: AuditFilter) -> QuerySet[AuditEvent]:
    """Events matching the filter, newest first. Every filter is index-backed.

    Action and target match as prefixes (`key.` finds every key action, `hsm:primary`
    every target on that HSM), actor and outcome exactly.
    """
    qs = audit_event_filter(AuditEvent.objects.all(), actor=filters.actor,
                            action=filters.action, target=filters.target,
                            since=filters.since, until=filters.until)
    if filters.outcome:
        qs = qs.filter(outcome=filters.outcome)
    if filters.request_id:
        qs = qs.filter(request_id=filters.request_id)
    if filters.client_request_id:
        qs = qs.filter(client_request_id=filters.client_request_id)
    return qs.order_by("-seq")


def audit_event_filter(qs: QuerySet[AuditEvent], *, actor: str = "", action: str = "",
                       target: str = "", since=None, until=None) -> QuerySet[AuditEvent]:
    """The trail's shared filters (the audit page and the timelines): actor exactly, action
    and target as prefixes, and a date range that is also a seq range (see seq_range)."""
    if actor:
        qs = qs.filter(actor_name=actor)
    if action:
        qs = qs.filter(action__startswith=action)
    if target:
        qs = qs.filter(target__startswith=target)
    if since:
        qs = qs.filter(time__gte=since)
    if until:
        qs = qs.filter(time__lt=until)
    low, high = seq_range(since=since, until=until)
    if low is not None:
        qs = qs.filter(seq__gte=low)
    if high is not None:
        qs = qs.filter(seq__lte=high)
    return qs


def seq_range(*, since=None, until=None) -> tuple[int | None, int | None]:
    """A date range as a seq range, from two look-ups on the time index.

    Time never decreases along the chain (services._append keeps the last row's time when
    the clock steps back), so the rows of a date range are a run of seqs: every filter then
    walks its (field, seq) index inside that run instead of the whole trail. The time
    filters stay on the query too. (-1, -1) when the range holds no row.
    """
    low = high = None
    if since:
        low = (AuditEvent.objects.filter(time__gte=since).order_by("time", "seq")
               .values_list("seq", flat=True).first())
        if low is None:
            return -1, -1
    if until:
        high = (AuditEvent.objects.filter(time__lt=until).order_by("-time", "-seq")
                .values_list("seq", flat=True).first())
        if high is None:
            return -1, -1
    return low, high


def audit_event_page(*, filters: AuditFilter, before_seq: int | None = None,
                     limit: int = 50) -> tuple[list[AuditEvent], int | None]:
    """One page, newest first, and the cursor for the next (older) page or None.

    Keyset pagination on seq: no OFFSET and no COUNT, so a million rows page as fast as ten.
    """
    qs = audit_event_queryset(filters=filters)
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    rows = list(qs[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].seq
    return rows, None


def audit_event_list_for_export(*, filters: AuditFilter):
    """All matching events, oldest first, streamed from the database in chunks."""
    return audit_event_queryset(filters=filters).order_by("seq").iterator(chunk_size=2000)


def chain_status() -> dict:
    """What the chain status page and API show: the head, the last verifications, the last
    checkpoints, the retention and the HSM log ingestion."""
    from django.conf import settings

    from portal.audit.models import (AuditChainHead, AuditCheckpoint, AuditVerification,
                                     HsmAuditCursor, HsmAuditEvent)

    head = AuditChainHead.objects.filter(pk=1).first()
    verifications = list(AuditVerification.objects.order_by("-started", "-id")[:10])
    oldest = AuditEvent.objects.order_by("seq").values("seq", "time").first()
    return {
        "head_seq": head.seq if head else 0, "head_hash": head.hash if head else "",
        "last": verifications[0] if verifications else None,
        "verifications": verifications,
        "checkpoints": list(AuditCheckpoint.objects.order_by("-seq", "-id")[:10]),
        "oldest": oldest, "retention_days": settings.AUDIT_RETENTION_DAYS,
        "hsm_events": HsmAuditEvent.objects.count() if HsmAuditEvent.objects.exists() else 0,
        "last_ingest": HsmAuditCursor.objects.order_by("-updated").values_list(
            "updated", flat=True).first(),
        "hsm_audit_source": settings.HSM_AUDIT_SOURCE,
    }
