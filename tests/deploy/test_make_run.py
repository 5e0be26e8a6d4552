"""`make run`'s supervisor on the embedded defaults: SQLite, the filesystem broker with a
real worker, the emulator, Azurite, gunicorn; serves the portal and stops everything."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo-password-for-tests-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def get(opener, url: str):
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


@pytest.fixture
def running_portal(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS"))}
    env.update(PORTAL_VAR_DIR=str(tmp_path / "var"), PORTAL_PORT=str(port),
               AZURITE_BLOB_PORT=str(free_port()), PORTAL_DEMO_PASSWORD_ADMIN=PASSWORD,
               PORTAL_DEMO_PASSWORD_AUDITOR=PASSWORD, PORTAL_DEMO_PASSWORD_APPROVER=PASSWORD)
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "deploy/run_local.py"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener()
    try:
        wait_for(lambda: get(opener, base + "/healthz")[0] == 200 or proc.poll() is not None,
                 120, "the portal to answer /healthz")
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        yield {"base": base, "proc": proc, "env": env, "log": tmp_path / "run.log"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        finally:
            log.close()


def sign_in(base: str, username: str):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    status, html = get(opener, base + "/accounts/login/")
    token = html.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    request = urllib.request.Request(base + "/accounts/login/", data=urlencode({
        "csrfmiddlewaretoken": token, "username": username, "password": PASSWORD}).encode(),
        headers={"Referer": base + "/accounts/login/"})
    with opener.open(request, timeout=10) as response:
        assert response.status == 200 and response.url == base + "/"
    return opener


def test_make_run_serves_every_role_runs_jobs_and_stops_everything(running_portal):
    base, proc = running_portal["base"], running_portal["proc"]
    assert json.loads(get(urllib.request.build_opener(), base + "/healthz")[1])["checks"] == {
        "database": "ok", "broker": "ok"}

    admin = sign_in(base, "admin")
    status, dashboard = get(admin, base + "/")
    assert "primary" in dashboard and "secondary" in dashboard  # the emulator's HSMs
    assert get(admin, base + "/audit/")[0] == 200
    auditor = sign_in(base, "auditor")
    assert get(auditor, base + "/audit/")[0] == 200
    assert get(auditor, base + "/hsms/primary/keys/new/")[0] == 403
    approver = sign_in(base, "approver")
    assert get(approver, base + "/audit/")[0] == 403

    # A job through the embedded (filesystem) broker on a real worker, checking the HSMs.
    status, html = get(admin, base + "/jobs/")
    token = html.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    request = urllib.request.Request(base + "/jobs/", data=urlencode(
        {"csrfmiddlewaretoken": token}).encode(), headers={"Referer": base + "/jobs/"})
    with admin.open(request, timeout=10) as response:
        job_url = response.url
    page = wait_for(lambda: (lambda html: html if 'data-status="succeeded"' in html else None)(
        get(admin, job_url)[1]), 60, "the self-check job to succeed")
    assert "hsm primary: ok" in page and "hsm secondary: ok" in page

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    proc.wait(timeout=60)

    def group_gone():
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, 30, "every process make run started to stop")
