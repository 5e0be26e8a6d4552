"""An admin runs a DR drill from the page and watches the progress bar reach the report."""
import uuid

import pytest
from playwright.sync_api import expect

from dr_app.models import DrDrill
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_admin_runs_a_dr_drill_and_watches_it_reach_the_report(
        page, admin, hsm, secondary_hsm, celery_worker):
    from portal import gateway

    gateway.keys(hsm).create_rsa_key(f"drill-{uuid.uuid4().hex[:8]}", size=2048)
    sign_in(page, admin.username, PASSWORD)
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="DR drills").click()
    page.wait_for_url("**/dr-drills/")
    page.get_by_text("Run a DR drill").click()
    page.get_by_label("Primary (backed up)").select_option("primary")
    page.get_by_label("Secondary (restored into)").select_option("secondary")
    page.get_by_label("Container").fill(f"drill{uuid.uuid4().hex[:12]}")
    page.get_by_label("Type the secondary's name").fill("secondary")
    page.get_by_role("button", name="Run the drill").click()
    page.wait_for_url("**/dr-drills/*/")

    bar = page.locator("#drill-bar")
    seen = set()
    # htmx replaces the progress section every second; note the values the bar passes.
    for _ in range(600):
        value = int(bar.get_attribute("value") or 0)
        seen.add(value)
        if page.locator("#drill-progress").get_attribute("data-status") in ("succeeded",
                                                                             "failed"):
            break
        page.wait_for_timeout(250)
    progress = page.locator("#drill-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=5_000)
    expect(bar).to_have_attribute("value", "100")
    assert len(seen - {0, 100}) >= 2, f"the bar moved through {sorted(seen)}"
    report = page.locator("#drill-report")
    expect(report).to_contain_text("the secondary matches the primary")
    expect(report).to_contain_text("Measured RTO")
    expect(report).to_contain_text("Measured RPO")
    drill = DrDrill.objects.get()
    assert drill.passed and drill.rto_seconds > 0
    # The drill is in the history, with its result.
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="DR drills").click()
    row = page.get_by_role("row").filter(has_text=f"#{drill.pk}")
    expect(row).to_contain_text("Matched")
    assert page.csp_errors == []
