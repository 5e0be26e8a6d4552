"""The data-plane endpoint of one emulated Managed HSM, as an ASGI app.

Per request, in this order (the order the service answers in):

1. ``/_emulator/*`` test controls (loopback only, no token; all but ``GET health``
   need this run's control secret in ``X-Emulator-Control``): ``GET health``,
   ``GET|POST|DELETE faults``, ``GET|PATCH properties`` (soft-delete retention days and
   purge protection, which ARM owns on the real service), ``GET audit`` / ``POST audit/flush``
   (the HSM's audit events since a mark; write buffered ones to storage now).
2. Injected faults (latency, then the injected error) and, with ``--throttle``, 429s.
3. Challenge authentication before anything looks at the body: no bearer token → 401
   with ``WWW-Authenticate: Bearer authorization="<login host>/<tenant>",
   resource="https://managedhsm.azure.net"``, an empty body on key routes and ``OK`` on
   RBAC/settings routes; a token that fails validation (signature, issuer, tenant,
   audience, dates, ``alg``) → the same 401 with an ``Unauthorized`` error body.
4. ``api-version`` required on every route but LRO status polls, checked against the
   versions the service accepts → 400 ``BadParameter``.
5. Route match → 404/405; then the caller's ``oid`` must hold the route's data action
   at one of its scopes (local RBAC) → 403 ``AccessDenied``.
6. The handler; every response carries the service's headers (§1.4 of the reference).

The challenge names the emulator's own tenant so that azure-identity, asked for a token
for that tenant, stays within the credential's tenant; the host in the ``authorization``
URL is not used for token requests when the credential has its own authority.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from concurrent.futures import Executor
from typing import Optional
from urllib.parse import unquote

from .audit import AuditTrail
from .backup import FullBackup
from .errors import HsmError, access_denied, bad_parameter
from .faults import FaultInjector, Throttle
from .hsm import HsmProperties, SecurityDomain
from .keys import KeyStore
from .rbac import Rbac
from .security_domain import HsmSecurityDomain
from .routing import Call, Reply, Route, control_refusal, dumps, is_loopback
from .settings import DEFAULTS as SETTING_DEFAULTS, Settings
from .state import Sealer, Store
from .tokens import HSM_RESOURCE, TokenValidator

LATEST_API_VERSION = "2025-07-01"
API_VERSIONS = frozenset({
    "2025-07-01", "7.6", "7.5", "7.4", "7.3", "7.2", "7.1", "7.0", "2016-10-01",
    # Sent by other official clients (Azure CLI and the preview SDKs).
    "7.6-preview.2", "7.6-preview.1", "7.5-preview.1", "7.4-preview.1", "7.3-preview", "7.2-preview",
})
BUILD_VERSION = "1.0.20260320-2-76f00f12-develop"
LOGIN_HOST = "https://login.microsoftonline.com"

_STATIC_HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"content-security-policy", b"default-src 'self'"),
    (b"content-type", b"application/json; charset=utf-8"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
]
_BUILD_HEADER = (b"x-ms-build-version", BUILD_VERSION.encode())


class HsmApp:
    """One HSM: its keys, RBAC, settings and faults, served as an ASGI callable."""

    def __init__(self, props: HsmProperties, domain: SecurityDomain, store: Store, sealer: Sealer,
                 validator: TokenValidator, tenant_id: str, control_secret: str,
                 executor: Optional[Executor] = None, throttle: bool = False, activated: bool = True) -> None:
        self.props = props
        self._control_secret = control_secret
        self._store = store
        props.load(store)
        self.keys = KeyStore(props, domain, store, sealer, executor)
        # Activation state and the HSM's own security domain (replaces keys.domain when restored).
        self.sd = HsmSecurityDomain(props, domain, store, sealer, self._set_domain, executor, activated=activated)
        self.bootstrap_oid: Optional[str] = None
        self.rbac = Rbac(store, props.name)
        self.settings = Settings(store, props.name)
        self.faults = FaultInjector()
        self.throttle = Throttle() if throttle else None
        self._validator = validator
        self.backup = FullBackup(self, store)
        # Audit events of every answered request (audit.py); delivered when a diagnostic setting is on.
        self.audit = AuditTrail(props.name)
        # RBAC routes first: their scope prefix may itself start with /keys/<name>.
        # Backup/restore routes before the key routes (PUT /keys/<name>/restore).
        self._routes: list[Route] = (self.backup.routes() + self.sd.routes() + self.rbac.routes()
                                     + self.settings.routes() + self.keys.routes())
        self._challenge = (
            f'Bearer authorization="{LOGIN_HOST}/{tenant_id}", resource="{HSM_RESOURCE}"'
        ).encode()
        self._region = props.region.encode()

    @property
    def security_domain_id(self) -> str:
        """Id of the security domain this HSM belongs to (HSMs sharing one restore each other's backups)."""
        return self.keys.domain.id

    def _set_domain(self, domain: SecurityDomain) -> None:
        self.keys.domain = domain

    def bootstrap(self, oid: str) -> None:
        """Grant the bootstrap admin its roles (on first start, and again when re-provisioned)."""
        self.bootstrap_oid = oid
        self.rbac.bootstrap(oid)

    def reprovision(self) -> None:
        """Make this HSM a newly provisioned one: no keys, roles, settings, domain; not activated."""
        scope = f"hsm:{self.props.name}"
        for kind in ("key", "role_definition", "role_assignment", "setting"):
            for doc_id in self._store.load(scope, kind):
                self._store.delete(scope, kind, doc_id)
        self._store.delete(scope, "meta", "rbac-bootstrap")
        self.keys.live.clear()
        self.keys.deleted.clear()
        self.rbac.custom.clear()
        self.rbac.assignments.clear()
        self.rbac._reindex()
        self.settings.values = {name: value for name, value in SETTING_DEFAULTS.items()}
        self.sd.reprovision()
        self.backup.reset()
        if self.bootstrap_oid:
            self.rbac.bootstrap(self.bootstrap_oid)

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        received = datetime.datetime.now(datetime.timezone.utc)
        path: str = scope["path"]
        if path.startswith("/_emulator/"):
            status, body = await self._control(scope, path, await _read_body(receive))
            await _send(send, status, dumps(body), [(b"content-type", b"application/json")])
            return
        method: str = scope["method"]
        body = await _read_body(receive)
        route, params = self._match(method, path)
        extra: list[tuple[bytes, bytes]] = []
        client_ip = scope["client"][0] if scope.get("client") else ""
        authenticated = admin_challenge = False
        claims: Optional[dict] = None
        rbac: Optional[bool] = None
        description: Optional[str] = None
        try:
            if self.faults:
                await self._inject_fault(method, path)
            token = _bearer(scope)
            if token is None:
                raise _Challenge(route, None)
            try:
                claims = self._validator.validate(token)
            except ValueError as exc:
                claims = None
                raise _Challenge(route, f"The access token is not valid: {exc}") from None
            authenticated = True
            if route is None:
                raise self._no_route(method, path)
            if route.api_version:
                _check_api_version(scope["query_string"])
            self.sd.gate(path)
            self.backup.gate(route)
            if self.throttle is not None:
                self.throttle.admit(route.action)
            if route.action is not None:
                scopes = route.scopes(params)
                rbac = self.rbac.allowed(claims["oid"], route.action, scopes)
                if not rbac:
                    raise access_denied(f"Microsoft.KeyVault/managedHsm/{route.action}", scopes[-1])
            call = Call(method, path, params, scope["query_string"].decode("latin-1"), claims["oid"], body,
                        self.props.base_url, client_ip)
            reply = await route.handler(call)
        except _Challenge as challenge:
            reply = challenge.reply()
            extra.append((b"www-authenticate", self._challenge))
            admin_challenge = challenge.admin_route
            description = challenge.reason
        except HsmError as error:
            reply = Reply(error.status, error.body(), error.headers)
            description = error.message
        if reply.headers:
            extra.extend((k.lower().encode(), str(v).encode()) for k, v in reply.headers.items())
        if method == "GET" or reply.status == 404 or admin_challenge:
            extra.append(_BUILD_HEADER)
        if authenticated and reply.status != 404:
            extra.append((b"x-ms-keyvault-network-info",
                          f"conn_type=Ipv4;addr={client_ip};act_addr_fam=Ipv4;".encode()))
            extra.append((b"x-ms-keyvault-region", self._region))
        payload = reply.body if isinstance(reply.body, bytes) else (b"" if reply.body is None else dumps(reply.body))
        latency = int((time.perf_counter() - started) * 1000)
        extra.append((b"x-ms-server-latency", str(latency).encode()))
        # Recorded before the answer leaves: a caller that has its answer finds the event.
        self.audit.record(when=received, method=method, path=path, query_string=scope["query_string"],
                          pattern=route.pattern if route is not None else None, status=reply.status,
                          claims=claims if authenticated else None, rbac=rbac, description=description,
                          client_ip=client_ip, headers=scope["headers"], duration_ms=latency,
                          base_url=self.props.base_url, params=params)
        await _send(send, reply.status, payload, _STATIC_HEADERS + extra)

    def _match(self, method: str, path: str) -> tuple[Optional[Route], dict]:
        for route in self._routes:
            if route.method == method:
                match = route.regex.match(path)
                if match:
                    return route, match.groupdict()
        return None, {}

    def _no_route(self, method: str, path: str) -> HsmError:
        if any(route.regex.match(path) for route in self._routes):
            return HsmError(405, "MethodNotAllowed", f"The method {method} is not allowed on {path}.")
        return HsmError(404, "NotFound", f"The requested resource {path} was not found.")

    async def _inject_fault(self, method: str, path: str) -> None:
        fault = self.faults.take(method, path)
        if fault is None:
            return
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        error = fault.error()
        if error is not None:
            raise error

    async def _control(self, scope: dict, path: str, body: bytes) -> tuple[int, dict]:
        method = scope["method"]
        # Health reveals nothing and changes nothing: loopback is enough.
        if path == "/_emulator/health" and method == "GET" and is_loopback(scope):
            return 200, {"status": "ok", "hsm": self.props.name}
        refusal = control_refusal(scope, self._control_secret)
        if refusal is not None:
            return refusal
        if path == "/_emulator/properties" and method in ("GET", "PATCH"):
            if method == "PATCH":
                try:
                    changes = json.loads(body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("the body must be a JSON object")
                    self.props.update(self._store, changes)
                except ValueError as exc:
                    return 400, {"error": {"code": "BadParameter", "message": str(exc)}}
                self.keys.invalidate()
            return 200, {"retention_days": self.props.retention_days,
                         "purge_protection": self.props.purge_protection}
        if path == "/_emulator/provision" and method == "POST":
            self.reprovision()
            return 200, {"hsm": self.props.name, "activated": False}
        if path == "/_emulator/audit" or path == "/_emulator/audit/flush":
            return await self._audit_control(method, path, scope["query_string"], body)
        if path.startswith("/_emulator/backup"):
            answer = self.backup.control(method, path, body)
            if answer is not None:
                return answer
        if path == "/_emulator/faults":
            if method == "GET":
                return 200, {"value": self.faults.list()}
            if method == "DELETE":
                self.faults.clear()
                return 200, {"value": []}
            if method == "POST":
                try:
                    spec = json.loads(body or b"{}")
                    if not isinstance(spec, dict):
                        raise ValueError("the body must be a JSON object")
                    return 201, self.faults.add(spec).describe()
                except ValueError as exc:
                    return 400, {"error": {"code": "BadParameter", "message": str(exc)}}
        return 404, {"error": {"code": "NotFound", "message": f"No test control at {method} {path}."}}


    async def _audit_control(self, method: str, path: str, query_string: bytes, body: bytes) -> tuple[int, dict]:
        """``GET /_emulator/audit?since=<seq>&limit=<n>``: the activity since a mark;
        ``POST /_emulator/audit/flush``: write buffered events to storage now;
        ``PATCH /_emulator/audit`` ``{"hold": bool}``: stop (or resume) the writer's own writes
        (the emulator's, all HSMs), so a test can see events pending."""
        writer = self.audit.writer
        if path == "/_emulator/audit" and method == "PATCH":
            try:
                hold = json.loads(body or b"{}").get("hold")
            except (ValueError, AttributeError):
                hold = None
            if not isinstance(hold, bool):
                return 400, {"error": {"code": "BadParameter", "message": "The body is {\"hold\": true|false}."}}
            if writer is not None:
                writer.held = hold
            return 200, {"hsm": self.props.name, "held": hold, **self._delivery()}
        if path == "/_emulator/audit/flush" and method == "POST":
            written = 0
            if writer is not None:
                written = await asyncio.get_running_loop().run_in_executor(None, writer.flush)
            return 200, {"hsm": self.props.name, "flushed": written, **self._delivery()}
        if path == "/_emulator/audit" and method == "GET":
            query = dict(part.split("=", 1) for part in query_string.decode("latin-1").split("&") if "=" in part)
            try:
                since = int(query.get("since", "0"))
                limit = int(query.get("limit", "1000"))
                if since < 0 or not 0 <= limit <= 100_000:
                    raise ValueError
            except ValueError:
                return 400, {"error": {"code": "BadParameter", "message": "since is a sequence number (0 or more) "
                                                                          "and limit is 0 to 100000."}}
            return 200, {**self.audit.since(since, limit), **self._delivery()}
        return 405, {"error": {"code": "MethodNotAllowed", "message": f"{method} is not served on {path}."}}

    def _delivery(self) -> dict:
        writer = self.audit.writer
        if writer is None:
            return {"written": 0, "pending": 0, "dropped": 0, "last_error": None}
        return {"written": writer.written[self.props.name], "pending": writer.pending(self.props.name),
                "dropped": writer.dropped[self.props.name], "last_error": writer.last_error}


class _Challenge(Exception):
    """A 401 answer: the challenge, with the body the route family uses."""

    def __init__(self, route: Optional[Route], reason: Optional[str]) -> None:
        super().__init__(reason)
        self.admin_route = bool(route and route.admin_route)
        self.reason = reason

    def reply(self) -> Reply:
        if self.reason is not None:
            return Reply(401, {"error": {"code": "Unauthorized", "message": self.reason}})
        # Probes get no JSON: nothing on key routes, "OK" on RBAC/settings (as recorded).
        return Reply(401, b"OK" if self.admin_route else b"")


def _bearer(scope: dict) -> Optional[str]:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


def _check_api_version(query_string: bytes) -> None:
    version = None
    for part in query_string.split(b"&"):
        if part.startswith(b"api-version="):
            version = unquote(part[len(b"api-version="):].decode("latin-1"))
    if not version:
        raise bad_parameter("The 'api-version' query parameter is missing.")
    if version not in API_VERSIONS:
        raise bad_parameter(f"The specified version ({version}) is not recognized. Consider using the latest "
                            f"supported version ({LATEST_API_VERSION}).")


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
