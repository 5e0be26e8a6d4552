"""The authority's sign-in page in Chromium: accessible (axe-core, light and dark), no CSP
errors, and a real browser round trip to a relying party listening on localhost."""

import base64
import hashlib
import secrets
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def relying_party():
    """An HTTP listener on localhost standing for the application: records each callback's query."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if urlsplit(self.path).path == "/callback":  # not the browser's /favicon.ico
                received.append(dict(parse_qsl(urlsplit(self.path).query)))
            body = b"<!doctype html><html lang='en'><title>Back</title><main><h1>Back in the app</h1></main></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/callback", received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _axe_problems(page) -> list[str]:
    assert AXE.exists(), "axe-core is not installed: run make node-deps (npm ci)"
    page.evaluate(AXE.read_text())
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {v['help']}" for v in results["violations"] if v["impact"] in ("serious", "critical")]


def test_sign_in_page_is_accessible_and_brings_the_browser_back_with_a_code(emulator, browser, relying_party):
    redirect_uri, received = relying_party
    app = emulator.create_principal(f"browser-{uuid.uuid4().hex[:6]}", redirect_uris=[redirect_uri],
                                    app_roles=["admin"])
    user = emulator.create_user(f"b{uuid.uuid4().hex[:8]}@contoso.test", password="correct horse battery",
                                roles={app["client_id"]: ["admin"]})
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(12)
    authority, tenant = emulator.endpoints["authority"], emulator.endpoints["tenant_id"]
    url = f"{authority}/{tenant}/oauth2/v2.0/authorize?" + urlencode({
        "client_id": app["client_id"], "response_type": "code", "redirect_uri": redirect_uri,
        "scope": "openid profile", "state": state, "nonce": "n", "code_challenge": challenge,
        "code_challenge_method": "S256"})

    # The emulator's CA is not in Chromium's store; this test is about the page, not TLS.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(url)
        assert page.title() == "Sign in to your account"
        assert _axe_problems(page) == []
        page.emulate_media(color_scheme="dark")
        assert _axe_problems(page) == []
        page.emulate_media(color_scheme="light")
        for width in (375, 1920):  # a phone and a wide screen: nothing scrolls sideways
            page.set_viewport_size({"width": width, "height": 800})
            assert page.evaluate("() => document.scrollingElement.scrollWidth <= "
                                 "document.scrollingElement.clientWidth")
        page.set_viewport_size({"width": 1280, "height": 800})

        page.get_by_label("Email or user name").fill(user["user_principal_name"])
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        assert "Your account or password is incorrect." in alert.inner_text()
        assert page.get_by_label("Email or user name").input_value() == user["user_principal_name"]
        assert _axe_problems(page) == []

        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(redirect_uri + "?*")
        assert page.get_by_role("heading").inner_text() == "Back in the app"
        (callback,) = received
        assert callback["state"] == state and len(callback["code"]) > 40
        assert [c for c in console if "Content Security Policy" in c or "Content-Security-Policy" in c] == []
    finally:
        context.close()
