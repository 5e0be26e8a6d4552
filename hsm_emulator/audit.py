"""HSM audit events: what Managed HSM sends to diagnostic settings (category ``AuditEvent``).

Every request the data plane answers (``/_emulator`` test controls aside) becomes one
event, refusals included (401 challenges, 403 ``AccessDenied``, 404s, 429s, injected
faults): ``AuditTrail.record`` builds it from what the request and its answer already
hold, keeps it in memory (the emulator's own activity, read through ``GET
/_emulator/audit``) and, when a diagnostic setting of the HSM sends ``AuditEvent`` to a
storage account (``arm_diagnostics``), hands one JSON line to the ``AuditWriter``.

The event follows the Key Vault / Managed HSM ``AuditEvent`` schema: ``time``,
``resourceId`` (upper case, as Azure Monitor writes it), ``operationName`` (``KeyCreate``,
``KeyGet``, ``KeySign``, ``RoleAssignmentCreate``, ``BackupCreate``, ...; unauthenticated
requests are ``Authentication``), ``operationVersion`` (the request's api-version),
``category``, ``resultType``, ``resultSignature`` (the HTTP reason, ``OK``, ``Forbidden``),
``resultDescription`` (the error message of a refusal), ``durationMs`` (a string, as the
service writes it), ``callerIpAddress``, ``correlationId`` (the client's
``x-ms-client-request-id``), ``identity.claim`` (``oid``, ``appid``, ``upn``, ... of a
token that validated; never the token) and ``properties`` (``id``, ``requestUri``,
``httpStatusCode``, ``clientInfo`` (User-Agent), ``isRbacAuthorized``, and the pool
fields Managed HSM adds). No request or response body is looked at: key material never
reaches an event.

The writer keeps lines in a buffer and a daemon thread appends them every
``FLUSH_SECONDS`` to append blobs in the layout Azure Monitor uses::

    insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/<SUB>/RESOURCEGROUPS/<RG>/PROVIDERS/
        MICROSOFT.KEYVAULT/MANAGEDHSMS/<NAME>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json

one JSON object per line, in request order. ``POST /_emulator/audit/flush`` writes what is
buffered at once. The data plane pays for a tuple and a deque append per request (the event is built when it
is read), plus building it and one ``json.dumps`` when a setting is on; storage I/O never
runs on the event loop.
"""

from __future__ import annotations

import collections
import datetime
import json
import threading
from typing import Optional

CONTAINER = "insights-logs-auditevent"
CATEGORY = "AuditEvent"
FLUSH_SECONDS = 0.5
KEEP_EVENTS = 20_000  # the in-memory activity list per HSM, about 1 KB each (the count is never truncated)
MAX_PENDING = 200_000  # lines buffered while storage is unreachable; older ones are dropped
APPEND_LIMIT = 4 * 1024 * 1024  # bytes per append block
MAX_HEADER = 1024  # User-Agent and x-ms-client-request-id are kept up to this many bytes

# The operation each data-plane route is logged as, by (method, route pattern).
_KEY = r"^/keys/(?P<name>[^/]+)"
_CRYPTO = r"(?i)^/keys/(?P<name>[^/]+)/(?P<version>[^/]*)/"
_RBAC = r"^(?P<scope>(?:/[^/]+)*)/providers/Microsoft\.Authorization/"
OPERATIONS: dict[tuple[str, str], str] = {
    ("POST", r"^/backup/?$"): "BackupCreate",
    ("POST", r"^/prebackup/?$"): "PreBackupCreate",
    ("PUT", r"^/restore/?$"): "RestoreCreate",
    ("PUT", r"^/prerestore/?$"): "PreRestoreCreate",
    ("PUT", _KEY + r"/restore/?$"): "SelectiveKeyRestoreCreate",
    ("GET", r"^/backup/(?P<job>[0-9a-zA-Z-]+)/pending/?$"): "BackupStatus",
    ("GET", r"^/restore/(?P<job>[0-9a-zA-Z-]+)/pending/?$"): "RestoreStatus",
    ("POST", r"^/securitydomain/download/?$"): "SecurityDomainDownload",
    ("GET", r"^/securitydomain/download/pending/?$"): "SecurityDomainDownloadStatus",
    ("GET", r"^/securitydomain/upload/?$"): "SecurityDomainTransferKeyGet",
    ("POST", r"^/securitydomain/upload/?$"): "SecurityDomainUpload",
    ("GET", r"^/securitydomain/upload/pending/?$"): "SecurityDomainUploadStatus",
    ("GET", _RBAC + r"roleDefinitions/?$"): "RoleDefinitionList",
    ("GET", _RBAC + r"roleDefinitions/(?P<name>[^/]+)$"): "RoleDefinitionGet",
    ("PUT", _RBAC + r"roleDefinitions/(?P<name>[^/]+)$"): "RoleDefinitionCreate",
    ("DELETE", _RBAC + r"roleDefinitions/(?P<name>[^/]+)$"): "RoleDefinitionDelete",
    ("GET", _RBAC + r"roleAssignments/?$"): "RoleAssignmentList",
    ("GET", _RBAC + r"roleAssignments/(?P<name>[^/]+)$"): "RoleAssignmentGet",
    ("PUT", _RBAC + r"roleAssignments/(?P<name>[^/]+)$"): "RoleAssignmentCreate",
    ("DELETE", _RBAC + r"roleAssignments/(?P<name>[^/]+)$"): "RoleAssignmentDelete",
    ("GET", r"^/settings/?$"): "SettingList",
    ("GET", r"^/settings/(?P<name>[^/]+)$"): "SettingGet",
    ("PATCH", r"^/settings/(?P<name>[^/]+)$"): "SettingUpdate",
    ("POST", _KEY + r"/create$"): "KeyCreate",
    ("POST", r"^/keys/restore$"): "KeyRestore",
    ("GET", r"^/keys/?$"): "KeyList",
    ("GET", _KEY + r"/versions/?$"): "KeyListVersions",
    ("GET", _KEY + r"/rotationpolicy$"): "KeyRotationPolicyGet",
    ("PUT", _KEY + r"/rotationpolicy$"): "KeyRotationPolicyUpdate",
    ("POST", _KEY + r"/backup$"): "KeyBackup",
    ("POST", _KEY + r"/rotate$"): "KeyRotate",
    ("PUT", _KEY + r"/?$"): "KeyImport",
    ("GET", _KEY + r"(?:/(?P<version>[^/]*))?$"): "KeyGet",
    ("PATCH", _KEY + r"(?:/(?P<version>[^/]*))?$"): "KeyUpdate",
    ("DELETE", _KEY + r"/?$"): "KeyDelete",
    ("POST", _KEY + r"/(?P<version>[^/]*)/release$"): "KeyRelease",
    ("GET", _KEY + r"/(?P<version>[^/]*)/attestation$"): "KeyGetAttestation",
    ("GET", r"^/deletedkeys/?$"): "KeyListDeleted",
    ("GET", r"^/deletedkeys/(?P<name>[^/]+)$"): "KeyGetDeleted",
    ("DELETE", r"^/deletedkeys/(?P<name>[^/]+)$"): "KeyPurge",
    ("POST", r"^/deletedkeys/(?P<name>[^/]+)/recover$"): "KeyRecover",
    ("POST", r"^/rng$"): "GetRandomBytes",
    ("POST", _CRYPTO + r"encrypt$"): "KeyEncrypt",
    ("POST", _CRYPTO + r"decrypt$"): "KeyDecrypt",
    ("POST", _CRYPTO + r"wrapkey$"): "KeyWrap",
    ("POST", _CRYPTO + r"unwrapkey$"): "KeyUnwrap",
    ("POST", _CRYPTO + r"sign$"): "KeySign",
    ("POST", _CRYPTO + r"verify$"): "KeyVerify",
}
UNAUTHENTICATED = "Authentication"
UNKNOWN = "UnknownOperation"

# Token claims an event may show (as the service does); never aio/uti/rh or the token itself.
_CLAIMS = ("oid", "appid", "appidacr", "idtyp", "upn", "unique_name", "name", "scp", "xms_mirid", "ipaddr")
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "NoContent", 400: "BadRequest", 401: "Unauthorized",
            403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict", 429: "TooManyRequests",
            500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


def operation_name(method: str, pattern: Optional[str], status: int) -> str:
    """The ``operationName`` of a request: the route's operation, ``Authentication`` for a 401."""
    if status == 401:
        return UNAUTHENTICATED
    if pattern is None:
        return UNKNOWN
    return OPERATIONS.get((method, pattern), UNKNOWN)


def blob_path(resource_id: str, when: datetime.datetime) -> str:
    """The blob an event of ``when`` goes to (the hour's ``PT1H.json``)."""
    return (f"resourceId={resource_id.upper()}/y={when.year:04d}/m={when.month:02d}/d={when.day:02d}"
            f"/h={when.hour:02d}/m=00/PT1H.json")


def _time(when: datetime.datetime) -> str:
    """``2026-11-30T10:05:03.1234560Z``: seven fractional digits, as Azure Monitor writes them."""
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "0Z"


class AuditTrail:
    """One HSM's audit events: the activity list, and delivery when a setting is on."""

    def __init__(self, hsm: str, keep: int = KEEP_EVENTS) -> None:
        self.hsm = hsm
        self.seq = 0  # events recorded since start; a mark is a value of it
        self.events: collections.deque = collections.deque(maxlen=keep)  # (seq, raw request facts)
        self.resource_id = ""  # the ARM id, set when Resource Manager serves the HSM
        self.tenant_id = ""
        self.location = ""
        self.writer: Optional["AuditWriter"] = None
        self.delivering = False  # a diagnostic setting sends AuditEvent to storage

    def record(self, *, when: datetime.datetime, method: str, path: str, query_string: bytes,
               pattern: Optional[str], status: int, claims: Optional[dict], rbac: Optional[bool],
               description: Optional[str], client_ip: str, headers: list, duration_ms: int,
               base_url: str, params: dict) -> None:
        """Record one answered request.

        Only what the event needs is kept (two headers, never the token); the event itself is
        built when it is delivered or read, so an HSM without a setting pays for a tuple."""
        client_info = correlation = ""
        for name, value in headers:
            if name == b"user-agent":
                client_info = value[:MAX_HEADER].decode("latin-1")
            elif name == b"x-ms-client-request-id":
                correlation = value[:MAX_HEADER].decode("latin-1")
        identity = {k: claims[k] for k in _CLAIMS if k in claims} if claims else None
        raw = (when, method, path, query_string, pattern, status, identity, rbac, description, client_ip,
               client_info, correlation, duration_ms, base_url, params)
        self.seq += 1
        self.events.append((self.seq, raw))
        if self.delivering and self.writer is not None:
            self.writer.put(self, raw)  # the writer thread builds and serializes the event

    def event(self, raw: tuple) -> dict:
        """The ``AuditEvent`` of a recorded request."""
        (when, method, path, query_string, pattern, status, identity, rbac, description, client_ip,
         client_info, correlation, duration_ms, base_url, params) = raw
        query = query_string.decode("latin-1")
        api_version = ""
        for part in query.split("&"):
            if part.startswith("api-version="):
                api_version = part[len("api-version="):]
        properties: dict = {
            "id": _object_id(base_url, path, params),
            "requestUri": base_url + path + (f"?{query}" if query else ""),
            "httpStatusCode": status,
            "clientInfo": client_info,
            "PoolType": "M-HSM",
            "sku_Family": "B",
            "sku_Name": "Standard_B1",
        }
        if rbac is not None:
            properties["isRbacAuthorized"] = rbac
        return {
            "TenantId": self.tenant_id,
            "time": _time(when),
            "resourceId": self.resource_id.upper(),
            "operationName": operation_name(method, pattern, status),
            "operationVersion": api_version,
            "category": CATEGORY,
            "resultType": "Failure" if status >= 500 else "Success",
            "resultSignature": _REASONS.get(status, str(status)),
            "resultDescription": description or "",
            "durationMs": str(duration_ms),
            "callerIpAddress": client_ip,
            "correlationId": correlation,
            "identity": {"claim": identity} if identity is not None else None,
            "properties": properties,
            "location": self.location,
        }

    def since(self, mark: int, limit: int) -> dict:
        """The events after ``mark`` (oldest first, at most ``limit``) and their count."""
        count = max(0, self.seq - mark)
        kept = [(seq, raw) for seq, raw in self.events if seq > mark][:limit] if count else []
        return {"hsm": self.hsm, "seq": self.seq, "mark": mark, "count": count, "truncated": len(kept) < count,
                "delivering": self.delivering,
                "value": [dict(self.event(raw), _seq=seq) for seq, raw in kept]}


def _object_id(base_url: str, path: str, params: dict) -> str:
    """``properties.id``: the URL of the object the request is about (a key version, an assignment)."""
    name = params.get("name")
    if name and path.lower().startswith(("/keys/", "/deletedkeys/")):
        collection = "deletedkeys" if path.lower().startswith("/deletedkeys/") else "keys"
        version = params.get("version")
        return f"{base_url}/{collection}/{name}" + (f"/{version}" if version else "")
    return base_url + (path.rstrip("/") or "/")


class AuditWriter:
    """Appends buffered event lines to the storage account's ``insights-logs-auditevent`` container."""

    def __init__(self, config, interval: float = FLUSH_SECONDS) -> None:
        self.config = config  # storage.StorageConfig or None (no storage: lines are dropped, and counted)
        self.interval = interval
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one flush at a time, so blobs keep request order
        self._pending: list[tuple[AuditTrail, tuple]] = []  # (trail, raw request facts), in request order
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self.held = False  # test control: the thread does not write (flush() and close() still do)
        self._container = None
        self._known: set[str] = set()
        self.written: collections.Counter = collections.Counter()  # lines per HSM
        self.dropped: collections.Counter = collections.Counter()
        self.last_error: Optional[str] = None

    def put(self, trail: AuditTrail, raw: tuple) -> None:
        with self._lock:
            self._pending.append((trail, raw))
            if len(self._pending) > MAX_PENDING:
                lost = self._pending[: len(self._pending) - MAX_PENDING]
                del self._pending[: len(lost)]
                self.dropped.update(t.hsm for t, _ in lost)
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="hsm-audit-writer", daemon=True)
            self._thread.start()

    def pending(self, hsm: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for t, _ in self._pending if hsm is None or t.hsm == hsm)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            if not self.held:
                self.flush()

    def flush_soon(self) -> None:
        """Wake the writer thread now instead of at its next interval."""
        self._wake.set()

    def close(self) -> None:
        """Write what is buffered and stop the thread."""
        self._closed = True
        self._wake.set()
        self.flush()

    def flush(self) -> int:
        """Append every buffered line now (blocking I/O: call it off the event loop); lines written."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            if self.config is None:
                self.dropped.update(t.hsm for t, _ in batch)
                return 0
            groups: dict[str, list[tuple[AuditTrail, tuple]]] = {}
            for trail, raw in batch:
                groups.setdefault(blob_path(trail.resource_id, raw[0]), []).append((trail, raw))
            done = 0
            failed: list[tuple[AuditTrail, tuple]] = []
            for path, items in groups.items():
                if failed:
                    failed.extend(items)
                    continue
                try:
                    self._append(path, [json.dumps(t.event(raw), separators=(",", ":")) for t, raw in items])
                except Exception as exc:  # storage unreachable or refusing: keep the events, try again
                    self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    failed.extend(items)
                    continue
                self.written.update(t.hsm for t, _ in items)
                done += len(items)
            if failed:
                with self._lock:
                    self._pending[:0] = failed
            return done

    def _client(self):
        if self._container is None:
            from azure.core.exceptions import ResourceExistsError
            from azure.storage.blob import ContainerClient

            config = self.config
            container = ContainerClient(
                config.blob_endpoint, CONTAINER,
                credential={"account_name": config.account_name, "account_key": config.account_key},
                connection_verify=config.ca_bundle or True, retry_total=1, connection_timeout=5, read_timeout=30)
            try:
                container.create_container()
            except ResourceExistsError:
                pass
            self._container = container
        return self._container

    def _append(self, path: str, lines: list[str]) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        blob = self._client().get_blob_client(path)
        for attempt in range(2):
            if path not in self._known:
                try:
                    blob.create_append_blob(match_condition=MatchConditions.IfMissing)
                except ResourceExistsError:
                    pass
                self._known.add(path)
            try:
                for chunk in _chunks(lines):
                    blob.append_block(chunk)
                return
            except ResourceNotFoundError:  # deleted since (or the container was): create it again
                self._known.discard(path)
                self._container = None
                blob = self._client().get_blob_client(path)
                if attempt:
                    raise


def _chunks(lines: list[str]):
    """Newline-terminated lines joined into blocks of at most ``APPEND_LIMIT`` bytes."""
    block: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode() + b"\n"
        if block and size + len(data) > APPEND_LIMIT:
            yield b"".join(block)
            block, size = [], 0
        block.append(data)
        size += len(data)
    if block:
        yield b"".join(block)
