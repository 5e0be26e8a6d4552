"""`make run`'s supervisor on the embedded defaults: SQLite, the filesystem broker with a
real worker, the emulator, Azurite, gunicorn; serves the portal, syncs the HSMs' keys at
start, keeps its state private and stops everything cleanly on Ctrl-C."""
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import stat
import sys
import threading
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import pytest
from azure.keyvault.keys import KeyClient

from tests.support.emulator import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo-password-for-tests-1"
SEEDED_KEY = "seeded-key"


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


def seed_emulator_state(state_dir: Path) -> None:
    """A key in the HSM before make run starts (its emulator keeps state in var/emulator)."""
    with EmulatorProcess(state_dir, ephemeral=False) as emulator:
        client = KeyClient(emulator.hsm_url("primary"), emulator.credential(),
                           **emulator.client_options())
        client.create_rsa_key(SEEDED_KEY, hardware_protected=True)


def attach_emulator(state_dir: Path) -> EmulatorProcess:
    """Test controls of the emulator make run started (from its endpoints.json)."""
    emulator = EmulatorProcess(state_dir)
    emulator.endpoints = json.loads((state_dir / "endpoints.json").read_text())
    emulator.principals = dict(emulator.endpoints["principals"])
    emulator._ssl = ssl.create_default_context(cafile=emulator.ca_bundle)
    return emulator


def descendants(pid: int) -> set[int]:
    """Every process below pid (make run's children sit in their own process groups)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def running_portal(tmp_path):
    seed_emulator_state(tmp_path / "var" / "emulator")
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS"))}
    env.update(PORTAL_VAR_DIR=str(tmp_path / "var"), PORTAL_PORT=str(port),
               AZURITE_BLOB_PORT=str(free_port()), PORTAL_DEMO_PASSWORD_ADMIN=PASSWORD,
               PORTAL_DEMO_PASSWORD_AUDITOR=PASSWORD, PORTAL_DEMO_PASSWORD_APPROVER=PASSWORD,
               # Beat's first sync would come a day later: the keys must come from the start.
               PORTAL_INVENTORY_SYNC_SECONDS="86400",
               # urllib's cookie jar sends no Secure cookie over plain HTTP (a browser does,
               # to 127.0.0.1): the documented switch for such a local client.
               PORTAL_INSECURE_LOCAL_COOKIES="true")
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "deploy/run_local.py"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener()
    try:
        wait_for(lambda: get(opener, base + "/healthz")[0] == 200 or proc.poll() is not None,
                 120, "the portal to answer /healthz")
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        yield {"base": base, "proc": proc, "env": env, "log": tmp_path / "run.log",
               "var": tmp_path / "var"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        finally:
            log.close()


def sign_in(base: str, username: str, var: Path):
    """Sign in as make run's users do: through the emulator's authority (Entra ID's
    stand-in), with the directory user `<role>@contoso.test` it registered."""
    endpoints = json.loads((var / "emulator" / "endpoints.json").read_text())
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(CookieJar()),
        urllib.request.HTTPSHandler(context=ssl.create_default_context(
            cafile=endpoints["ca_bundle"])))
    with opener.open(base + "/accounts/entra/start/", timeout=30) as page:
        assert page.url.startswith(endpoints["authority"])
        html = page.read().decode()
    action = re.search(r'<form method="post" action="([^"]+)"', html).group(1)
    ctx = re.search(r'name="ctx" value="([^"]+)"', html).group(1)
    request = urllib.request.Request(endpoints["authority"] + action, data=urlencode({
        "ctx": ctx, "username": f"{username}@contoso.test", "password": PASSWORD}).encode())
    with opener.open(request, timeout=30) as response:  # -> callback -> the dashboard
        assert response.status == 200 and response.url == base + "/", response.url
    return opener


def test_make_run_serves_every_role_syncs_keys_at_start_and_stops_cleanly(running_portal):
    base, proc = running_portal["base"], running_portal["proc"]
    assert json.loads(get(urllib.request.build_opener(), base + "/healthz")[1])["checks"] == {
        "database": "ok", "broker": "ok"}

    var = running_portal["var"]
    # Local accounts are break-glass, off by default: sign-in goes through the directory.
    status, login = get(urllib.request.build_opener(), base + "/accounts/login/")
    assert "Sign in with Microsoft Entra ID" in login and 'name="password"' not in login
    admin = sign_in(base, "admin", var)
    status, dashboard = get(admin, base + "/")
    assert "primary" in dashboard and "secondary" in dashboard  # the emulator's HSMs
    assert get(admin, base + "/audit/")[0] == 200
    auditor = sign_in(base, "auditor", var)
    assert get(auditor, base + "/audit/")[0] == 200
    assert get(auditor, base + "/hsms/primary/keys/new/")[0] == 403
    approver = sign_in(base, "approver", var)
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

    # The HSMs' keys are in the portal at once, synced by a job per HSM, not by beat.
    def synced_hsms():
        status, body = get(admin, base + "/api/v1/jobs/?kind=keys.inventory_sync&status=succeeded")
        return status == 200 and sorted(job["hsm"] for job in json.loads(body)["results"])
    wait_for(lambda: synced_hsms() == ["primary", "secondary"], 60, "a sync of each HSM")
    status, body = get(admin, base + "/api/v1/hsms/primary/keys/")
    assert status == 200 and [key["name"] for key in json.loads(body)["results"]] == [SEEDED_KEY]
    assert SEEDED_KEY in get(admin, base + "/hsms/primary/keys/")[1]

    # make run's state is the user's alone, including what an older run left readable.
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    assert stat.S_IMODE((var / "portal.sqlite3").stat().st_mode) == 0o600
    readable = [str(path.relative_to(var)) for path in [var, *var.rglob("*")]
                if not path.is_symlink() and path.lstat().st_mode & 0o077]
    assert readable == []

    # Ctrl-C while a request is in flight: it is answered, and everything stops cleanly.
    emulator = attach_emulator(var / "emulator")
    emulator.fail("GET", f"/keys/{SEEDED_KEY}*", status=None, count=1, latency_ms=5000)
    in_flight: dict = {}

    def read_public_key():
        in_flight["status"], in_flight["body"] = get(
            admin, f"{base}/api/v1/hsms/primary/keys/{SEEDED_KEY}/public-key/")

    request = threading.Thread(target=read_public_key)
    request.start()
    wait_for(lambda: emulator._control(emulator.hsm_url("primary"), "GET",
                                       "/_emulator/faults")["value"] == [], 30,
             "the request to reach the HSM")
    children = descendants(proc.pid)
    assert len(children) >= 5  # emulator, Azurite, worker, beat, gunicorn (and their own)

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    request.join(timeout=60)
    assert in_flight["status"] == 200 and json.loads(in_flight["body"])["n"]
    assert proc.wait(timeout=90) == 0

    wait_for(lambda: not any(alive(pid) for pid in children), 30,
             "every process make run started to stop")
    output = running_portal["log"].read_text()
    assert "Traceback" not in output
    assert "Perhaps out of memory" not in output and "SIGKILL" not in output
    assert "Shutting down: Master" in output  # gunicorn stopped by itself
