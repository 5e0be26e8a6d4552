"""Sign in as each role and see only that role's navigation; watch a job finish live."""
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD
from tests.support.nav import expected_nav_labels

# The left navigation, in task groups (read from the registry and the role table, with
# facts no registration may change); the API docs are linked from the top bar.
CORE = ["Dashboard", "HSMs", "Keys", "Backups", "DR drills", "Security domain"]


@pytest.mark.e2e
def test_each_role_sees_only_its_navigation(page, personas):
    for role, user in personas.items():
        sign_in(page, user.username, PASSWORD)
        links = page.get_by_role("navigation", name="Portal").locator(".nav-label")
        shown = links.all_inner_texts()
        role_name = None if role == "outsider" else role
        assert shown == expected_nav_labels(role_name), role
        if role == "outsider":
            assert shown == ["Dashboard"]
        else:
            assert [label for label in shown if label in CORE] == CORE, role
            assert ("Jobs" in shown) is (role != "approver"), role
            assert ("Audit trail" in shown) is (role != "approver"), role
        expect(page.get_by_role("banner").get_by_role("link", name="API")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/accounts/login/")
    assert page.csp_errors == []


@pytest.mark.e2e
def test_admin_watches_a_selfcheck_job_finish(page, admin, celery_worker):
    sign_in(page, admin.username, PASSWORD)
    # exact: the dashboard's "Failed jobs, last 24 h" tile is a link too.
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("button", name="Run a connectivity self-check").click()
    page.wait_for_url("**/jobs/*/")
    progress = page.locator("#job-progress")
    # htmx swaps the partial every second until the job is done.
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(page.locator("#job-progress progress")).to_have_attribute("value", "100")
    expect(progress).to_contain_text("broker: ok")
    assert page.csp_errors == []
