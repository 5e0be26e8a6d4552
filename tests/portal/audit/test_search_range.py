"""A date range is searched as a seq range: exact at its edges, and time never goes back
along the chain even when the clock does."""
from datetime import timedelta

from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.audit.selectors import AuditFilter, audit_event_queryset, seq_range
from portal.audit.services import audit_record
from tests.portal.audit.test_checkpoints import _append_at


def test_a_date_range_is_exact_at_its_edges(db):
    from portal.audit.models import AuditChainHead

    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": "0" * 64})
    base = timezone.now() - timedelta(days=10)
    rows = [_append_at(base + timedelta(hours=n), n) for n in range(10)]
    since, until = rows[3].time, rows[7].time
    found = list(audit_event_queryset(filters=AuditFilter(since=since, until=until))
                 .values_list("seq", flat=True))
    assert found == [row.seq for row in reversed(rows[3:7])]
    assert seq_range(since=since, until=until) == (rows[3].seq, rows[6].seq)
    # Combined with another filter, and a range with nothing in it.
    assert list(audit_event_queryset(filters=AuditFilter(
        since=since, until=until, target="thing:5")).values_list("seq", flat=True)) == [rows[5].seq]
    empty = AuditFilter(since=base - timedelta(days=5), until=base - timedelta(days=4))
    assert list(audit_event_queryset(filters=empty)) == []
    assert list(audit_event_queryset(filters=AuditFilter(
        since=timezone.now() + timedelta(days=1)))) == []


def test_time_never_goes_back_along_the_chain(db):
    from portal.audit.models import AuditChainHead

    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": "0" * 64})
    ahead = _append_at(timezone.now() + timedelta(minutes=5), 0)  # a clock that ran ahead
    event = audit_record(actor=None, action="test.after", outcome="recorded")
    assert event.time == ahead.time
    times = list(AuditEvent.objects.order_by("seq").values_list("time", flat=True))
    assert times == sorted(times)
