"""Chromium signs in through the emulator's authority (msal's auth-code flow with PKCE) as
admin, approver and auditor; each sees what its role allows and is refused the rest."""
import base64
import hashlib
import socket
import ssl
import uuid
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import expect

from portal.accounts import entra
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

PASSWORD = "correct horse battery staple"
ROLES = ["admin", "approver", "auditor"]
# What each role finds in the left navigation, and a page it may not open.
SEES = {"admin": {"Audit trail", "Jobs"}, "approver": set(), "auditor": {"Audit trail", "Jobs"}}
HIDDEN = {"admin": set(), "approver": {"Audit trail", "Jobs"}, "auditor": set()}
REFUSED = {"approver": "/audit/", "auditor": "/hsms/primary/deregister/"}


def _spki_pins(emulator) -> str:
    """SHA-256 pin of the public key the emulator's authority serves (its certificate is
    verified against the emulator's CA first): Chromium trusts exactly that key, not every
    certificate."""
    host, port = urlsplit(emulator.endpoints["authority"]).hostname, urlsplit(
        emulator.endpoints["authority"]).port
    context = ssl.create_default_context(cafile=emulator.ca_bundle)
    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def entra_browser(emulator):
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[*CHROMIUM_ARGS,
                      f"--ignore-certificate-errors-spki-list={_spki_pins(emulator)}"])
            yield browser
            browser.close()


@pytest.fixture
def portal_registration(emulator, live_server, settings):
    """The portal's app registration with this live server's callback; ENTRA_* settings."""
    callback = f"{live_server.url}/accounts/entra/callback/"
    app = emulator.create_principal(f"mhsm-portal-e2e-{uuid.uuid4().hex[:6]}",
                                    redirect_uris=[callback], app_roles=ROLES)
    settings.ENTRA_AUTHORITY = f"{emulator.endpoints['authority']}/{emulator.endpoints['tenant_id']}"
    settings.ENTRA_CLIENT_ID = app["client_id"]
    settings.ENTRA_CLIENT_SECRET = app["client_secret"]
    settings.ENTRA_CA_BUNDLE = emulator.ca_bundle
    settings.ENTRA_REDIRECT_URI = callback
    settings.PORTAL_BREAK_GLASS = False  # production's default: Entra ID only
    yield app
    entra._discovery.cache_clear()
    entra._jwk_client.cache_clear()


@pytest.mark.e2e
def test_each_role_signs_in_through_the_authority_and_sees_what_it_may(
        entra_browser, live_server, emulator, portal_registration):
    for role in ROLES:
        user = emulator.create_user(f"{role}-{uuid.uuid4().hex[:6]}@contoso.test",
                                    roles={portal_registration["client_id"]: [role]},
                                    display_name=f"{role.title()} Person", password=PASSWORD)
        context = entra_browser.new_context(base_url=live_server.url)
        page = context.new_page()
        csp_errors = []
        page.on("console", lambda msg, errors=csp_errors: errors.append(msg.text)
                if "Content Security Policy" in msg.text else None)
        try:
            page.goto("/")
            page.wait_for_url("**/accounts/login/**")
            expect(page.get_by_label("Password")).to_have_count(0)  # break-glass is off
            page.get_by_role("button", name="Sign in with Microsoft Entra ID").click()
            page.wait_for_url(f"{emulator.endpoints['authority']}/**")
            page.get_by_label("Email or user name").fill(user["user_principal_name"])
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{live_server.url}/")
            nav = set(page.get_by_role("navigation", name="Portal").locator(".nav-label")
                      .all_inner_texts())
            assert "Dashboard" in nav and SEES[role] <= nav and not HIDDEN[role] & nav, (role, nav)
            if role in REFUSED:
                response = page.goto(REFUSED[role])
                assert response.status == 403, (role, REFUSED[role])
            else:
                assert page.goto("/audit/").status == 200
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["__Host-portal_session"]
            assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"
            page.goto("/")
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/accounts/login/?signed_out=directory")
            expect(page.get_by_role("link", name="sign out of Microsoft Entra ID too")).to_be_visible()
            assert "__Host-portal_session" not in {c["name"] for c in context.cookies()
                                                   if c["value"]}
            assert csp_errors == []
        finally:
            context.close()


@pytest.mark.e2e
def test_chromium_keeps_host_prefixed_secure_cookies_on_plain_http_127_0_0_1(entra_browser,
                                                                          live_server):
    """`make run` serves http://127.0.0.1: the Secure __Host- cookies must still work there
    (no PORTAL_INSECURE_LOCAL_COOKIES needed), as on http://localhost above."""
    context = entra_browser.new_context(base_url=live_server.url.replace("localhost", "127.0.0.1"))
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        csrf = {c["name"]: c for c in context.cookies()}["__Host-portal_csrf"]
        assert csrf["secure"] and csrf["domain"] == "127.0.0.1" and csrf["path"] == "/"
    finally:
        context.close()


@pytest.mark.e2e
def test_the_sign_in_and_refusal_pages_read_well(entra_browser, live_server, portal_registration):
    """axe-core, both sizes and the dark theme, as tests/e2e/test_every_page.py checks pages:
    the sign-in page with Entra ID on and break-glass off, and the refusal page."""
    from tests.e2e.test_every_page import SHOTS, check_every_size, read_axe

    SHOTS.mkdir(parents=True, exist_ok=True)
    axe = read_axe()
    context = entra_browser.new_context(base_url=live_server.url, reduced_motion="reduce")
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        problems = check_every_size(page, "entra sign-in", "anonymous-{}-accounts-login-entra", axe)
        page.goto("/accounts/login/?signed_out=directory")
        expect(page.get_by_role("link", name="sign out of Microsoft Entra ID too")).to_be_visible()
        problems += check_every_size(page, "signed out", "anonymous-{}-accounts-signed-out", axe)
        response = page.goto("/accounts/entra/callback/?code=x&state=y")
        assert response.status == 403
        expect(page.get_by_role("alert")).to_contain_text("No sign-in is in progress")
        problems += check_every_size(page, "sign-in refused", "anonymous-{}-sign-in-refused", axe)
        assert problems == [], "\n".join(problems)
    finally:
        context.close()


@pytest.mark.e2e
def test_samesite_strict_would_lose_the_sign_in_on_the_way_back(
        entra_browser, live_server, emulator, portal_registration, settings):
    """Why the session cookie is Lax: the authority (another site) sends the browser back
    with a top-level GET, which carries a Lax cookie but not a Strict one, so under Strict
    the callback finds no sign-in in progress."""
    user = emulator.create_user(f"strict-{uuid.uuid4().hex[:6]}@contoso.test", password=PASSWORD,
                                roles={portal_registration["client_id"]: ["auditor"]})
    outcomes = {}
    for samesite in ("Strict", "Lax"):
        settings.SESSION_COOKIE_SAMESITE = samesite
        context = entra_browser.new_context(base_url=live_server.url)
        try:
            page = context.new_page()
            page.goto("/accounts/login/")
            page.get_by_role("button", name="Sign in with Microsoft Entra ID").click()
            page.get_by_label("Email or user name").fill(user["user_principal_name"])
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{live_server.url}/**")
            page.wait_for_load_state()
            outcomes[samesite] = page.get_by_role("heading", level=1).first.inner_text()
        finally:
            context.close()
    assert outcomes["Strict"] == "Sign-in refused"
    assert outcomes["Lax"] != "Sign-in refused"


@pytest.mark.e2e
def test_purge_with_an_old_sign_in_goes_through_the_directory_again_and_back(
        entra_browser, live_server, emulator, portal_registration, hsm, key_name):
    """Step-up in the browser: a purge 16 minutes after signing in sends the admin to the
    authority, which asks for the password again (prompt=login, despite its own session),
    and back to the deleted keys page, where the purge then goes on (to its approval)."""
    import re
    import time

    from django.contrib.sessions.backends.db import SessionStore

    from keys_app import services
    from portal.accounts.middleware import SIGNED_IN_AT
    from portal.accounts.models import DirectoryIdentity
    from tests.e2e.test_key_pages import make_key
    from tests.support.approvals import run_approved

    person = emulator.create_user(f"stepup-{uuid.uuid4().hex[:6]}@contoso.test", password=PASSWORD,
                                  roles={portal_registration["client_id"]: ["admin"]})
    context = entra_browser.new_context(base_url=live_server.url)
    try:
        page = context.new_page()
        page.goto("/accounts/entra/start/")
        page.get_by_label("Email or user name").fill(person["user_principal_name"])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}/")
        admin = DirectoryIdentity.objects.get(object_id=person["object_id"]).user
        make_key(hsm, admin, key_name)
        run_approved(services.key_delete, hsm=hsm, name=key_name, actor=admin,
                     request_id="r-del", confirm_name=key_name)
        # The sign-in is now 16 minutes old.
        cookie = {c["name"]: c for c in context.cookies()}["__Host-portal_session"]["value"]
        session = SessionStore(session_key=cookie)
        session[SIGNED_IN_AT] = int(time.time()) - 16 * 60
        session.save()

        deleted = f"{live_server.url}/hsms/{hsm.name}/deleted-keys/"
        page.goto(deleted)
        page.get_by_label(f"Type {key_name} to confirm purge").fill(key_name)
        page.get_by_role("button", name="Purge permanently").click()
        page.wait_for_url("**/accounts/reauthenticate/**")
        expect(page.locator(".flash").first).to_contain_text("needs a sign-in within the last 15")
        from tests.e2e.test_every_page import SHOTS, check_every_size, read_axe

        SHOTS.mkdir(parents=True, exist_ok=True)
        assert check_every_size(page, "step-up", "admin-{}-accounts-reauthenticate-entra",
                                read_axe()) == []
        page.set_viewport_size({"width": 1280, "height": 800})
        page.get_by_role("button", name="Sign in again with Microsoft Entra ID").click()
        page.wait_for_url(f"{emulator.endpoints['authority']}/**")
        assert "prompt=login" in page.url and "max_age=0" in page.url
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(deleted)
        page.get_by_label(f"Type {key_name} to confirm purge").fill(key_name)
        page.get_by_role("button", name="Purge permanently").click()
        page.wait_for_url(re.compile(r"/approvals/\d+/$"))
        expect(page.locator(".flash")).to_contain_text("Purge a deleted key needs approval")
    finally:
        context.close()
