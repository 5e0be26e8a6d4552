"""Refused: a state mismatch, a replayed or injected authorization code, a session cookie
replayed after sign-out, privileged sessions past their idle (15 min) and absolute (12 h)
limits on a moved clock. Cookies are __Host-, Secure, HttpOnly, SameSite=Lax."""
from urllib.parse import urlencode

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client

from portal.accounts import middleware
from portal.accounts.middleware import LAST_ACTIVITY
from portal.audit.models import AuditEvent
from tests.portal.accounts.conftest import (authority_sign_in, callback_path, callback_query,
                                            start)


def _refusal():
    event = AuditEvent.objects.filter(action="auth.sign_in").order_by("-seq").first()
    assert event.outcome == AuditEvent.Outcome.DENIED and event.detail["method"] == "entra"
    return event.detail["reason"]


def test_a_state_mismatch_is_refused(client, entra_settings, emulator, authority_browser,
                                     directory_user):
    person = directory_user("admin")
    back = authority_sign_in(authority_browser, emulator, start(client),
                             person["user_principal_name"])
    query = callback_query(back)
    query["state"] = "not-the-state-this-browser-sent"
    response = client.get(f"/accounts/entra/callback/?{urlencode(query)}")
    assert response.status_code == 403
    assert "does not belong to this sign-in (state)" in response.content.decode()
    assert SESSION_KEY not in client.session
    assert _refusal() == "state"


def test_a_replayed_authorization_code_is_refused(client, entra_settings, emulator,
                                                 authority_browser, directory_user):
    person = directory_user("admin")
    back = authority_sign_in(authority_browser, emulator, start(client),
                             person["user_principal_name"])
    assert client.get(callback_path(back)).status_code == 302
    assert SESSION_KEY in client.session
    client.post("/accounts/logout/")
    # The same answer again: this browser has no sign-in in progress any more.
    again = client.get(callback_path(back))
    assert again.status_code == 403 and SESSION_KEY not in client.session
    assert _refusal() == "no_flow"
    # The old code under a new flow's state: redeemed at the authority, which refuses it.
    fresh = callback_query(start(client))
    replay = {"code": callback_query(back)["code"], "state": fresh["state"]}
    response = client.get(f"/accounts/entra/callback/?{urlencode(replay)}")
    assert response.status_code == 403 and SESSION_KEY not in client.session
    assert _refusal() == "token:invalid_grant"


def test_a_code_from_another_browsers_flow_is_refused_by_pkce(client, entra_settings, emulator,
                                                              authority_browser, directory_user):
    victim = directory_user("admin")
    attacker = Client()
    mine = callback_query(start(attacker))  # the attacker's own flow, state and verifier
    victims_back = authority_sign_in(authority_browser, emulator, start(client),
                                     victim["user_principal_name"])
    injected = {"code": callback_query(victims_back)["code"], "state": mine["state"]}
    response = attacker.get(f"/accounts/entra/callback/?{urlencode(injected)}")
    assert response.status_code == 403 and SESSION_KEY not in attacker.session
    assert _refusal() == "token:invalid_grant"


def test_cookies_are_host_prefixed_secure_httponly_lax(client, entra_sign_in, directory_user):
    login_page = client.get("/accounts/login/")
    csrf = login_page.cookies["__Host-portal_csrf"]
    response = entra_sign_in(directory_user("auditor"))
    cookie = response.cookies["__Host-portal_session"]
    for morsel in (cookie, csrf):
        assert morsel["secure"] and morsel["path"] == "/" and not morsel["domain"]
        assert morsel["samesite"] == "Lax"
    assert cookie["httponly"]


def test_a_session_cookie_replayed_after_sign_out_is_refused(client, entra_sign_in,
                                                             directory_user):
    assert entra_sign_in(directory_user("admin")).status_code == 302
    stolen = client.cookies["__Host-portal_session"].value
    assert client.get("/").status_code == 200
    signed_out = client.post("/accounts/logout/")
    assert signed_out.status_code == 302
    assert not Session.objects.filter(session_key=stolen).exists()  # gone server-side
    replay = Client()
    replay.cookies["__Host-portal_session"] = stolen
    response = replay.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert replay.get("/api/v1/jobs/").status_code in (401, 403)
    event = AuditEvent.objects.filter(action="auth.sign_out").order_by("-seq").first()
    assert event is not None


@pytest.fixture
def moved_clock(monkeypatch):
    """Move the portal's session clock forward by `seconds`."""
    real = middleware.clock

    def move(seconds: int) -> int:
        monkeypatch.setattr(middleware, "clock", lambda: real() + seconds)
        return real() + seconds
    return move


def _active_at(client, when: int) -> None:
    session = client.session
    session[LAST_ACTIVITY] = when - 5
    session.save()


@pytest.mark.parametrize("role,signed_out", [("admin", True), ("approver", True),
                                             ("auditor", False)])
def test_privileged_sessions_end_after_15_idle_minutes(client, entra_sign_in, directory_user,
                                                       moved_clock, role, signed_out):
    assert entra_sign_in(directory_user(role)).status_code == 302
    moved_clock(15 * 60 + 30)
    response = client.get("/")
    assert (response.status_code == 302) is signed_out, role
    assert (SESSION_KEY not in client.session) is signed_out
    if signed_out:
        event = AuditEvent.objects.get(action="auth.sign_out")
        assert (event.detail["reason"], event.detail["limit_seconds"]) == ("idle", 900)
        assert "signed out after 15 minutes without activity" in client.get(
            response["Location"]).content.decode()


@pytest.mark.parametrize("role,signed_out", [("admin", True), ("approver", True),
                                             ("auditor", False)])
def test_privileged_sessions_end_12_hours_after_sign_in_however_active(
        client, settings, entra_sign_in, directory_user, moved_clock, role, signed_out):
    settings.SESSION_COOKIE_AGE = 24 * 3600  # a deployment allowing long general sessions
    assert entra_sign_in(directory_user(role)).status_code == 302
    _active_at(client, moved_clock(12 * 3600 - 60))
    assert client.get("/").status_code == 200  # active, within 12 h: stays
    _active_at(client, moved_clock(12 * 3600 + 60))
    response = client.get("/")
    assert (response.status_code == 302) is signed_out, role
    if signed_out:
        event = AuditEvent.objects.get(action="auth.sign_out")
        assert (event.detail["reason"], event.detail["limit_seconds"]) == ("lifetime", 43200)


def test_signing_out_offers_to_end_the_directory_session_too(client, entra_sign_in, directory_user,
                                                             emulator, authority_browser):
    person = directory_user("auditor")
    assert entra_sign_in(person).status_code == 302
    out = client.post("/accounts/logout/")
    assert out["Location"] == "/accounts/login/?signed_out=directory"
    page = client.get(out["Location"], HTTP_HOST="localhost").content.decode()
    link = page.split("sign out of Microsoft Entra ID too")[0].rsplit('href="', 1)[1].split('"')[0]
    link = link.replace("&amp;", "&")
    assert link.startswith(emulator.endpoints["authority"]) and "post_logout_redirect_uri" in link
    # At the authority: its session ends and the browser comes back to the portal's sign-in.
    back = authority_browser.get(link)
    assert back.status_code in (302, 303)
    assert back.headers["location"] == "http://localhost/accounts/login/"
    # The next sign-in asks for the password again (no single sign-on left).
    page = authority_browser.get(start(client))
    assert page.status_code == 200 and 'name="password"' in page.text
