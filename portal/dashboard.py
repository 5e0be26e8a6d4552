"""The dashboard's figures (HSM health, failed jobs, dangerous actions, audit activity) and
its server-rendered SVG bar charts.

Every figure comes from the database, aggregated in SQL over indexed columns; nothing here
calls an HSM. HSM health is what the last connectivity self-check found (reachable, its
round trip) and when the inventory was last synced. Domain apps add their sections with
`dashboard_register` (portal never imports them).
"""
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone

from django.db.models import Max
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from portal.tables import Column, TableSpec, table_register

UTC = dt_timezone.utc

# Audit actions that destroy, disable or weaken something: the dashboard lists their
# outcomes. Domain apps add theirs with dangerous_action_register().
DANGEROUS_ACTIONS: list[str] = ["hsm.deregister", "auth.throttle_clear"]

HSMS_TABLE = table_register(TableSpec("dashboard-hsms", caption="HSMs", columns=(
    Column("name", "HSM", hideable=False),
    Column("reachable", "Reachable"),
    Column("activated", "Activated"),
    Column("latency", "Latency", numeric=True),
    Column("synced", "Synced (UTC)"),
    Column("keys", "Keys", numeric=True),
    Column("expired", "Expired", numeric=True),
    Column("expiring_30", "≤ 30 days", numeric=True),
    Column("expiring_90", "≤ 90 days", numeric=True),
    Column("no_rotation", "No rotation", numeric=True),
    Column("disabled", "Disabled", numeric=True),
    Column("drift", "Changed outside", numeric=True),
)))

DANGEROUS_TABLE = table_register(TableSpec("dashboard-dangerous", caption="Dangerous actions",
                                           columns=(
    Column("time", "Time (UTC)", hideable=False),
    Column("actor", "Actor"),
    Column("action", "Action"),
    Column("target", "Target"),
    Column("outcome", "Outcome"),
)))

# name -> (permission, provider(now) -> dict); the template reads the dict by name.
_SECTIONS: dict[str, tuple[str, Callable]] = {}


def dashboard_register(name: str, provider: Callable, *, permission: str) -> None:
    """Add a dashboard section (domain apps call this from AppConfig.ready)."""
    _SECTIONS[name] = (permission, provider)


def dangerous_action_register(*actions: str) -> None:
    """Mark audit actions as dangerous: their outcomes show on the dashboard."""
    for action in actions:
        if action not in DANGEROUS_ACTIONS:
            DANGEROUS_ACTIONS.append(action)


def dashboard_sections(*, user, now: datetime) -> dict:
    """The registered sections this user may see, computed once each."""
    return {name: provider(now=now) for name, (permission, provider) in _SECTIONS.items()
            if user.has_perm(permission)}


@dataclass
class HsmHealth:
    """One HSM as the last self-check saw it."""

    hsm: object
    checked_at: datetime | None = None
    reachable: bool | None = None     # None: never checked
    reason: str = ""
    latency_ms: int | None = None

    @property
    def activated(self) -> bool | None:
        """A not-activated HSM refuses every key call, so a key list that answered means
        activated; a failed or missing check tells nothing."""
        return True if self.reachable else None


def hsm_health(*, hsms) -> list[HsmHealth]:
    """Each HSM's health from the newest finished self-check that checked it."""
    health = {hsm.name: HsmHealth(hsm=hsm) for hsm in hsms}
    wanted = set(health)
    checks = (Job.objects.filter(kind="system.selfcheck", status__in=Job.FINISHED)
              .order_by("-finished", "-id").values("finished", "result"))
    # Newest first; a check of an HSM registered later does not hide older ones of others.
    for job in checks[:20]:
        results = (job["result"] or {}).get("checks", {})
        latency = (job["result"] or {}).get("latency_ms", {})
        for name in list(wanted):
            outcome = results.get(f"hsm {name}")
            if outcome is None:
                continue
            entry = health[name]
            entry.checked_at, entry.reachable = job["finished"], outcome == "ok"
            entry.reason = "" if entry.reachable else outcome.removeprefix("failed: ")
            entry.latency_ms = latency.get(f"hsm {name}")
            wanted.discard(name)
        if not wanted:
            break
    return list(health.values())


def failed_jobs_count(*, now: datetime, hours: int = 24) -> int:
    """Jobs that failed in the last `hours` hours."""
    return Job.objects.filter(status=Job.Status.FAILED,
                              finished__gte=now - timedelta(hours=hours)).count()


def dangerous_actions_recent(*, limit: int = 8) -> list[AuditEvent]:
    """The newest outcomes (not intents) of dangerous actions, newest first.

    One small index walk per action on (action, seq), merged: fast at any trail size.
    """
    outcomes = [AuditEvent.Outcome.SUCCEEDED, AuditEvent.Outcome.FAILED,
                AuditEvent.Outcome.DENIED, AuditEvent.Outcome.RECORDED]
    rows: list[AuditEvent] = []
    for action in DANGEROUS_ACTIONS:
        rows += AuditEvent.objects.filter(action=action, outcome__in=outcomes) \
            .order_by("-seq")[:limit]
    return sorted(rows, key=lambda row: row.seq, reverse=True)[:limit]


@dataclass(frozen=True)
class DayActivity:
    day: date
    total: int
    failed: int   # failed or denied


def audit_activity_per_day(*, now: datetime, days: int = 30) -> list[DayActivity]:
    """Audit events per UTC day for the last `days` days (today included), oldest first.

    The trail's seqs are contiguous and rise with time (both are set under the chain-head
    lock), so a day holds the seqs from its first event to the next day's first: one
    single-row lookup on the time index per day, whatever the number of events. A day's
    failures are a range of the (outcome, seq) index.
    """
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    edges = [datetime.combine(first + timedelta(days=n), datetime.min.time(), tzinfo=UTC)
             for n in range(days + 1)]
    after_last = (AuditEvent.objects.aggregate(last=Max("seq"))["last"] or 0) + 1

    def first_seq(moment: datetime) -> int:
        seq = (AuditEvent.objects.filter(time__gte=moment).order_by("time")
               .values_list("seq", flat=True).first())
        return after_last if seq is None else seq

    bounds = [first_seq(edge) for edge in edges]
    failures = AuditEvent.objects.filter(outcome__in=[AuditEvent.Outcome.FAILED,
                                                      AuditEvent.Outcome.DENIED])
    return [DayActivity(day=first + timedelta(days=n), total=bounds[n + 1] - bounds[n],
                        failed=failures.filter(seq__gte=bounds[n], seq__lt=bounds[n + 1]).count()
                        if bounds[n + 1] > bounds[n] else 0)
            for n in range(days)]


# SVG bar charts ------------------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    name: str           # the bucket in full ("Dec 2026", "2026-11-05")
    label: str          # under the bar (may be "" to skip a crowded label)
    value: int
    title: str          # tooltip and accessible text: "Dec 2026: 4 keys"
    alt: int = 0        # a highlighted part of the value (drawn at the bottom)


@dataclass
class Chart:
    """A bar chart rendered by the server; `svg` is the markup, `bars` the numbers as text."""

    caption: str
    bars: list[Bar]
    unit: str
    alt_label: str = ""
    svg: SafeString = field(default=mark_safe(""))

    @property
    def total(self) -> int:
        return sum(bar.value for bar in self.bars)


def bar_chart(*, caption: str, bars: list[Bar], unit: str, alt_label: str = "",
              width: int = 600, height: int = 200) -> Chart:
    """A bar chart as inline SVG: role="img" with a label, a <title> per bar, classes for
    colours (no style attributes: CSP style-src 'self')."""
    left, right, top, bottom = 36, 8, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([bar.value for bar in bars] + [1])
    scale = _nice_ceiling(peak)
    step = plot_w / max(len(bars), 1)
    gap = max(step * 0.2, 1)
    total = sum(bar.value for bar in bars)
    parts = [format_html(
        '<svg class="bar-chart" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        width, height, f"{caption}: {total} {unit} in all; the table below has each value")]
    for fraction in (0.5, 1.0):
        y = top + plot_h - plot_h * fraction
        parts.append(format_html('<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                                 left, width - right, _n(y), _n(y)))
        parts.append(format_html('<text x="{}" y="{}" text-anchor="end">{}</text>',
                                 left - 4, _n(y + 4), _n(scale * fraction)))
    parts.append(format_html('<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                             left, width - right, top + plot_h, top + plot_h))
    for index, bar in enumerate(bars):
        x = left + index * step + gap / 2
        bar_w = step - gap
        h = plot_h * bar.value / scale
        alt_h = plot_h * bar.alt / scale
        base = top + plot_h
        parts.append('<g>')
        parts.append(format_html('<title>{}</title>', bar.title))
        if bar.value:
            parts.append(format_html(
                '<rect class="bar" x="{}" y="{}" width="{}" height="{}" rx="1.5"/>',
                _n(x), _n(base - h), _n(bar_w), _n(h)))
        if bar.alt:
            parts.append(format_html(
                '<rect class="bar-alt" x="{}" y="{}" width="{}" height="{}"/>',
                _n(x), _n(base - alt_h), _n(bar_w), _n(alt_h)))
        # An invisible full-height target so the tooltip shows over empty days too.
        parts.append(format_html(
            '<rect x="{}" y="{}" width="{}" height="{}" fill="transparent"/>',
            _n(x), top, _n(bar_w), plot_h))
        if bar.value and len(bars) <= 12:
            parts.append(format_html('<text class="value" x="{}" y="{}" text-anchor="middle">{}'
                                     '</text>', _n(x + bar_w / 2), _n(base - h - 3), bar.value))
        parts.append('</g>')
        if bar.label:
            parts.append(format_html('<text x="{}" y="{}" text-anchor="middle">{}</text>',
                                     _n(x + bar_w / 2), height - 8, bar.label))
    parts.append('</svg>')
    return Chart(caption=caption, bars=bars, unit=unit, alt_label=alt_label,
                 svg=mark_safe("".join(str(part) for part in parts)))


def _nice_ceiling(value: int) -> int:
    """The smallest round even number at or above value (axis top; its half is whole)."""
    magnitude = 1
    while True:
        for factor in (2, 4, 6, 8, 10):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10


def _n(value: float) -> str:
    return escape(f"{value:.1f}".rstrip("0").rstrip("."))


def audit_activity_chart(*, now: datetime, days: int = 30) -> Chart:
    """The audit activity of the last `days` days as a chart (failed/denied highlighted)."""
    activity = audit_activity_per_day(now=now, days=days)
    bars = [Bar(name=f"{item.day:%Y-%m-%d}", label=f"{item.day:%b %d}" if index % 5 == 0 or index == days - 1 else "",
                value=item.total, alt=item.failed,
                title=f"{item.day:%a %Y-%m-%d}: {item.total} event{'s' if item.total != 1 else ''}"
                      f", {item.failed} failed or denied")
            for index, item in enumerate(activity)]
    return bar_chart(caption=f"Audit activity per day, last {days} days (UTC)", bars=bars,
                     unit="events", alt_label="failed or denied")
