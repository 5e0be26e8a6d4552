"""Security headers, no external assets, and `check --deploy` under production settings."""
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse


ROOT = Path(__file__).resolve().parents[2]
PAGES = ["/", "/hsms/", "/jobs/", "/audit/", "/api/docs/", "/accounts/login/"]
URL_ATTRS = re.compile(r"""(?:src|href|action|hx-get|hx-post|data-url)\s*=\s*["']([^"']+)["']""")


def _external_urls(html: str) -> list[str]:
    found = []
    for url in URL_ATTRS.findall(html):
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https") or url.startswith("//"):
            if parsed.hostname not in ("testserver", "127.0.0.1", "localhost"):
                found.append(url)
    for url in re.findall(r"url\(\s*['\"]?((?:https?:)?//[^'\")]+)", html):
        found.append(url)
    return found


INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.I)


def test_no_rendered_page_references_a_url_outside_the_portal(client, personas):
    for user in personas.values():
        client.force_login(user)
        for path in PAGES:
            response = client.get(path)
            if response.status_code == 200 and "html" in response["Content-Type"]:
                html = response.content.decode()
                assert _external_urls(html) == [], path
                # CSP allows no inline script or style: none may be written either.
                assert INLINE.findall(html) == [], path
        client.logout()
    response = client.get("/accounts/login/")
    assert _external_urls(response.content.decode()) == []


def test_static_assets_reference_nothing_outside(client, admin):
    from django.contrib.staticfiles import finders

    for path in ("vendor/pico/pico.min.css", "portal/portal.css", "portal/portal.js"):
        text = Path(finders.find(path)).read_text()
        assert re.findall(r"url\(\s*['\"]?(?:https?:)?//", text) == [], path
        assert "@import" not in text


def test_pages_send_csp_and_security_headers(client, admin):
    client.force_login(admin)
    response = client.get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cache-Control"] == "no-store"
    assert "<script>" not in response.content.decode()  # no inline script anywhere


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.base",
           "DJANGO_SECRET_KEY": "x" * 20 + "a-long-random-production-secret-key-value-1234567890",
           "PORTAL_HTTPS": "true", "PORTAL_DEBUG": "false", "PORTAL_VAR_DIR": str(tmp_path),
           "PORTAL_ALLOWED_HOSTS": "portal.internal.example",
           "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
           "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                             "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)" in result.stdout


def test_request_ids_are_echoed_and_reach_the_audit_trail(api_as, admin):
    from portal.audit.models import AuditEvent

    client = api_as(admin)
    response = client.post("/api/v1/hsms/",
                           {"name": "rid", "uri": "https://rid-hsm.managedhsm.azure.net"},
                           format="json", HTTP_X_REQUEST_ID="client-req-12345")
    assert response.status_code == 201
    # The request's id is the server's; the caller's is kept beside it, never instead.
    server_id = response["X-Request-ID"]
    assert server_id != "client-req-12345" and len(server_id) == 32
    assert response["X-Client-Request-ID"] == "client-req-12345"
    event = AuditEvent.objects.get(action="hsm.register")
    assert (event.request_id, event.client_request_id) == (server_id, "client-req-12345")
    # A malformed id is dropped, never stored or echoed; a trailing newline is malformed.
    for bad in ("bad id\nwith newline", "client-req-12345\n"):
        response = client.get("/api/v1/hsms/", HTTP_X_REQUEST_ID=bad)
        assert len(response["X-Request-ID"]) == 32 and "X-Client-Request-ID" not in response
