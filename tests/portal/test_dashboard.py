"""The dashboard's figures against a seeded inventory: counts, chart buckets (month
boundaries, an empty month), HSM health from the last self-check, and what each role sees."""
import re
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from keys_app.dashboard import key_figures, keys_expiring_per_month
from keys_app.models import InventoryState, KeyRecord
from portal.audit.services import audit_record, audit_result
from portal.dashboard import (audit_activity_per_day, dangerous_actions_recent,
                              failed_jobs_count, hsm_health)
from portal.gateway.models import HsmInstance
from portal.jobs.models import Job

UTC = dt_timezone.utc
NOW = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # half an hour before a month boundary


def key(hsm, name, **fields) -> KeyRecord:
    defaults = {"kty": "RSA-HSM", "key_size": 3072, "enabled": True, "has_rotation_policy": True,
                "state": KeyRecord.State.ACTIVE}
    return KeyRecord.objects.create(hsm=hsm, name=name, **{**defaults, **fields})


@pytest.fixture
def estate(db):
    one = HsmInstance.objects.create(name="one", uri="https://one.managedhsm.azure.net")
    two = HsmInstance.objects.create(name="two", uri="https://two.managedhsm.azure.net",
                                     role="secondary")
    at = lambda *args: datetime(*args, tzinfo=UTC)  # noqa: E731
    key(one, "this-month", expires=at(2026, 11, 30, 23, 45))         # Nov, 15 min from NOW
    key(one, "december-first", expires=at(2026, 12, 1))              # Dec, on the boundary
    key(one, "december-last", expires=at(2026, 12, 31, 23, 59, 59), enabled=False)
    key(one, "january-first", expires=at(2027, 1, 1), has_rotation_policy=False)
    key(two, "last-bucket", expires=at(2027, 10, 31, 12))             # Oct 2027: month 12
    key(two, "past-window", expires=at(2027, 11, 1))                  # month 13: not charted
    key(two, "expired", expires=at(2026, 11, 30, 23, 0), drift=True)  # before NOW
    key(two, "never", expires=None, has_rotation_policy=False, drift=True)
    key(two, "deleted", expires=at(2026, 12, 15), state=KeyRecord.State.DELETED)
    InventoryState.objects.create(hsm=one, last_synced_at=at(2026, 11, 30, 22))
    return one, two


def test_keys_expiring_per_month_buckets_by_utc_month(estate):
    buckets = keys_expiring_per_month(now=NOW)

    assert [month for month, _n in buckets][:3] == [
        datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC)]
    assert len(buckets) == 12 and buckets[-1][0] == datetime(2027, 10, 1, tzinfo=UTC)
    counts = [n for _month, n in buckets]
    # Nov: the key 15 minutes ahead; Dec: the first and the last second (not the deleted
    # one); Jan: midnight on the boundary; Feb..Sep empty; Oct 2027 the twelfth month.
    assert counts == [1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def test_key_figures_per_hsm_and_in_total(estate):
    one, two = estate
    figures = key_figures(now=NOW)

    assert {name: figures["by_hsm"][one.pk][name] for name in (
        "total", "expired", "expiring_30", "expiring_90", "no_rotation", "disabled", "drift")} == {
        "total": 4, "expired": 0, "expiring_30": 2, "expiring_90": 4, "no_rotation": 1,
        "disabled": 1, "drift": 0}  # Dec 31 and Jan 1 are more than 30 days after NOW
    assert figures["by_hsm"][one.pk]["last_synced_at"] == datetime(2026, 11, 30, 22, tzinfo=UTC)
    assert {name: figures["by_hsm"][two.pk][name] for name in (
        "total", "expired", "expiring_30", "expiring_90", "no_rotation", "drift")} == {
        "total": 4, "expired": 1, "expiring_30": 0, "expiring_90": 0, "no_rotation": 1,
        "drift": 2}
    assert figures["total"]["total"] == 8  # the deleted key is not counted
    assert figures["total"]["expiring_30"] == 2 and figures["total"]["no_rotation"] == 2
    assert [bar.value for bar in figures["expiry_chart"].bars] == [1, 2, 1] + [0] * 8 + [1]


def test_audit_activity_counts_per_utc_day_with_failures(db, admin):
    for n in range(3):
        intent = audit_record(actor=admin, action="key.rotate", target=f"hsm:x/key:k{n}",
                              request_id=f"r{n}")
        audit_result(intent, ok=n != 0)
    today = timezone.now().astimezone(UTC).date()
    later = timezone.now() + timedelta(days=4)

    days = audit_activity_per_day(now=later, days=30)

    assert len(days) == 30 and days[-1].day == today + timedelta(days=4)
    by_day = {item.day: (item.total, item.failed) for item in days}
    assert by_day[today] == (6, 1)  # three intents, two successes, one failure
    assert sum(item.total for item in days) == 6
    # Thirty days on, today has left the window.
    assert sum(item.total for item in audit_activity_per_day(
        now=timezone.now() + timedelta(days=30), days=30)) == 0


def test_dangerous_actions_are_outcomes_newest_first(db, admin):
    deleted = audit_record(actor=admin, action="key.delete", target="hsm:x/key:a", request_id="1")
    audit_result(deleted, ok=True)
    audit_record(actor=admin, action="key.purge", target="hsm:x/key:b", request_id="2")  # intent
    rotated = audit_record(actor=admin, action="key.rotate", target="hsm:x/key:c", request_id="3")
    audit_result(rotated, ok=True)
    gone = audit_record(actor=admin, action="hsm.deregister", target="hsm:y", request_id="4")
    audit_result(gone, ok=False)

    rows = dangerous_actions_recent()

    assert [(row.action, row.outcome) for row in rows] == [
        ("hsm.deregister", "failed"), ("key.delete", "succeeded")]


def test_hsm_health_comes_from_the_newest_selfcheck_that_checked_each_hsm(estate):
    one, two = estate
    now = timezone.now()
    Job.objects.create(kind="system.selfcheck", status="succeeded", finished=now - timedelta(hours=2),
                       result={"checks": {"hsm one": "ok", "hsm two": "ok"},
                               "latency_ms": {"hsm one": 40, "hsm two": 50}})
    Job.objects.create(kind="system.selfcheck", status="failed", finished=now - timedelta(hours=1),
                       result={"checks": {"hsm two": "failed: HSM two could not be reached."},
                               "latency_ms": {"hsm two": 3000}})
    Job.objects.create(kind="system.selfcheck", status="running", result={"checks": {"hsm one": "x"}})

    health = {item.hsm.name: item for item in hsm_health(hsms=[one, two])}

    assert (health["one"].reachable, health["one"].latency_ms, health["one"].activated) == (
        True, 40, True)
    assert (health["two"].reachable, health["two"].latency_ms, health["two"].activated) == (
        False, 3000, None)
    assert health["two"].reason == "HSM two could not be reached."


def test_failed_jobs_in_the_last_24_hours(db):
    now = timezone.now()
    Job.objects.create(kind="a", status="failed", finished=now - timedelta(hours=23))
    Job.objects.create(kind="b", status="failed", finished=now - timedelta(hours=25))
    Job.objects.create(kind="c", status="succeeded", finished=now - timedelta(hours=1))
    assert failed_jobs_count(now=now) == 1


def test_selfcheck_records_each_hsms_latency(azure_settings, hsm, db):
    from portal.jobs.services import job_claim, selfcheck_run

    job = Job.objects.create(kind="system.selfcheck", actor_name="system")
    assert job_claim(job_id=job.pk, token="t")
    job = selfcheck_run(job_id=job.pk)

    latency = job.result["latency_ms"]["hsm primary"]
    assert isinstance(latency, int) and latency >= 0
    assert hsm_health(hsms=[hsm])[0].latency_ms == latency


def _tile(html: str, tile_id: str) -> str:
    match = re.search(rf'id="{tile_id}"[^>]*>\s*<span class="tile-value">(\d+)</span>', html)
    return match.group(1) if match else None


def test_page_shows_the_figures_and_each_role_what_it_may(client, personas):
    hsm = HsmInstance.objects.create(name="solo", uri="https://solo.managedhsm.azure.net")
    now = timezone.now()
    key(hsm, "soon", expires=now + timedelta(days=10))
    key(hsm, "later", expires=now + timedelta(days=60), has_rotation_policy=False)
    key(hsm, "off", expires=now + timedelta(days=400), enabled=False)
    Job.objects.create(kind="x", status="failed", finished=now - timedelta(hours=1))
    deleted = audit_record(actor=personas["admin"], action="key.delete",
                           target="hsm:solo/key:gone", request_id="r-del")
    audit_result(deleted, ok=True)

    seen = {}
    for role, user in personas.items():
        client.force_login(user)
        response = client.get("/")
        assert response.status_code == 200
        seen[role] = response.content.decode()
        client.logout()

    admin = seen["admin"]
    assert (_tile(admin, "tile-total"), _tile(admin, "tile-expiring-30"),
            _tile(admin, "tile-expiring-90"), _tile(admin, "tile-no-rotation"),
            _tile(admin, "tile-disabled"), _tile(admin, "tile-failed-jobs")) == (
        "3", "1", "2", "1", "1", "1")
    assert 'href="/hsms/solo/keys/?expiry=30d"' in admin
    assert "hsm:solo/key:gone" in admin and 'id="chart-audit"' in admin
    assert 'role="img"' in admin and "Run a self-check" in admin
    # The auditor reads everything but runs nothing.
    auditor = seen["auditor"]
    assert _tile(auditor, "tile-total") == "3" and _tile(auditor, "tile-failed-jobs") == "1"
    assert "hsm:solo/key:gone" in auditor and "Run a self-check" not in auditor
    # The approver sees HSMs and keys, not jobs or the audit trail.
    approver = seen["approver"]
    assert _tile(approver, "tile-total") == "3" and 'id="chart-expiry"' in approver
    assert _tile(approver, "tile-failed-jobs") is None
    assert "hsm:solo/key:gone" not in approver and 'id="chart-audit"' not in approver
    # No role: only the note saying whom to ask.
    outsider = seen["outsider"]
    assert "no portal role yet" in outsider
    assert _tile(outsider, "tile-total") is None and "solo" not in outsider
    for html in seen.values():
        assert " style=" not in html  # CSP style-src 'self': no inline style attributes


def test_empty_estate_says_what_to_do_next(client, admin, approver):
    client.force_login(admin)
    html = client.get("/").content.decode()
    assert "No HSM is registered yet." in html and "Register an HSM" in html
    assert "None in this period." in html  # no expiries to chart
    client.force_login(approver)
    html = client.get("/").content.decode()
    assert "An administrator registers them." in html and "Register an HSM" not in html
