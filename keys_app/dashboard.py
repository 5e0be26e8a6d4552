"""The key figures of the dashboard: per HSM and in total, and expiries per month.

Registered with portal.dashboard in KeysAppConfig.ready; one aggregate query per figure
set over the inventory cache (never the HSM).
"""
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db.models import Count, Q
from django.db.models.functions import TruncMonth

from keys_app.models import InventoryState, KeyRecord
from portal.dashboard import Bar, bar_chart

UTC = dt_timezone.utc
FIGURES = ("total", "expired", "expiring_30", "expiring_90", "no_rotation", "disabled", "drift")


def key_figures(*, now: datetime) -> dict:
    """{"by_hsm": {hsm_id: {figure: n, "last_synced_at": t}}, "total": {figure: n}} of live
    keys. Expiring figures match the key list's filters: after now, within 30/90 days."""
    live = Q(state=KeyRecord.State.ACTIVE)
    rows = (KeyRecord.objects.filter(live).values("hsm_id").annotate(
        total=Count("id"),
        expired=Count("id", filter=Q(expires__lte=now)),
        expiring_30=Count("id", filter=Q(expires__gt=now, expires__lte=now + timedelta(days=30))),
        expiring_90=Count("id", filter=Q(expires__gt=now, expires__lte=now + timedelta(days=90))),
        no_rotation=Count("id", filter=Q(has_rotation_policy=False)),
        disabled=Count("id", filter=Q(enabled=False)),
        drift=Count("id", filter=Q(drift=True)),
    ).order_by())
    by_hsm = {row.pop("hsm_id"): row for row in rows}
    for state in InventoryState.objects.values("hsm_id", "last_synced_at"):
        by_hsm.setdefault(state["hsm_id"], dict.fromkeys(FIGURES, 0))["last_synced_at"] = \
            state["last_synced_at"]
    total = {name: sum(figures.get(name, 0) for figures in by_hsm.values()) for name in FIGURES}
    return {"by_hsm": by_hsm, "total": total, "expiry_chart": expiry_chart(now=now)}


def month_start(moment: datetime, add: int = 0) -> datetime:
    """The first instant (UTC) of the month `add` months after the month of `moment`."""
    moment = moment.astimezone(UTC)
    index = moment.year * 12 + moment.month - 1 + add
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def keys_expiring_per_month(*, now: datetime, months: int = 12) -> list[tuple[datetime, int]]:
    """Live keys expiring in each calendar month (UTC) from now on: this month (the rest
    of it) and the next months-1; months without expiries are zero."""
    end = month_start(now, months)
    counts = dict(KeyRecord.objects.filter(state=KeyRecord.State.ACTIVE, expires__gt=now,
                                           expires__lt=end)
                  .annotate(month=TruncMonth("expires", tzinfo=UTC)).values("month")
                  .annotate(n=Count("id")).order_by().values_list("month", "n"))
    counts = {month.astimezone(UTC): n for month, n in counts.items()}
    return [(month_start(now, n), counts.get(month_start(now, n), 0)) for n in range(months)]


def expiry_chart(*, now: datetime):
    buckets = keys_expiring_per_month(now=now)
    bars = [Bar(name=f"{month:%B %Y}", label=f"{month:%b}" if month.month != 1 or index == 0
                else f"{month:%b %y}", value=n,
                title=f"{month:%B %Y}: " + (f"{n} key expires" if n == 1 else f"{n} keys expire"))
            for index, (month, n) in enumerate(buckets)]
    return bar_chart(caption="Keys expiring per month, next 12 months (UTC)", bars=bars,
                     unit="keys")
