"""`make run`: set up and start the embedded portal, and stop everything on Ctrl-C.

Starts the Managed HSM emulator (which runs Azurite, its blob storage, over HTTPS), a Celery
worker and beat, and the web server (gunicorn) at http://127.0.0.1:8000, on the embedded defaults (SQLite, filesystem broker).
Sign-in goes through the emulator's authority (deploy/emulator_identity.py: the portal's app
registration and a directory user per role); without the emulator, through the local demo
accounts (PORTAL_BREAK_GLASS).
Environment variables override every default, as in production (see the README).

Everything it writes under var/ is private to the user (umask 077: directories 0700, files
such as the SQLite database 0600). Each child runs in its own process group, so Ctrl-C
reaches only this supervisor, which stops them in order: gunicorn first (it finishes the
requests in flight), then beat, the worker (warm shutdown), Azurite and the emulator last;
each gets a grace period before it is killed.
"""
import ctypes
import json
import os
import shutil
import signal
import stat
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


# Seconds each child may take to stop after SIGTERM before it is killed. gunicorn's is its
# graceful_timeout (deploy/gunicorn.conf.py) plus a margin; the emulator's covers the Azurite it
# stops first (up to 20 s, so that Azurite saves its data).
GRACE = {"gunicorn": 25, "worker": 30, "beat": 10, "azurite": 10, "emulator": 25}


class Stopping(Exception):
    """Ctrl-C or SIGTERM reached the supervisor."""


class Child:
    """One process make run started, in its own process group."""

    def __init__(self, name: str, args: list[str], env: dict | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     process_group=0, preexec_fn=_stop_with_parent)

    def stop(self) -> None:
        """SIGTERM (each program's graceful stop), then SIGKILL after its grace period."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=GRACE[self.name])
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop within {GRACE[self.name]} s; killing it.",
                  file=sys.stderr, flush=True)
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the child's whole process group (gunicorn's and celery's workers too)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def _stop_with_parent() -> None:
    """In the child: a signal when make run itself dies (Linux), since Ctrl-C no longer
    reaches the child's own process group."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def make_private(root: Path) -> None:
    """Owner-only access to var/ and everything already in it (state from older runs)."""
    root.mkdir(parents=True, exist_ok=True)
    for directory, dirs, files in os.walk(root):
        for path in [Path(directory)] + [Path(directory) / name for name in dirs + files]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & 0o700)


def manage(*args: str, env: dict) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def wait_for_file(path: Path, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited before it was ready "
                               f"(code {child.proc.returncode}).")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out waiting for {path.name}.")
        time.sleep(0.2)


def start_emulator(env: dict, procs: list) -> dict | None:
    """Start the HSM emulator and point the portal's credential at it."""
    if os.environ.get("PORTAL_NO_EMULATOR") or not (ROOT / "hsm_emulator" / "__main__.py").exists():
        return None
    state = VAR / "emulator"
    endpoints = state / "endpoints.json"
    endpoints.unlink(missing_ok=True)
    args = [PY, "-m", "hsm_emulator", "serve", "--state-dir", str(state), "--demo-estate"]
    if os.environ.get("PORTAL_NO_AZURITE"):
        args.append("--no-storage")  # the emulator starts Azurite (its blob storage) otherwise
    child = Child("emulator", args, env=env)
    procs.append(child)
    wait_for_file(endpoints, child, 60)
    from portal.gateway.emulator_config import emulator_environment

    data = json.loads(endpoints.read_text())
    env.update(emulator_environment(data))
    manage("hsm_register_emulator", str(endpoints), env=env)
    return data


def start_azurite(env: dict, procs: list, emulator: dict | None) -> None:
    """Azurite for blob storage when the emulator does not run its own (endpoints `storage`)."""
    if emulator and emulator.get("storage"):
        return
    if not AZURITE.exists() or os.environ.get("PORTAL_NO_AZURITE"):
        print("Azurite is not installed (npm ci); blob storage is off.")
        return
    port = os.environ.get("AZURITE_BLOB_PORT", "10000")
    location = VAR / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    procs.append(Child("azurite", [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", port,
                                   "--location", str(location), "--silent",
                                   "--disableTelemetry", "--skipApiVersionCheck"]))


def main() -> None:
    os.umask(0o077)  # what make run and its children write is the user's alone
    make_private(VAR)
    env = {**os.environ, "PORTAL_VAR_DIR": str(VAR)}
    procs: list[Child] = []

    def on_signal(*_args) -> None:
        raise Stopping

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        manage("migrate", "--noinput", env=env)
        manage("collectstatic", "--noinput", "-v0", env=env)
        make_private(VAR)  # collectstatic sets its files' modes itself (0644)
        manage("seed_demo_users", env=env)
        emulator = start_emulator(env, procs)
        if emulator and not env.get("ENTRA_CLIENT_ID"):
            # Sign-in through the emulator's authority, as production does through Entra ID.
            from deploy.emulator_identity import entra_environment

            env.update(entra_environment(emulator, VAR, PORT))
        elif not env.get("ENTRA_CLIENT_ID"):
            # No directory to sign in with: the local demo accounts (break-glass) instead.
            env.setdefault("PORTAL_BREAK_GLASS", "true")
        # The keys pages show the HSMs' keys once the worker has run these, not after
        # beat's first interval.
        manage("inventory_sync", env=env)
        start_azurite(env, procs, emulator)
        celery = [PY, "-m", "celery", "-A", "portal"]
        procs.append(Child("worker", [*celery, "worker", "--loglevel", "INFO",
                                      "--concurrency", "2"], env=env))
        procs.append(Child("beat", [*celery, "beat", "--loglevel", "INFO",
                                    "--schedule", str(VAR / "celerybeat-schedule")], env=env))
        gunicorn = shutil.which("gunicorn", path=str(Path(PY).parent)) or "gunicorn"
        procs.append(Child("gunicorn", [gunicorn, "portal.wsgi:application", "--config",
                                        str(ROOT / "deploy" / "gunicorn.conf.py"),
                                        "--bind", f"127.0.0.1:{PORT}"], env=env))
        print(f"\nmhsm-portal is up at http://127.0.0.1:{PORT}/ (Ctrl-C stops everything)\n",
              flush=True)
        while all(child.proc.poll() is None for child in procs):
            time.sleep(1)
        failed = next(child for child in procs if child.proc.poll() is not None)
        print(f"{failed.name} exited with {failed.proc.returncode}; stopping.", file=sys.stderr)
        code = 1
    except Stopping:
        print("\nStopping (Ctrl-C again kills at once).", file=sys.stderr, flush=True)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"Setup failed: {exc}", file=sys.stderr)
        code = 1
    try:
        for child in reversed(procs):
            child.stop()
    except Stopping:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in procs:
            child.kill()
    sys.exit(code)


if __name__ == "__main__":
    main()
