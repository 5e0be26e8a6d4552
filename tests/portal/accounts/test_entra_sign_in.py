"""Sign-in through Microsoft Entra ID (the emulator's authority), end to end: msal's
auth-code flow with PKCE, the ID token validated, the user found by object id, portal
roles from app roles (re-synced at every sign-in), all audited."""
from django.contrib.auth import SESSION_KEY, get_user_model

from portal.accounts.identity import principal_id
from portal.accounts.models import DirectoryIdentity
from portal.audit.models import AuditEvent
from tests.portal.accounts.conftest import callback_query, start


def _roles(user) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def test_each_role_signs_in_through_the_authority(client, entra_sign_in, directory_user, emulator):
    for role in ("admin", "approver", "auditor"):
        client.logout()
        person = directory_user(role)
        anonymous_key = client.session.session_key
        response = entra_sign_in(person, next_url="/audit/")
        assert response.status_code == 302 and response["Location"] == "/audit/", response.content[:300]
        assert SESSION_KEY in client.session
        assert client.session.session_key != anonymous_key  # a new session id on sign-in
        identity = DirectoryIdentity.objects.get(object_id=person["object_id"])
        assert identity.tenant_id == emulator.endpoints["tenant_id"]
        assert identity.user.username == person["user_principal_name"].lower()
        assert not identity.user.has_usable_password()
        assert principal_id(identity.user) == person["object_id"]  # maker-checker's identity
        assert _roles(identity.user) == [role]
        assert client.get("/").status_code == 200, role
        event = AuditEvent.objects.filter(action="auth.sign_in").order_by("-seq").first()
        assert (event.outcome, event.detail["method"], event.detail["roles"]) == (
            AuditEvent.Outcome.SUCCEEDED, "entra", [role])
        assert event.detail["object_id"] == person["object_id"]


def test_roles_are_re_synced_at_every_sign_in(client, entra_sign_in, directory_user, emulator,
                                             portal_app):
    person = directory_user("admin")
    assert entra_sign_in(person).status_code == 302
    user = DirectoryIdentity.objects.get(object_id=person["object_id"]).user
    assert _roles(user) == ["admin"]
    emulator.assign_app_role(person["object_id"], portal_app["client_id"], "admin", remove=True)
    emulator.assign_app_role(person["object_id"], portal_app["client_id"], "auditor")
    client.logout()
    assert entra_sign_in(person).status_code == 302
    assert _roles(user) == ["auditor"]
    assert get_user_model().objects.filter(directory_identity__object_id=person["object_id"]).count() == 1
    synced = AuditEvent.objects.filter(action="user.roles_sync").order_by("-seq").first()
    assert (synced.detail["added"], synced.detail["removed"]) == (["auditor"], ["admin"])


def test_a_user_without_a_portal_role_is_refused_and_loses_the_roles_it_had(
        client, entra_sign_in, directory_user, emulator, portal_app):
    person = directory_user("approver")
    assert entra_sign_in(person).status_code == 302
    client.logout()
    emulator.assign_app_role(person["object_id"], portal_app["client_id"], "approver", remove=True)
    refused = entra_sign_in(person)
    assert refused.status_code == 403
    assert "has no role in this portal" in refused.content.decode()
    assert SESSION_KEY not in client.session
    user = DirectoryIdentity.objects.get(object_id=person["object_id"]).user
    assert _roles(user) == []
    event = AuditEvent.objects.filter(action="auth.sign_in").order_by("-seq").first()
    assert (event.outcome, event.detail["reason"]) == (AuditEvent.Outcome.DENIED, "no portal role")


def test_identity_is_the_object_id_never_the_name(client, entra_sign_in, directory_user, admin):
    """A directory user whose UPN equals a local username is another user; two sign-ins of
    one object id are one user whatever the name."""
    person = directory_user("auditor", name=f"{admin.username}@contoso.test")
    local = get_user_model().objects.create_user(username=person["user_principal_name"].lower(),
                                                 password="x" * 20)
    assert entra_sign_in(person).status_code == 302
    user = DirectoryIdentity.objects.get(object_id=person["object_id"]).user
    assert user.pk != local.pk and user.username.endswith(person["object_id"][:8])
    assert client.session[SESSION_KEY] == str(user.pk)


def test_group_claims_map_to_roles_when_configured(client, entra_sign_in, directory_user, emulator,
                                                  entra_settings):
    group = emulator.create_group("hsm-approvers")
    entra_settings.ENTRA_GROUP_MAP = {group["object_id"]: "approver"}
    person = directory_user(groups=[group["object_id"]])
    assert entra_sign_in(person).status_code == 302
    assert _roles(DirectoryIdentity.objects.get(object_id=person["object_id"]).user) == ["approver"]


def test_break_glass_is_off_unless_enabled(client, settings, entra_settings, admin):
    settings.PORTAL_BREAK_GLASS = False
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Microsoft Entra ID" in page and 'name="password"' not in page
    refused = client.post("/accounts/login/", {"username": admin.username,
                                                "password": "correct-horse-battery-staple"})
    assert refused.status_code == 403 and SESSION_KEY not in client.session
    event = AuditEvent.objects.get(action="auth.sign_in")
    assert (event.outcome, event.detail["method"]) == (AuditEvent.Outcome.DENIED, "break_glass")
    settings.PORTAL_BREAK_GLASS = True
    page = client.get("/accounts/login/").content.decode()
    assert "Break-glass local account" in page and 'name="password"' in page
    assert client.post("/accounts/login/", {"username": admin.username,
                                            "password": "correct-horse-battery-staple"}).status_code == 302
    event = AuditEvent.objects.filter(action="auth.sign_in").order_by("-seq").first()
    assert (event.outcome, event.detail["method"]) == (AuditEvent.Outcome.SUCCEEDED, "break_glass")


def test_the_production_default_has_break_glass_off():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import os; os.environ['DJANGO_SETTINGS_MODULE']='portal.settings.base';"
         "import django; django.setup(); from django.conf import settings as s;"
         "print(s.PORTAL_BREAK_GLASS, s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME,"
         " s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE)"],
        capture_output=True, text=True, check=True,
        env={k: v for k, v in __import__("os").environ.items()
             if not k.startswith(("PORTAL_", "ENTRA_", "DJANGO_SETTINGS"))})
    assert out.stdout.split() == ["False", "True", "__Host-portal_session", "__Host-portal_csrf",
                                  "True", "Lax"]


def test_the_flow_carries_pkce_state_and_nonce(client, entra_settings):
    query = callback_query(start(client))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert query["state"] and query["nonce"] and query["response_type"] == "code"
    assert "openid" in query["scope"].split()


def test_a_disabled_portal_account_is_refused(client, entra_sign_in, directory_user):
    person = directory_user("admin")
    assert entra_sign_in(person).status_code == 302
    client.logout()
    user = DirectoryIdentity.objects.get(object_id=person["object_id"]).user
    user.is_active = False
    user.save()
    refused = entra_sign_in(person)
    assert refused.status_code == 403 and SESSION_KEY not in client.session
    event = AuditEvent.objects.filter(action="auth.sign_in").order_by("-seq").first()
    assert (event.outcome, event.detail["reason"]) == (AuditEvent.Outcome.DENIED, "account disabled")


def test_an_error_answer_from_the_authority_is_refused_in_a_sentence(client, entra_settings):
    state = callback_query(start(client))["state"]
    response = client.get(f"/accounts/entra/callback/?error=access_denied&state={state}"
                          "&error_description=AADSTS50105")
    assert response.status_code == 403 and SESSION_KEY not in client.session
    assert "The directory did not sign you in" in response.content.decode()
    event = AuditEvent.objects.get(action="auth.sign_in")
    assert event.detail["reason"] == "authority:access_denied"


def test_an_unreachable_authority_is_a_503_sentence(client, entra_settings):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    entra_settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{port}/tenant"
    response = client.get("/accounts/entra/start/")
    assert response.status_code == 503
    assert "cannot be reached; try again in a minute" in response.content.decode()


def test_no_token_is_kept_in_the_session_the_database_or_the_log(client, entra_sign_in,
                                                                directory_user, caplog):
    """No JWT (header.payload.signature, base64url from eyJ) in the session, the audit trail
    or any log record of the sign-in, even at DEBUG, before the handlers' redaction."""
    import logging
    import re

    from django.contrib.sessions.models import Session

    from portal.accounts.entra import FLOW

    jwt_text = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.")
    caplog.set_level(logging.DEBUG)
    assert entra_sign_in(directory_user("admin")).status_code == 302
    session = Session.objects.get(session_key=client.session.session_key).get_decoded()
    assert FLOW not in session and not jwt_text.search(str(session))
    assert not [e for e in AuditEvent.objects.all() if jwt_text.search(str(e.detail))]
    assert not [r.name for r in caplog.records if jwt_text.search(r.getMessage())]
