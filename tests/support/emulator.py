"""Start and drive the Managed HSM emulator from tests and benchmarks.

``EmulatorProcess(state_dir).start()`` runs ``python -m hsm_emulator serve`` as a child
process on free ports, waits (with a deadline, never a fixed sleep) until it has written
``endpoints.json`` for this process, and exposes the endpoints, credentials for its
principals, and the ``/_emulator`` test controls (faults, principals), which it calls
with the run's ``control_secret`` from ``endpoints.json``. ``stop()`` ends the process it
started, by its pid. The emulator runs its own Azurite (HTTPS, OAuth; ``endpoints["storage"]``)
and stops it with itself; ``extra_args=("--no-storage",)`` starts none (about a second less).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional, Union

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_ADMIN = "bootstrap-admin"
# Every test control call but health carries this run's secret from endpoints.json.
CONTROL_HEADER = "X-Emulator-Control"


class EmulatorError(RuntimeError):
    """The emulator did not start, or a test control call failed."""


_CHALLENGE_CACHES = ("azure.keyvault.keys._shared.http_challenge_cache",
                     "azure.keyvault.administration._internal.http_challenge_cache",
                     "azure.keyvault.securitydomain._internal.http_challenge_cache")


def _forget_challenges(urls) -> None:
    """Drop the Key Vault SDKs' cached challenges (kept per host:port, process-wide) for these URLs.

    A new emulator can listen on a port an earlier one in this process used; a cached
    challenge names the earlier emulator's tenant, and the credential would refuse to get a
    token for it (ClientAuthenticationError) instead of meeting the new HSM's challenge."""
    import importlib

    for module in _CHALLENGE_CACHES:
        try:
            cache = importlib.import_module(module)
        except ImportError:
            continue
        for url in urls:
            cache.remove_challenge_for_url(url)


class EmulatorProcess:
    """One emulator child process and helpers to use it."""

    def __init__(self, state_dir: Path, hsms: tuple[str, ...] = ("primary", "secondary"), ephemeral: bool = True,
                 extra_args: tuple[str, ...] = (), unactivated: tuple[str, ...] = ()) -> None:
        self.state_dir = Path(state_dir)
        self.hsms = tuple(dict.fromkeys(tuple(hsms) + tuple(unactivated)))
        self.unactivated = tuple(unactivated)
        self.ephemeral = ephemeral
        self.extra_args = tuple(extra_args)
        self.endpoints: dict[str, Any] = {}
        self.principals: dict[str, dict] = {}
        self._proc: Optional[subprocess.Popen] = None
        self._log = None
        self._ssl: Optional[ssl.SSLContext] = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 30) -> "EmulatorProcess":
        """Spawn the emulator and wait until its endpoints are published."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        endpoints_file = self.state_dir / "endpoints.json"
        endpoints_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "hsm_emulator", "serve", "--state-dir", str(self.state_dir), "--port", "0"]
        for name in self.hsms:
            args += ["--hsm", name]
        for name in self.unactivated:
            args += ["--unactivated", name]
        if self.ephemeral:
            args.append("--ephemeral")
        args += list(self.extra_args)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        log_path = self.state_dir / "emulator.log"
        self._log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        self._proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise EmulatorError(f"emulator exited with {self._proc.returncode}; see {log_path}")
            if endpoints_file.exists():
                endpoints = json.loads(endpoints_file.read_text())
                if endpoints.get("pid") == self._proc.pid:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(f"emulator not ready after {timeout} s; see {log_path}")
            time.sleep(0.02)
        self.endpoints = endpoints
        _forget_challenges(endpoints["hsms"].values())
        self.principals = dict(endpoints["principals"])
        self._ssl = ssl.create_default_context(cafile=self.ca_bundle)
        return self

    def stop(self, timeout: float = 30) -> None:
        """Terminate the process this object started (SIGTERM, then SIGKILL after ``timeout``).

        The emulator stops its Azurite first (which saves its data), so it may take seconds.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "EmulatorProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- endpoints and credentials ------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """The emulator's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def ca_bundle(self) -> str:
        """Path of the CA bundle that verifies every emulator endpoint."""
        return self.endpoints["ca_bundle"]

    def hsm_url(self, hsm: str = "primary") -> str:
        """Base URL of one HSM."""
        return self.endpoints["hsms"][hsm]

    def client_options(self, **overrides: Any) -> dict:
        """Constructor kwargs every Key Vault client needs for the emulator."""
        return {"verify_challenge_resource": False, "connection_verify": self.ca_bundle, **overrides}

    def _principal(self, principal: Union[str, dict]) -> dict:
        return principal if isinstance(principal, dict) else self.principals[principal]

    def credential(self, principal: Union[str, dict] = BOOTSTRAP_ADMIN, **kwargs: Any):
        """azure-identity ClientSecretCredential for a principal (name or credentials dict)."""
        from azure.identity import ClientSecretCredential

        p = self._principal(principal)
        return ClientSecretCredential(self.endpoints["tenant_id"], p["client_id"], p["client_secret"],
                                      **self._credential_options(**kwargs))

    def async_credential(self, principal: Union[str, dict] = BOOTSTRAP_ADMIN, **kwargs: Any):
        """The asyncio variant of ``credential`` (azure.identity.aio)."""
        from azure.identity.aio import ClientSecretCredential

        p = self._principal(principal)
        return ClientSecretCredential(self.endpoints["tenant_id"], p["client_id"], p["client_secret"],
                                      **self._credential_options(**kwargs))

    def _credential_options(self, **kwargs: Any) -> dict:
        return {"authority": self.endpoints["authority"], "disable_instance_discovery": True,
                "connection_verify": self.ca_bundle, **kwargs}

    # -- test controls ------------------------------------------------------------

    def _control(self, base: str, method: str, path: str, body: Optional[dict] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  CONTROL_HEADER: self.endpoints["control_secret"]})
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise EmulatorError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def create_principal(self, display_name: str, **registration: Any) -> dict:
        """A new service principal: ``client_id``, ``client_secret``, ``object_id``, ``display_name``.

        ``registration`` may add ``redirect_uris``, ``app_roles`` (values or objects),
        ``identifier_uris``, ``assignment_required`` and ``roles`` (``{client_id: [role]}``:
        app roles this principal holds on other applications)."""
        principal = self._control(self.endpoints["authority"], "POST", "/_emulator/principals",
                                  {"display_name": display_name, **registration})
        self.principals[display_name] = principal
        return principal

    def update_principal(self, client_id: str, **registration: Any) -> dict:
        """Change an application's ``redirect_uris``, ``app_roles``, ``identifier_uris``, ``assignment_required``."""
        return self._control(self.endpoints["authority"], "PATCH", f"/_emulator/principals/{client_id}",
                             registration)

    def create_user(self, user_principal_name: str, roles: Optional[dict] = None, **fields: Any) -> dict:
        """A new user (``display_name``, ``password``, ``groups`` optional) holding ``roles``
        (``{app client_id: [role values]}``); the answer carries ``object_id`` and ``password``."""
        return self._control(self.endpoints["authority"], "POST", "/_emulator/users",
                             {"user_principal_name": user_principal_name, "roles": roles or {}, **fields})

    def create_group(self, display_name: str, members: tuple[str, ...] = ()) -> dict:
        """A new security group with these users (object ids) as members."""
        return self._control(self.endpoints["authority"], "POST", "/_emulator/groups",
                             {"display_name": display_name, "members": list(members)})

    def assign_app_role(self, principal_id: str, resource: str, role: str, remove: bool = False) -> dict:
        """Give (or with ``remove`` take back) app role ``role`` of application ``resource`` (client id)
        to a user or service principal (object id, or a service principal's client id)."""
        return self._control(self.endpoints["authority"], "DELETE" if remove else "POST",
                             "/_emulator/app-role-assignments",
                             {"principal_id": principal_id, "resource": resource, "role": role})

    def id_token_fault(self, client_id: str, claims: Optional[dict] = None, signing: str = "authority") -> dict:
        """Alter the next ID token issued to application ``client_id`` (once): ``claims`` overridden
        (``None`` removes one), signed by the ``authority``, with alg ``none``, or by a ``foreign``
        key under the authority's key id."""
        return self._control(self.endpoints["authority"], "POST", "/_emulator/id-token-faults",
                             {"client_id": client_id, "claims": claims or {}, "signing": signing})

    def age_sign_ins(self, seconds: int, user_id: Optional[str] = None) -> int:
        """Make browser sign-ins at the authority ``seconds`` older (``max_age`` tests)."""
        body: dict[str, Any] = {"seconds": seconds}
        if user_id:
            body["user_id"] = user_id
        return self._control(self.endpoints["authority"], "POST", "/_emulator/sign-ins/age", body)["sessions"]

    def list_principals(self) -> list[dict]:
        """All principals, without secrets."""
        return self._control(self.endpoints["authority"], "GET", "/_emulator/principals")["value"]

    def mint_token(self, claims: Optional[dict] = None, principal: Union[str, dict] = BOOTSTRAP_ADMIN,
                   audience: Optional[str] = None) -> str:
        """A token signed by the authority with ``claims`` overridden (``None`` removes a claim)."""
        body = {"client_id": self._principal(principal)["client_id"], "claims": claims or {}}
        if audience:
            body["audience"] = audience
        return self._control(self.endpoints["authority"], "POST", "/_emulator/tokens", body)["access_token"]

    def fail(self, method: str, path: str, status: Optional[int] = 503, count: int = -1, hsm: str = "primary",
             retry_after: Optional[float] = None, latency_ms: Optional[int] = None) -> dict:
        """Make the next ``count`` matching requests to ``hsm`` fail with ``status`` and/or be delayed."""
        spec: dict[str, Any] = {"method": method, "path": path, "count": count}
        for member, value in (("status", status), ("retry_after", retry_after), ("latency_ms", latency_ms)):
            if value is not None:
                spec[member] = value
        return self._control(self.hsm_url(hsm), "POST", "/_emulator/faults", spec)

    def fail_graph(self, method: str, path: str, status: Optional[int] = 503, count: int = -1,
                   retry_after: Optional[float] = None, latency_ms: Optional[int] = None) -> dict:
        """The same as ``fail`` for the emulator's Microsoft Graph (answers in Graph's error envelope)."""
        spec: dict[str, Any] = {"method": method, "path": path, "count": count}
        for member, value in (("status", status), ("retry_after", retry_after), ("latency_ms", latency_ms)):
            if value is not None:
                spec[member] = value
        return self._control(self.endpoints["graph"], "POST", "/_emulator/faults", spec)

    def clear_graph_faults(self) -> None:
        """Disarm the Graph endpoint's faults."""
        self._control(self.endpoints["graph"], "DELETE", "/_emulator/faults")

    def clear_faults(self, hsm: Optional[str] = None) -> None:
        """Disarm faults on one HSM, or on all of them."""
        for name in ([hsm] if hsm else list(self.endpoints["hsms"])):
            self._control(self.hsm_url(name), "DELETE", "/_emulator/faults")

    def set_properties(self, hsm: str = "primary", **changes: Any) -> dict:
        """Change ARM-owned HSM properties: ``retention_days`` (7-90), ``purge_protection``."""
        return self._control(self.hsm_url(hsm), "PATCH", "/_emulator/properties", changes)

    def provision(self, hsm: str) -> dict:
        """Make ``hsm`` a newly provisioned, un-activated HSM (keys, roles, settings, domain discarded)."""
        return self._control(self.hsm_url(hsm), "POST", "/_emulator/provision")

    def backup_state(self, hsm: str = "primary") -> dict:
        """The HSM's backup/restore jobs (``jobs``), ``restoring`` and ``last_full_backup``."""
        return self._control(self.hsm_url(hsm), "GET", "/_emulator/backup")

    def hold_backup_jobs(self, min_job_ms: int, hsm: str = "primary") -> dict:
        """Keep each backup/restore job of ``hsm`` in progress at least ``min_job_ms`` (0 turns it off)."""
        return self._control(self.hsm_url(hsm), "PATCH", "/_emulator/backup", {"min_job_ms": min_job_ms})

    def age_backups(self, seconds: int, hsm: str = "primary") -> dict:
        """Move ``hsm``'s completed full backups ``seconds`` into the past (the 30-minute restore rule)."""
        return self._control(self.hsm_url(hsm), "POST", "/_emulator/backup/age", {"seconds": seconds})

    def audit(self, hsm: str = "primary", since: int = 0, limit: int = 1000) -> dict:
        """The HSM's audit events after mark ``since``: ``seq`` (the next mark), ``count``, ``value``,
        ``delivering`` (a diagnostic setting is on), ``written``/``pending``/``dropped`` lines."""
        return self._control(self.hsm_url(hsm), "GET", f"/_emulator/audit?since={since}&limit={limit}")

    def flush_audit(self, hsm: str = "primary") -> dict:
        """Write the HSM's buffered audit events to storage now."""
        return self._control(self.hsm_url(hsm), "POST", "/_emulator/audit/flush")

    def hold_audit_writer(self, hold: bool = True, hsm: str = "primary") -> dict:
        """Stop (or resume) the emulator's audit writer thread: events stay pending until a flush."""
        return self._control(self.hsm_url(hsm), "PATCH", "/_emulator/audit", {"hold": hold})

    def health(self, hsm: str = "primary") -> dict:
        """The HSM's readiness document."""
        return self._control(self.hsm_url(hsm), "GET", "/_emulator/health")
