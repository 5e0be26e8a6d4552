"""The sign-in page when guessing is throttled, and after an idle sign-out, in a browser."""
import pytest
from playwright.sync_api import expect

from portal.accounts.throttle import PAIR, POLICIES
from tests.factories import PASSWORD


def _try(page, username, password):
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.e2e
def test_repeated_failures_show_when_to_try_again(page, admin, tmp_path):
    page.goto("/accounts/login/")
    for _ in range(POLICIES[PAIR].free):
        _try(page, admin.username, "guess")
        expect(page.get_by_role("alert")).to_contain_text("did not match")
    _try(page, admin.username, PASSWORD)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many failed sign-ins. Try again after")
    expect(alert).to_contain_text("UTC (in about 1 minute)")
    page.screenshot(path=str(tmp_path / "sign_in_throttled.png"), full_page=True)
    assert "/accounts/login/" in page.url
    assert page.csp_errors == []


@pytest.mark.e2e
def test_an_idle_session_ends_at_sign_in_with_a_note(page, admin, settings, tmp_path):
    page.goto("/accounts/login/")
    _try(page, admin.username, PASSWORD)
    page.wait_for_url("**/")
    settings.PORTAL_SESSION_IDLE_SECONDS = 60
    # Age the browser's session by hand: no waiting on a clock in tests.
    from django.contrib.sessions.models import Session

    from portal.accounts.middleware import LAST_ACTIVITY
    session = Session.objects.get()
    data = session.get_decoded()
    data[LAST_ACTIVITY] -= 61
    Session.objects.filter(pk=session.pk).update(
        session_data=Session.objects.encode(data))
    page.goto("/jobs/")
    page.wait_for_url("**/accounts/login/?next=/jobs/")
    expect(page.locator("body")).to_contain_text("signed out after 1 minute without activity")
    page.screenshot(path=str(tmp_path / "signed_out_idle.png"), full_page=True)
