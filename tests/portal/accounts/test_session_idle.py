"""Browser sessions end after PORTAL_SESSION_IDLE_SECONDS without activity (an auditor:
the general limits; admins and approvers have shorter ones, test_entra_sessions.py)."""
import time

from django.contrib.auth import SESSION_KEY

from portal.accounts.middleware import LAST_ACTIVITY, SIGNED_IN_AT
from portal.audit.models import AuditEvent
from tests.factories import PASSWORD
from tests.support.sessions import signed_in


def _last_activity(client, seconds_ago):
    session = client.session
    session[LAST_ACTIVITY] = int(time.time()) - seconds_ago
    session.save()


def test_signing_in_starts_the_idle_clock(client, auditor):
    response = client.post("/accounts/login/", {"username": auditor.username, "password": PASSWORD})
    assert response.status_code == 302
    assert abs(client.session[LAST_ACTIVITY] - time.time()) < 5


def test_an_idle_session_is_signed_out_and_sent_to_sign_in(client, settings, auditor):
    client.force_login(auditor)
    _last_activity(client, settings.PORTAL_SESSION_IDLE_SECONDS + 1)
    response = client.get("/jobs/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/jobs/"
    assert SESSION_KEY not in client.session
    event = AuditEvent.objects.get(action="auth.sign_out")
    assert (event.actor_name, event.detail["reason"]) == (auditor.username, "idle")
    page = client.get(response["Location"])
    assert "signed out after 30 minutes without activity" in page.content.decode()


def test_an_active_session_stays_and_its_clock_restarts(client, settings, auditor):
    client.force_login(auditor)
    _last_activity(client, settings.PORTAL_SESSION_IDLE_SECONDS - 30)
    assert client.get("/jobs/").status_code == 200
    assert abs(client.session[LAST_ACTIVITY] - time.time()) < 5
    assert SESSION_KEY in client.session
    assert not AuditEvent.objects.filter(action="auth.sign_out").exists()


def test_the_idle_time_is_a_setting(client, settings, auditor):
    settings.PORTAL_SESSION_IDLE_SECONDS = 120
    client.force_login(auditor)
    _last_activity(client, 121)
    assert client.get("/jobs/").status_code == 302


def test_polling_does_not_keep_a_session_alive(client, settings, auditor):
    client.force_login(auditor)
    _last_activity(client, 600)
    assert client.get("/jobs/", HTTP_HX_REQUEST="true").status_code == 200
    assert time.time() - client.session[LAST_ACTIVITY] >= 600
    _last_activity(client, settings.PORTAL_SESSION_IDLE_SECONDS + 1)
    response = client.get("/jobs/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/accounts/login/?next=/jobs/"


def test_an_idle_session_on_the_api_is_unauthenticated(client, settings, auditor):
    client.force_login(auditor)
    _last_activity(client, settings.PORTAL_SESSION_IDLE_SECONDS + 1)
    response = client.get("/api/v1/jobs/")
    assert response.status_code == 401
    assert SESSION_KEY not in client.session


def test_signing_in_stamps_the_start_of_the_session(client, auditor):
    response = client.post("/accounts/login/", {"username": auditor.username, "password": PASSWORD})
    assert response.status_code == 302
    assert abs(client.session[SIGNED_IN_AT] - time.time()) < 5


def test_an_active_session_still_ends_at_its_absolute_lifetime(client, settings, auditor):
    # Activity slides Django's own expiry date on every save: the portal's limit must not.
    client.force_login(auditor)
    signed_in(client, seconds_ago=settings.SESSION_COOKIE_AGE + 1)
    _last_activity(client, 5)
    response = client.get("/jobs/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/jobs/"
    assert SESSION_KEY not in client.session
    event = AuditEvent.objects.get(action="auth.sign_out")
    assert event.detail["reason"] == "lifetime"
    page = client.get(response["Location"])
    assert "reached its limit of 8 hours" in page.content.decode()


def test_a_session_within_its_lifetime_stays(client, settings, auditor):
    client.force_login(auditor)
    signed_in(client, seconds_ago=settings.SESSION_COOKIE_AGE - 60)
    assert client.get("/jobs/").status_code == 200
    assert SESSION_KEY in client.session
