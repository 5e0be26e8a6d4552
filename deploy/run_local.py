"""`make run`: set up and start the embedded portal, and stop everything on Ctrl-C.

Starts the Managed HSM emulator, Azurite, a Celery worker and beat, and the web server
(gunicorn) at http://127.0.0.1:8000, on the embedded defaults (SQLite, filesystem broker).
Environment variables override every default, as in production (see the README).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR = Path(os.environ.get("PORTAL_VAR_DIR", ROOT / "var"))
PY = sys.executable
PORT = os.environ.get("PORTAL_PORT", "8000")
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"


def manage(*args: str, env: dict) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            sys.exit(f"{proc.args[0]} exited before it was ready (code {proc.returncode}).")
        if time.monotonic() > deadline:
            sys.exit(f"Timed out waiting for {path.name}.")
        time.sleep(0.2)


def start_emulator(env: dict, procs: list) -> dict | None:
    """Start the HSM emulator and point the portal's credential at it."""
    if os.environ.get("PORTAL_NO_EMULATOR") or not (ROOT / "hsm_emulator" / "__main__.py").exists():
        return None
    state = VAR / "emulator"
    endpoints = state / "endpoints.json"
    endpoints.unlink(missing_ok=True)
    proc = subprocess.Popen([PY, "-m", "hsm_emulator", "serve", "--state-dir", str(state)],
                            cwd=ROOT, env=env)
    procs.append(proc)
    wait_for_file(endpoints, proc, 60)
    from portal.gateway.emulator_config import emulator_environment

    data = json.loads(endpoints.read_text())
    env.update(emulator_environment(data))
    manage("hsm_register_emulator", str(endpoints), env=env)
    return data


def start_azurite(env: dict, procs: list) -> None:
    if not AZURITE.exists() or os.environ.get("PORTAL_NO_AZURITE"):
        print("Azurite is not installed (npm ci); blob storage is off.")
        return
    port = os.environ.get("AZURITE_BLOB_PORT", "10000")
    location = VAR / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    procs.append(subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", port,
                                   "--location", str(location), "--silent",
                                   "--disableTelemetry", "--skipApiVersionCheck"], cwd=ROOT))


def main() -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PORTAL_VAR_DIR": str(VAR)}
    procs: list[subprocess.Popen] = []

    def stop(*_args) -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        manage("migrate", "--noinput", env=env)
        manage("collectstatic", "--noinput", "-v0", env=env)
        manage("seed_demo_users", env=env)
        start_emulator(env, procs)
        start_azurite(env, procs)
        celery = [PY, "-m", "celery", "-A", "portal"]
        procs.append(subprocess.Popen([*celery, "worker", "--loglevel", "INFO",
                                       "--concurrency", "2"], cwd=ROOT, env=env))
        procs.append(subprocess.Popen([*celery, "beat", "--loglevel", "INFO",
                                       "--schedule", str(VAR / "celerybeat-schedule")],
                                      cwd=ROOT, env=env))
        gunicorn = shutil.which("gunicorn", path=str(Path(PY).parent)) or "gunicorn"
        procs.append(subprocess.Popen([gunicorn, "portal.wsgi:application", "--config",
                                       str(ROOT / "deploy" / "gunicorn.conf.py"),
                                       "--bind", f"127.0.0.1:{PORT}"], cwd=ROOT, env=env))
        print(f"\nmhsm-portal is up at http://127.0.0.1:{PORT}/ (Ctrl-C stops everything)\n",
              flush=True)
        while all(proc.poll() is None for proc in procs):
            time.sleep(1)
        failed = next(proc for proc in procs if proc.poll() is not None)
        print(f"{failed.args[:3]} exited with {failed.returncode}; stopping.", file=sys.stderr)
    except subprocess.CalledProcessError as exc:
        print(f"Setup failed: {exc}", file=sys.stderr)
    stop()


if __name__ == "__main__":
    main()
