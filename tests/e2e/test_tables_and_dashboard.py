"""The table component, the dashboard and the audit trail in a browser at 1280 px: copy
buttons, the column chooser and density remembered across reloads, sortable headers,
keyset paging, one line per audit event, local time on hover, SVG charts with tooltips.
Screenshots go to var/screenshots/tables-*.png."""
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from keys_app.models import InventoryState, KeyRecord
from portal.accounts.models import TablePreference
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result
from portal.gateway.models import HsmInstance
from portal.jobs.models import Job
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD

WIDE = {"width": 1280, "height": 800}
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"tables-{name}.png"), full_page=True)


def no_horizontal_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= "
                         "document.documentElement.clientWidth"), "the page scrolls sideways"
    # Tables clip sideways (so their header can stick): they must fit, or columns are lost.
    overflowing = page.evaluate("""[...document.querySelectorAll('.dt-scroll')]
        .filter(box => box.scrollWidth > box.clientWidth + 1)
        .map(box => `${box.parentNode.id} ${box.scrollWidth}>${box.clientWidth}: ` +
             [...box.querySelectorAll('thead th')].map(th => th.offsetWidth).join(","))""")
    assert overflowing == [], f"tables wider than the page: {overflowing}"


@pytest.fixture
def estate(db):
    """Two HSMs with a realistic inventory, a self-check, a failed job and some history."""
    now = timezone.now()
    prod = HsmInstance.objects.create(name="prod-weu", region="westeurope",
                                      uri="https://prod-weu.managedhsm.azure.net")
    dr = HsmInstance.objects.create(name="dr-neu", role="secondary", region="northeurope",
                                    uri="https://dr-neu.managedhsm.azure.net")
    for n in range(64):
        KeyRecord.objects.create(
            hsm=prod, name=f"payments-cmk-{n:02d}-storage-account-encryption-key-westeurope",
            kty="RSA-HSM", key_size=3072, expires=now + timedelta(days=11 * n + 5),
            has_rotation_policy=n % 3 != 0, enabled=n % 9 != 0, drift=n == 7,
            tags={"owner": "payments", "env": "prod"}, version_count=1 + n % 4,
            created_on=now - timedelta(days=n), updated_on=now - timedelta(hours=n))
    for n in range(6):
        KeyRecord.objects.create(hsm=dr, name=f"dr-key-{n}", kty="EC-HSM", curve="P-384",
                                 expires=now + timedelta(days=200 + 40 * n))
    for n in range(2):
        KeyRecord.objects.create(hsm=prod, name=f"retired-signing-key-{n}", kty="EC-HSM",
                                 curve="P-256", state=KeyRecord.State.DELETED,
                                 deleted_on=now - timedelta(days=n + 1),
                                 scheduled_purge_on=now + timedelta(days=89 - n))
    InventoryState.objects.create(hsm=prod, last_synced_at=now - timedelta(minutes=12))
    Job.objects.create(kind="system.selfcheck", status="succeeded", actor_name="system",
                       finished=now - timedelta(minutes=5), result={
                           "checks": {"hsm prod-weu": "ok", "hsm dr-neu": "failed: HSM dr-neu "
                                      "could not be reached from the portal's network."},
                           "latency_ms": {"hsm prod-weu": 38, "hsm dr-neu": 5012}})
    Job.objects.create(kind="keys.inventory_sync", status="failed", hsm=dr, actor_name="system",
                       finished=now - timedelta(hours=2), step="Failed: HSM unreachable")
    return prod, dr


def _history(actor):
    long_target = "hsm:prod-weu/key:" + "payments-cmk-07-storage-account-encryption-key-" * 3
    for n in range(12):
        intent = audit_record(actor=actor, action="key.update", target=long_target,
                              request_id=f"req-{n:04d}-" + "f" * 24, detail={
                                  "changes": {"expires": "2027-06-30T00:00:00+00:00",
                                              "tags": {"owner": "payments", "cost-centre": "4711"}},
                                  "before": {"expires": "2027-01-31T00:00:00+00:00"},
                                  "note": "rotated ahead of the audit " * 6})
        audit_result(intent, ok=n % 4 != 0)
    deleted = audit_record(actor=actor, action="key.delete",
                           target="hsm:prod-weu/key:payments-cmk-00", request_id="req-del")
    audit_result(deleted, ok=True)


@pytest.mark.e2e
def test_dashboard_reads_at_1280_with_charts_and_tooltips(page, admin, estate):
    _history(admin)
    sign_in(page, admin.username, PASSWORD)
    page.set_viewport_size(WIDE)
    page.goto("/")

    expect(page.locator("#tile-total .tile-value")).to_have_text("70")
    expect(page.locator("#tile-failed-jobs .tile-value")).to_have_text("1")
    health = page.locator("#table-dashboard-hsms tbody tr")
    expect(health).to_have_count(2)
    expect(health.filter(has_text="prod-weu")).to_contain_text("38 ms")
    expect(health.filter(has_text="dr-neu")).to_contain_text("could not be reached")
    now = timezone.now()
    index = now.year * 12 + now.month - 1 + 12
    horizon = now.replace(year=index // 12, month=index % 12 + 1, day=1, hour=0, minute=0,
                          second=0, microsecond=0)
    expiring = KeyRecord.objects.filter(expires__gt=now, expires__lt=horizon).count()
    expiry = page.locator("#chart-expiry svg[role=img]")
    expect(expiry).to_have_attribute("aria-label", f"Keys expiring per month, next 12 months "
                                     f"(UTC): {expiring} keys in all; the table below has "
                                     f"each value")
    assert expiry.locator("g > title").count() == 12
    audit = page.locator("#chart-audit svg[role=img]")
    assert audit.locator("g > title").count() == 30
    today = AuditEvent.objects.filter(time__date=now.date())
    expect(audit.locator("g > title").last).to_contain_text(
        f"{today.count()} events, {today.filter(outcome__in=['failed', 'denied']).count()} "
        f"failed or denied")
    expect(page.locator("#table-dashboard-dangerous")).to_contain_text("key.delete")
    no_horizontal_scroll(page)
    shot(page, "dashboard-1280")

    page.goto("/hsms/")
    expect(page.locator("table.hsms tbody tr")).to_have_count(2)
    expect(page.locator("table.hsms")).to_contain_text("https://prod-weu.managedhsm.azure.net")
    no_horizontal_scroll(page)
    shot(page, "hsm-list-1280")
    assert page.csp_errors == []


@pytest.mark.e2e
def test_key_list_copy_columns_density_sort_and_paging(page, admin, estate):
    prod, _dr = estate
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, admin.username, PASSWORD)
    page.set_viewport_size(WIDE)
    page.goto(f"/hsms/{prod.name}/keys/")
    rows = page.locator("table.keys tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator(".dt-count")).to_have_text("64 keys")

    # Names stay on one line (cut with an ellipsis) and the copy button copies all of it.
    first = rows.first.locator("td.c1")
    name = "payments-cmk-00-storage-account-encryption-key-westeurope"
    line = first.locator(".trunc").evaluate("el => parseFloat(getComputedStyle(el).lineHeight)")
    assert first.bounding_box()["height"] < 2 * line + 20
    assert first.locator(".trunc").evaluate("el => el.scrollWidth > el.clientWidth")
    first.get_by_role("button", name=f"Copy key name {name}").click()
    assert page.evaluate("navigator.clipboard.readText()") == name
    no_horizontal_scroll(page)
    shot(page, "key-list-1280")

    # Hide a column: gone at once, and still gone after a reload (saved for this user).
    page.get_by_text("Columns", exact=True).click()
    with page.expect_response("**/preferences/table/") as saved:
        page.get_by_label("Tags", exact=True).uncheck()
    expect(page.locator("table.keys th.c7")).to_be_hidden()
    assert saved.value.status == 204
    # Created is hidden by default; the chooser keeps it so.
    assert TablePreference.objects.get(user=admin, table="keys").hidden_columns == [
        "tags", "created"]
    page.reload()
    expect(page.locator("table.keys th.c7")).to_be_hidden()
    expect(page.locator("table.keys th.c6")).to_be_visible()

    # Compact rows, remembered too.
    with page.expect_response("**/preferences/table/") as saved:
        page.get_by_role("button", name="Compact rows").click()
    expect(page.locator("table.keys")).to_have_attribute("data-density", "compact")
    assert saved.value.status == 204
    pref = TablePreference.objects.get(user=admin, table="keys")
    assert (pref.density, pref.hidden_columns) == ("compact", ["tags", "created"])
    page.reload()
    expect(page.locator("table.keys")).to_have_attribute("data-density", "compact")
    expect(page.locator("table.keys th.c7")).to_be_hidden()

    # Sort by a header, newest expiry first on the second click.
    page.locator("table.keys th.c4 a").click()
    expect(page.locator("table.keys th.c4")).to_have_attribute("aria-sort", "ascending")
    page.locator("table.keys th.c4 a").click()
    expect(page.locator("table.keys th.c4")).to_have_attribute("aria-sort", "descending")
    expect(rows.first.locator("td.c1")).to_contain_text("payments-cmk-63")

    # Keyset paging: the next page holds the rest, in order, and leads back to the first.
    page.get_by_role("link", name="Next 50").click()
    expect(rows).to_have_count(14)
    expect(rows.first.locator("td.c1")).to_contain_text("payments-cmk-13")
    expect(page.get_by_role("link", name="Next 50")).to_have_count(0)
    page.get_by_role("link", name="First page").click()
    expect(rows.first.locator("td.c1")).to_contain_text("payments-cmk-63")
    shot(page, "key-list-compact-1280")

    page.goto(f"/hsms/{prod.name}/deleted-keys/")
    expect(page.locator("table.deleted-keys tbody tr")).to_have_count(2)
    no_horizontal_scroll(page)
    shot(page, "deleted-keys-1280")
    assert page.csp_errors == []


@pytest.mark.e2e
def test_audit_trail_is_one_line_per_event_at_1280(page, auditor, admin, estate):
    _history(admin)
    sign_in(page, auditor.username, PASSWORD)
    page.set_viewport_size(WIDE)
    page.goto("/audit/")
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(AuditEvent.objects.count())

    heights = [box["height"] for box in (row.bounding_box() for row in rows.all())]
    line = page.locator("table.audit tbody td.c8").first.evaluate(
        "el => parseFloat(getComputedStyle(el).lineHeight)")
    assert max(heights) - min(heights) < 2 and max(heights) < 2 * line + 12, heights
    update = rows.filter(has_text="cost-centre").first
    detail = update.locator("td.c8 .detail-fields")
    expect(detail).to_contain_text("changes.tags.cost-centre: 4711")
    assert "{" not in detail.inner_text()
    assert "note: rotated ahead of the audit" in detail.get_attribute("title")
    # Within its own cell: the detail ends in an ellipsis, it does not spill over.
    assert detail.evaluate("el => el.scrollWidth > el.clientWidth")
    cell = update.locator("td.c8").bounding_box()
    table = page.locator("table.audit").bounding_box()
    assert cell["x"] + cell["width"] <= table["x"] + table["width"] + 1
    # UTC on the page, the reader's local time on hover.
    expect(rows.first.locator("time")).to_have_attribute("title", re.compile("your local time"))
    no_horizontal_scroll(page)
    shot(page, "audit-1280")

    page.goto("/jobs/")
    expect(page.locator("table.jobs tbody tr")).to_have_count(2)
    no_horizontal_scroll(page)
    shot(page, "jobs-1280")
    assert page.csp_errors == []
