"""Oversized requests are a 413 (the error envelope for the API, a readable page for forms),
never a 500, while key backups and .byok files at their real sizes still go through."""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from django.conf import settings

from portal import gateway
from portal.audit.models import AuditEvent
from portal.gateway.models import HsmInstance

ROOT = Path(__file__).resolve().parents[2]
OVER = 3 * 1024 * 1024  # the 3 MB body that was a 500


def _big_json() -> str:
    return json.dumps({"name": "big", "uri": "https://big.managedhsm.azure.net",
                       "region": "x" * OVER})


def test_oversized_json_is_a_413_in_the_error_format(api_as, admin, caplog):
    response = api_as(admin).post("/api/v1/hsms/", _big_json(), content_type="application/json")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large" and error["request_id"]
    assert error["message"] == "The request is larger than the portal accepts (2 MiB at most)."
    assert not HsmInstance.objects.exists()
    assert not AuditEvent.objects.exists()
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"
                and "Internal" in r.getMessage()]


def test_oversized_form_is_a_413_page(client, admin):
    client.force_login(admin)
    response = client.post("/hsms/", {"name": "big", "uri": "https://big.managedhsm.azure.net",
                                      "region": "x" * OVER, "role": "primary"})
    assert response.status_code == 413
    assert "text/html" in response["Content-Type"]
    assert "larger than the portal accepts" in response.content.decode()
    assert not HsmInstance.objects.exists()


def test_oversized_file_upload_is_a_413_page(client, admin, hsm):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(admin)
    upload = SimpleUploadedFile("huge.bin", b"\0" * OVER)
    response = client.post(f"/hsms/{hsm.name}/keys/restore/", {"backup_file": upload})
    assert response.status_code == 413
    assert "larger than the portal accepts" in response.content.decode()


def test_an_upload_just_under_the_limit_reaches_the_form(client, admin, hsm):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(admin)
    upload = SimpleUploadedFile("big.bin", b"\0" * (settings.PORTAL_MAX_BODY_BYTES - 4096))
    response = client.post(f"/hsms/{hsm.name}/keys/restore/", {"backup_file": upload})
    assert response.status_code != 413  # the form got it; the HSM judges the content


def test_real_key_backups_restore_through_both_doors(client, api_as, admin, hsm, key_name):
    """An RSA-4096 key with three versions: a backup of about 15 KB (5 KB per version)."""
    sdk = gateway.keys(hsm)
    sdk.create_rsa_key(key_name, size=4096, hardware_protected=True)
    sdk.rotate_key(key_name)
    sdk.rotate_key(key_name)
    blob = sdk.backup_key(key_name)
    assert len(blob) > 12_000

    def gone():
        sdk.begin_delete_key(key_name).wait()
        sdk.purge_deleted_key(key_name)

    gone()
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/restore/",
                                  {"value": base64.b64encode(blob).decode()}, format="json")
    assert response.status_code == 201, response.content
    gone()
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/restore/",
                           {"backup_file": SimpleUploadedFile("k.backup", blob)})
    assert response.status_code == 302
    assert sdk.get_key(key_name).name == key_name


# -- the same through a real gunicorn -------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """gunicorn serving the test settings on a free port, against this test's database."""
    from django.db import connection

    db = connection.settings_dict
    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.test",
           "TEST_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "PORTAL_VAR_DIR": str(tmp_path / "var"),
           # urllib's cookie jar keeps Secure cookies from plain HTTP (a browser sends them
           # to localhost): the documented switch for such a local client.
           "PORTAL_INSECURE_LOCAL_COOKIES": "true"}
    log = open(tmp_path / "gunicorn.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "portal.wsgi:application",
                             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
        try:
            with urllib.request.urlopen(base + "/accounts/login/", timeout=5):
                break
        except OSError:
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
    yield base, tmp_path / "gunicorn.log"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _send(opener, request):
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def test_oversized_bodies_on_gunicorn_are_413(gunicorn, admin):
    from portal.accounts.services import api_token_issue

    base, log = gunicorn
    issued = api_token_issue(user=admin, actor=admin)
    token = issued[0] if isinstance(issued, tuple) else issued  # (raw, row) or raw
    opener = urllib.request.build_opener()
    status, headers, body = _send(opener, urllib.request.Request(
        base + "/api/v1/hsms/", data=_big_json().encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"}))
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    # A form: the sign-in page (its CSRF cookie first, as a browser has it).
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    _send(opener, base + "/accounts/login/")
    csrf = next(cookie.value for cookie in jar if cookie.name == "portal_csrf")
    form = f"csrfmiddlewaretoken={csrf}&username=x&password={'y' * OVER}".encode()
    status, headers, body = _send(opener, urllib.request.Request(
        base + "/accounts/login/", data=form, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert status == 413 and "larger than the portal accepts" in body
    assert "Traceback" not in log.read_text()
