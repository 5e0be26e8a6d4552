"""Full backup, full restore and selective key restore of one HSM, as the service runs them.

Routes (``KeyVaultBackupClient``, the Azure CLI), each a long-running operation:

- ``POST /backup`` and ``POST /prebackup`` (``backup/start/action``), polled at
  ``GET /backup/{jobId}/pending`` (``backup/status/action``);
- ``PUT /restore``, ``PUT /prerestore`` and ``PUT /keys/{name}/restore``
  (``restore/start/action``), polled at ``GET /restore/{jobId}/pending``
  (``restore/status/action``).

A start answers **202** with ``azure-asyncoperation: <base>/<backup|restore>/<jobId>/pending``,
``Retry-After`` (``serve --lro-retry-after``; the service sends 10, the default here is 1 so
that SDK pollers and tests do not idle), ``api-supported-versions``, ``mise-correlation-id``
and ``Server: Kestrel``, and the status body the recordings show: backups
``{"status","statusDetails","error","startTime","endTime","jobId","azureStorageBlobContainerUri"}``
(initial body in that order, polls sorted), restores without ``azureStorageBlobContainerUri``.
Polls need no ``api-version``. Job ids are 32 lower-case hex characters and stay valid for
the emulator's lifetime (jobs persist in the store; one found unfinished at start-up is
failed, since its worker is gone).

The work runs off the event loop: the HSM's state is snapshotted on the loop (consistent),
then encrypted and written to blob storage in a thread. The folder is
``<container>/mhsm-<hsm>-<YYYYMMDDHHMMSSff>`` (UTC, hundredths: the job's start), and holds:

- ``keys-NNNNN.bin``: up to ``KEYS_PER_BLOB`` keys each (every version's material and
  attributes, tags, rotation policy, soft-deletion state), and ``rbac.bin`` (custom role
  definitions, role assignments, settings); each AES-256-GCM under a key derived from the
  HSM's security domain, bound to its blob name, over zlib-compressed JSON;
- ``manifest.json``, written last (so a folder without it is incomplete): format, source HSM,
  security-domain id, job id, times, counts (``key_count`` ...), ``complete: true`` and
  each blob's size and SHA-256. It holds no secret.

Authorisation: a SAS token (``token``) or the HSM's user-assigned managed identity
(``useManagedIdentity: true``; set through Resource Manager, see ``arm.py``), for which the
emulator gets a storage token from its authority (issuer ``https://sts.windows.net/...``,
audience ``https://storage.azure.com``, as Azurite's OAuth mode wants). Storage refusals
(bad or expired SAS, missing permission, missing container or folder, unreachable account)
and a missing identity fail the job (``status: Failed``, ``error.code: BadRequest``, the
storage error code as ``innererror``), as the service reports them through the poller.

Rules (``docs/emulator.md`` says which are recorded and which are choices):

- one backup or restore operation at a time per HSM: another start is 409 ``Conflict``;
- pre-backup checks the container is reachable with the credential and, for a SAS, that
  it is unexpired and grants create and write; pre-restore checks the folder is a complete
  backup (manifest), readable, from the same security domain; both write nothing;
- a full restore needs a full backup of the *target* HSM completed within the last
  ``--restore-backup-window`` seconds (1800): otherwise the job fails with ``BadRequest``;
  source and target must share a security domain; while it runs the HSM is in restore mode
  and refuses every data-plane call except status polls with 409 ``Conflict`` (inner code
  ``RestoreInProgress``); it then replaces every key, role definition, role assignment and
  setting with the backup's;
- a selective restore restores one key with all its versions; if a key of that name
  exists (live or soft-deleted) nothing is overwritten and the job still succeeds with
  ``statusDetails`` "Number of successful key versions restored: 0, Number of key versions
  could not overwrite: N" (recorded); a name the backup lacks fails with ``KeyNotFound``.

Test controls (``/_emulator/backup``, loopback + control secret): ``GET`` lists the jobs
and whether a restore runs; ``PATCH {"min_job_ms": n}`` keeps each job in progress at least
``n`` ms (to observe restore mode); ``POST /_emulator/backup/age {"seconds": n}`` moves
completed backups ``n`` seconds into the past (the 30-minute rule without waiting).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import HsmError, bad_parameter
from .routing import ROOT_SCOPES, Call, Reply, Route
from .state import Store
from .storage import ContainerRef, StorageAccess, StorageError, storage_error

MANIFEST = "manifest.json"
FORMAT = "hsm_emulator-full-backup/1"
KEYS_PER_BLOB = 500
RESTORE_BACKUP_WINDOW = 1800
SUPPORTED_VERSIONS = "20180927, 20211111"
MAX_JOB_HOLD_MS = 600_000
_KIND_FAMILY = {"backup": "backup", "prebackup": "backup", "restore": "restore", "prerestore": "restore",
                "selective": "restore"}


@dataclass
class Job:
    """One backup or restore operation and its status."""

    id: str
    kind: str  # backup | prebackup | restore | prerestore | selective
    start: int
    status: str = "InProgress"
    end: Optional[int] = None
    error: Optional[dict] = None
    details: Optional[str] = None
    folder_uri: Optional[str] = None
    completed_at: Optional[float] = None  # full backups: when they finished (the 30-minute rule)
    folder: Optional[str] = None
    key_name: Optional[str] = None
    elapsed_ms: Optional[int] = None  # the work's duration (test controls, benchmarks)

    def body(self) -> dict:
        """The status body (sorted members on polls)."""
        body = {"status": self.status, "statusDetails": self.details, "error": self.error,
                "startTime": self.start, "endTime": self.end, "jobId": self.id}
        if _KIND_FAMILY[self.kind] == "backup":
            body["azureStorageBlobContainerUri"] = self.folder_uri
        return body

    def describe(self) -> dict:
        """The job for the test controls (no secret: the request's token is never kept)."""
        return asdict(self)


class JobFailed(Exception):
    """Ends a job with ``status: Failed`` and this error."""

    def __init__(self, code: str, message: str, inner: Optional[str] = None) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message, "innererror": {"code": inner} if inner else None}


@dataclass
class _Auth:
    """How a job reaches storage: SAS token or managed identity (never persisted)."""

    ref: ContainerRef
    sas_token: Optional[str] = None
    use_managed_identity: bool = False
    sas_fields: dict = field(default_factory=dict)


class FullBackup:
    """Backup and restore operations of one HSM (``app.HsmApp`` owns one)."""

    def __init__(self, hsm, store: Store) -> None:
        self._hsm = hsm  # HsmApp: props, keys, rbac, settings, security_domain_id
        self._store = store
        self._scope = f"hsm:{hsm.props.name}"
        self.storage = StorageAccess(None)
        # Returns an azure-core TokenCredential for the HSM's managed identity, or None
        # when it has none (set by the server from Resource Manager's view of the HSM).
        self.identity_credential: Callable[[], Any] = lambda: None
        self.retry_after = 1
        self.restore_window = RESTORE_BACKUP_WINDOW
        self.min_job_ms = 0
        self.jobs: dict[str, Job] = {}
        self.active: Optional[Job] = None
        self.restoring = False
        self._tasks: set[asyncio.Task] = set()
        for doc in store.load(self._scope, "backup_job").values():
            job = Job(**doc)
            if job.status == "InProgress":
                job.status, job.end = "Failed", job.end or int(time.time())
                job.error = {"code": "InternalError", "message": "The operation was interrupted by a restart.",
                             "innererror": None}
                self._save(job)
            self.jobs[job.id] = job
        self._status_routes: tuple[Route, ...] = ()

    # -- routes and gate --------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The backup/restore routes; they go before the key routes (``/keys/{name}/restore``)."""
        status = (
            Route("GET", r"^/backup/(?P<job>[0-9a-zA-Z-]+)/pending/?$", self._status("backup"), "backup/status/action",
                  api_version=False),
            Route("GET", r"^/restore/(?P<job>[0-9a-zA-Z-]+)/pending/?$", self._status("restore"),
                  "restore/status/action", api_version=False),
        )
        self._status_routes = status
        return [
            Route("POST", r"^/backup/?$", self._start_backup, "backup/start/action"),
            Route("POST", r"^/prebackup/?$", self._start_prebackup, "backup/start/action"),
            Route("PUT", r"^/restore/?$", self._start_restore, "restore/start/action"),
            Route("PUT", r"^/prerestore/?$", self._start_prerestore, "restore/start/action"),
            Route("PUT", r"^/keys/(?P<name>[^/]+)/restore/?$", self._start_selective, "restore/start/action",
                  lambda params: ROOT_SCOPES),
            *status,
        ]

    def gate(self, route: Optional[Route]) -> None:
        """409 for every data-plane call but status polls while a full restore runs."""
        if self.restoring and route not in self._status_routes:
            raise HsmError(409, "Conflict", "The managed HSM is being restored from a full backup; data-plane "
                                            "operations are refused until the restore completes.",
                           inner="RestoreInProgress")

    # -- state ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every job (the HSM is re-provisioned as new: it has no backup history)."""
        for job_id in list(self.jobs):
            self._store.delete(self._scope, "backup_job", job_id)
        self.jobs.clear()
        self.active = None
        self.restoring = False

    def _save(self, job: Job) -> None:
        self._store.put(self._scope, "backup_job", job.id, job.describe())

    def last_full_backup(self) -> Optional[float]:
        """When the latest successful full backup of this HSM completed (epoch seconds), or None."""
        times = [j.completed_at for j in self.jobs.values()
                 if j.kind == "backup" and j.status == "Succeeded" and j.completed_at]
        return max(times) if times else None

    # -- starting ---------------------------------------------------------------------

    def _begin(self, kind: str, call: Call, work) -> Reply:
        if self.active is not None:
            raise HsmError(409, "Conflict", f"A backup or restore operation (job {self.active.id}) is already in "
                                            "progress on this managed HSM; only one may run at a time.")
        now = time.time()
        job = Job(uuid.uuid4().hex, kind, int(now))
        self.jobs[job.id] = job
        self.active = job
        self._save(job)
        task = asyncio.get_running_loop().create_task(self._run(job, now, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        family = _KIND_FAMILY[kind]
        headers = {
            "azure-asyncoperation": f"{call.base_url}/{family}/{job.id}/pending",
            "Retry-After": str(self.retry_after),
            "api-supported-versions": SUPPORTED_VERSIONS,
            "mise-correlation-id": str(uuid.uuid4()),
            "Server": "Kestrel",
        }
        # The recorded initial body keeps the service's member order (polls are sorted).
        return Reply(202, json.dumps(job.body(), separators=(",", ":")).encode(), headers)

    async def _run(self, job: Job, started: float, work) -> None:
        status, error, details = "Succeeded", None, None
        try:
            result = await work(job)
            if isinstance(result, str):
                details = result
        except JobFailed as failed:
            status, error = "Failed", failed.error
        except Exception as exc:  # noqa: BLE001 - a job never dies silently; its status tells
            status = "Failed"
            error = {"code": "InternalError", "message": f"The operation failed: {type(exc).__name__}.",
                     "innererror": None}
        worked = time.time() - started
        hold = self.min_job_ms / 1000 - worked
        if hold > 0:
            await asyncio.sleep(hold)
        if job.kind == "restore":
            self.restoring = False
        job.status, job.error, job.details = status, error, details
        job.elapsed_ms = int(worked * 1000)
        job.end = int(time.time())
        if job.kind == "backup" and job.status == "Succeeded":
            job.completed_at = time.time()
        self.active = None
        self._save(job)

    def _auth(self, params: Any, ref: Optional[ContainerRef] = None) -> _Auth:
        """The storage target and credential of a request body (400 when malformed)."""
        if not isinstance(params, dict):
            raise bad_parameter("The storage parameters are missing: 'storageResourceUri' and a SAS 'token' or "
                                "'useManagedIdentity'.")
        if ref is None:
            try:
                ref = self.storage.parse(params.get("storageResourceUri"))
            except ValueError as exc:
                raise bad_parameter(str(exc)) from None
        use_mi = params.get("useManagedIdentity")
        if use_mi is not None and not isinstance(use_mi, bool):
            raise bad_parameter("The parameter 'useManagedIdentity' must be a boolean.")
        token = params.get("token")
        if use_mi:
            return _Auth(ref, use_managed_identity=True)
        if not isinstance(token, str) or not token.strip("?"):
            raise bad_parameter("A SAS 'token' is required unless 'useManagedIdentity' is true.")
        token = token.lstrip("?")
        return _Auth(ref, sas_token=token, sas_fields=dict(parse_qsl(token, keep_blank_values=True)))

    def _container(self, auth: _Auth):
        if auth.use_managed_identity:
            credential = self.identity_credential()
            if credential is None:
                raise JobFailed("BadRequest", "useManagedIdentity is true, but no user-assigned managed identity "
                                              "is assigned to this managed HSM; assign one through Resource Manager "
                                              "(az keyvault update-hsm --mi-user-assigned).",
                                "ManagedIdentityNotFound")
            return self.storage.container(auth.ref, credential=credential)
        return self.storage.container(auth.ref, sas_token=auth.sas_token)

    async def _start_backup(self, call: Call) -> Reply:
        auth = self._auth(call.json())
        return self._begin("backup", call, lambda job: self._backup(job, auth))

    async def _start_prebackup(self, call: Call) -> Reply:
        auth = self._auth(call.json())
        return self._begin("prebackup", call, lambda job: self._prebackup(job, auth))

    def _restore_body(self, call: Call, folder_member: str) -> tuple[_Auth, str]:
        body = call.json()
        params = body.get("sasTokenParameters")
        folder = body.get(folder_member)
        if not isinstance(folder, str) or not folder.strip("/"):
            raise bad_parameter(f"The parameter '{folder_member}' (the backup folder) is required.")
        uri = params.get("storageResourceUri") if isinstance(params, dict) else None
        try:
            ref, folder = self.storage.parse_folder(uri, folder)
        except ValueError as exc:
            raise bad_parameter(str(exc)) from None
        auth = self._auth(params, ref)
        return auth, folder

    async def _start_restore(self, call: Call) -> Reply:
        auth, folder = self._restore_body(call, "folderToRestore")

        async def work(job: Job):
            job.folder = folder
            return await self._restore(auth, folder)
        return self._begin("restore", call, work)

    async def _start_prerestore(self, call: Call) -> Reply:
        auth, folder = self._restore_body(call, "folderToRestore")
        return self._begin("prerestore", call, lambda job: self._prerestore(auth, folder))

    async def _start_selective(self, call: Call) -> Reply:
        name = call.params["name"]
        if not _valid_key_name(name):
            raise bad_parameter(f"The request URI contains an invalid name: {name}")
        auth, folder = self._restore_body(call, "folder")

        async def work(job: Job):
            job.folder, job.key_name = folder, name
            return await self._selective(auth, folder, name)
        return self._begin("selective", call, work)

    # -- status -----------------------------------------------------------------------

    def _status(self, family: str):
        async def handler(call: Call) -> Reply:
            job = self.jobs.get(call.params["job"].lower())
            if job is None or _KIND_FAMILY[job.kind] != family:
                raise HsmError(404, "NotFound", f"The job {call.params['job']} was not found.")
            headers = {"api-supported-versions": SUPPORTED_VERSIONS, "mise-correlation-id": str(uuid.uuid4()),
                       "Server": "Kestrel"}
            if job.status == "InProgress":
                headers["Retry-After"] = str(self.retry_after)
            return Reply(200, job.body(), headers)
        return handler

    # -- the work -----------------------------------------------------------------------

    def _cipher(self) -> AESGCM:
        return AESGCM(self._hsm.keys.domain.derive("full-backup-protection-key", 32))

    async def _backup(self, job: Job, auth: _Auth) -> None:
        # Snapshot on the loop: nothing changes the HSM between these lines.
        keys = self._hsm.keys.export_entries()
        rbac = self._hsm.rbac.export_state()
        settings = self._hsm.settings.export_state()
        stamp = datetime.datetime.fromtimestamp(job.start, datetime.timezone.utc)
        hundredths = int((time.time() % 1) * 100)
        folder = f"mhsm-{self._hsm.props.name}-{stamp:%Y%m%d%H%M%S}{hundredths:02d}"
        domain_id = self._hsm.security_domain_id
        cipher = self._cipher()

        def write() -> None:
            container = self._container(auth)
            _check_sas(auth, "cw", "create and write")
            blobs: list[tuple[str, bytes]] = []
            for index in range(0, max(len(keys), 1), KEYS_PER_BLOB):
                chunk = keys[index:index + KEYS_PER_BLOB]
                name = f"keys-{index // KEYS_PER_BLOB:05d}.bin"
                blobs.append((name, _seal(cipher, name, {"keys": chunk})))
            blobs.append(("rbac.bin", _seal(cipher, "rbac.bin", {"rbac": rbac, "settings": settings})))
            try:
                for name, data in blobs:
                    container.upload_blob(f"{folder}/{name}", data, overwrite=True)
                manifest = {
                    "format": FORMAT, "hsm": self._hsm.props.name, "hsm_uri": self._hsm.props.base_url,
                    "security_domain_id": domain_id, "job_id": job.id, "folder": folder,
                    "started": job.start, "finished": int(time.time()), "complete": True,
                    "key_count": sum(1 for k in keys if k["deleted_date"] is None),
                    "deleted_key_count": sum(1 for k in keys if k["deleted_date"] is not None),
                    "version_count": sum(len(k["versions"]) for k in keys),
                    "role_assignment_count": len(rbac["assignments"]),
                    "role_definition_count": len(rbac["definitions"]),
                    "blobs": [{"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                              for name, data in blobs],
                }
                container.upload_blob(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=1).encode(),
                                      overwrite=True)
            except Exception as exc:  # noqa: BLE001
                raise _storage_failure(exc) from None

        await asyncio.to_thread(write)
        job.folder = folder
        job.folder_uri = f"{auth.ref.url}/{folder}"

    async def _prebackup(self, job: Job, auth: _Auth) -> None:
        def check() -> None:
            container = self._container(auth)
            _check_sas(auth, "cw", "create and write")
            # A write that leaves nothing to see: one uncommitted block (never listed, and
            # discarded by the storage service), refused as a backup's writes would be
            # (missing container, bad signature, no write permission).
            probe = container.get_blob_client(f"mhsm-{self._hsm.props.name}-prebackup-{job.id}")
            try:
                probe.stage_block("cHJvYmU=", b"\0")
            except Exception as exc:  # noqa: BLE001
                raise _storage_failure(exc) from None
        await asyncio.to_thread(check)

    def _read_folder(self, auth: _Auth, folder: str, want_keys: bool = True) -> dict:
        """Manifest, keys and RBAC of a backup folder, verified and decrypted (worker thread)."""
        container = self._container(auth)
        _check_sas(auth, "r", "read")
        try:
            raw = container.download_blob(f"{folder}/{MANIFEST}").readall()
        except Exception as exc:  # noqa: BLE001
            failure = _storage_failure(exc)
            if failure.error["innererror"]["code"] == "BlobNotFound":
                raise JobFailed("BadRequest", f"The folder '{folder}' of container '{auth.ref.container}' holds no "
                                              "complete full backup (no manifest).", "FolderNotFound") from None
            raise failure from None
        try:
            manifest = json.loads(raw)
            if manifest.get("format") != FORMAT or not manifest.get("complete"):
                raise ValueError("not a complete backup")
        except (ValueError, AttributeError):
            raise JobFailed("BadRequest", f"The folder '{folder}' does not hold a full backup of a managed HSM.",
                            "InvalidBackup") from None
        if manifest.get("security_domain_id") != self._hsm.security_domain_id:
            raise JobFailed("BadRequest", "The backup was taken from a managed HSM in a different security domain; "
                                          "a backup can only be restored into an HSM that shares its security "
                                          "domain.", "SecurityDomainMismatch")
        cipher = self._cipher()
        content: dict = {"manifest": manifest, "keys": [], "rbac": None, "settings": None}
        for blob in manifest["blobs"]:
            if not want_keys and blob["name"].startswith("keys-"):
                continue
            try:
                data = container.download_blob(f"{folder}/{blob['name']}", max_concurrency=2).readall()
            except Exception as exc:  # noqa: BLE001
                raise _storage_failure(exc) from None
            if hashlib.sha256(data).hexdigest() != blob["sha256"]:
                raise JobFailed("BadRequest", f"The backup blob '{blob['name']}' is corrupt.", "InvalidBackup")
            try:
                part = _open(cipher, blob["name"], data)
            except Exception:  # noqa: BLE001 - tampered or foreign: one answer
                raise JobFailed("BadRequest", f"The backup blob '{blob['name']}' cannot be decrypted with this "
                                              "HSM's security domain.", "SecurityDomainMismatch") from None
            content["keys"].extend(part.get("keys", []))
            if "rbac" in part:
                content["rbac"], content["settings"] = part["rbac"], part["settings"]
        return content

    async def _prerestore(self, auth: _Auth, folder: str) -> None:
        await asyncio.to_thread(self._read_folder, auth, folder, False)

    async def _restore(self, auth: _Auth, folder: str) -> None:
        last = self.last_full_backup()
        if last is None or time.time() - last > self.restore_window:
            when = ("no full backup of it has completed" if last is None else
                    "its last full backup completed at "
                    f"{datetime.datetime.fromtimestamp(last, datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
            raise JobFailed("BadRequest", f"A full restore requires a full backup of the target managed HSM "
                                          f"completed within the last {self.restore_window // 60} minutes, and "
                                          f"{when}. Take a full backup of this HSM, then restore.",
                            "NoRecentBackup")
        self.restoring = True
        keys = self._hsm.keys

        def load():
            content = self._read_folder(auth, folder)
            entries = keys.entries_from_export(content["keys"])
            return content, entries, (keys.sealed_docs(entries) if self._store.durable else None)

        content, entries, sealed = await asyncio.to_thread(load)
        keys.replace_all(entries, sealed)
        if content["rbac"] is not None:
            self._hsm.rbac.replace_state(content["rbac"])
        if content["settings"] is not None:
            self._hsm.settings.replace_state(content["settings"])
        keys.invalidate()

    async def _selective(self, auth: _Auth, folder: str, name: str) -> Optional[str]:
        keys = self._hsm.keys

        def load():
            content = self._read_folder(auth, folder)
            found = [doc for doc in content["keys"] if doc["name"].lower() == name.lower()]
            return keys.entries_from_export(found)

        entries = await asyncio.to_thread(load)
        if not entries:
            raise JobFailed("KeyNotFound", f"The key '{name}' is not in the backup folder '{folder}'.")
        (entry,) = entries
        if keys.has_name(entry.name):
            return (f"Number of successful key versions restored: 0, Number of key versions could not overwrite: "
                    f"{len(entry.versions)}")
        keys.add_restored(entry)
        return None

    # -- test controls ------------------------------------------------------------------

    def control(self, method: str, path: str, body: bytes) -> Optional[tuple[int, dict]]:
        """Serve ``/_emulator/backup*`` (already authorised), or None for another path."""
        if path == "/_emulator/backup" and method == "GET":
            return 200, {"jobs": [j.describe() for j in self.jobs.values()], "restoring": self.restoring,
                         "last_full_backup": self.last_full_backup()}
        if path == "/_emulator/backup" and method == "PATCH":
            spec = _json_object(body)
            value = spec.get("min_job_ms", self.min_job_ms)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_JOB_HOLD_MS:
                return 400, {"error": {"code": "BadParameter",
                                       "message": f"min_job_ms must be an integer from 0 to {MAX_JOB_HOLD_MS}"}}
            self.min_job_ms = value
            return 200, {"min_job_ms": self.min_job_ms}
        if path == "/_emulator/backup/age" and method == "POST":
            seconds = _json_object(body).get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 10 * 365 * 86400:
                return 400, {"error": {"code": "BadParameter", "message": "seconds must be a non-negative integer"}}
            for job in self.jobs.values():
                if job.completed_at:
                    job.completed_at -= seconds
                    self._save(job)
            return 200, {"last_full_backup": self.last_full_backup()}
        return None


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _valid_key_name(name: str) -> bool:
    return 1 <= len(name) <= 127 and all(c.isascii() and (c.isalnum() or c == "-") for c in name)


def _seal(cipher: AESGCM, name: str, content: dict) -> bytes:
    nonce = os.urandom(12)
    return nonce + cipher.encrypt(nonce, zlib.compress(json.dumps(content).encode(), 1), name.encode())


def _open(cipher: AESGCM, name: str, data: bytes) -> dict:
    return json.loads(zlib.decompress(cipher.decrypt(data[:12], data[12:], name.encode())))


def _check_sas(auth: _Auth, needed: str, words: str) -> None:
    """Fail when a SAS is expired or lacks a permission (storage would refuse it mid-way)."""
    if auth.use_managed_identity:
        return
    fields = auth.sas_fields
    if "sig" not in fields:
        raise JobFailed("BadRequest", "The SAS token is not valid: it has no signature.", "InvalidSasToken")
    expiry = fields.get("se")
    if expiry:
        try:
            when = datetime.datetime.fromisoformat(expiry.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise JobFailed("BadRequest", "The SAS token is not valid: its expiry is malformed.",
                            "InvalidSasToken") from None
        if when <= datetime.datetime.now(datetime.timezone.utc):
            raise JobFailed("BadRequest", f"The SAS token expired at {expiry}.", "SasTokenExpired")
    permissions = fields.get("sp", "")
    missing = [p for p in needed if p not in permissions]
    if missing:
        raise JobFailed("BadRequest", f"The SAS token does not grant {words} permissions on the container "
                                      f"(it grants '{permissions}'; missing '{''.join(missing)}').",
                        "AuthorizationPermissionMismatch")


def _storage_failure(exc: Exception) -> JobFailed:
    if isinstance(exc, JobFailed):
        return exc
    error: StorageError = storage_error(exc)
    hints = {
        "ContainerNotFound": "The blob container does not exist; create it before the backup.",
        "AuthorizationFailure": "The storage account refused the credential (SAS signature, expiry or scope).",
        "AuthenticationFailed": "The storage account refused the credential.",
        "AuthorizationPermissionMismatch": "The credential lacks a permission this operation needs.",
        "StorageUnreachable": "The storage account could not be reached.",
    }
    return JobFailed("BadRequest", f"{hints.get(error.code, error.message)} ({error.code})", error.code)
