"""Full backup, restore and the storage account that holds them (KeyVaultBackupClient + blobs).

Services call these functions and never see an SDK object. Long operations take callbacks:
`on_started(token)` runs as soon as the HSM has accepted the operation and before any wait,
so the caller can store the continuation token (the status URL, base64) and another worker
can resume polling with it instead of starting a second operation; `on_poll(status)` runs
about every `tick` seconds while waiting (progress, heartbeat).

SAS tokens are made here, for one container, with only the permissions the HSM needs for
the one operation, and a short life; they are handed to the HSM and never returned, logged
or stored.
"""
from __future__ import annotations

import base64
import json
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlsplit

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ResourceExistsError, ResourceNotFoundError,
                                   ServiceRequestError, ServiceResponseError)
from django.conf import settings

from portal.errors import BadInput, HsmUnavailable, NotAllowed, NotFound
from portal.gateway.clients import access_control, backup, blob_service, credential
from portal.gateway.errors import translated_errors

# What the HSM does with the container in each operation (Managed HSM docs ask for "crdw"
# for everything; each operation needs less): a backup creates and writes blobs in a new
# folder; a restore (full, selective, pre-restore) reads and lists one folder.
SAS_PERMISSIONS = {"backup": "cw", "restore": "rl"}
MANIFEST = "manifest.json"

# Data actions the portal's identity needs on an HSM (Managed HSM local RBAC).
DATA_ACTIONS = {
    "backup": "Microsoft.KeyVault/managedHsm/backup/start/action",
    "restore": "Microsoft.KeyVault/managedHsm/restore/start/action",
}


# -- storage ---------------------------------------------------------------------------

@contextmanager
def storage_errors():
    """Turn storage SDK errors into PortalErrors that name the storage account, not an HSM."""
    try:
        yield
    except ResourceNotFoundError as exc:
        raise NotFound("The backup storage account has no such container or folder.") from exc
    except ClientAuthenticationError as exc:
        raise HsmUnavailable("The portal could not authenticate to the backup storage account; "
                             "check its key or the portal's role on it.",
                             code="storage_auth_failed") from exc
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise NotAllowed("The backup storage account refused the portal's request "
                             "(permissions or network rules).") from exc
        raise HsmUnavailable("The backup storage account answered with an error "
                             f"({exc.status_code}); try again shortly.",
                             code="storage_unavailable") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise HsmUnavailable("The backup storage account could not be reached from the "
                             "portal's network.", code="storage_unavailable") from exc


def storage_container_url(container: str) -> str:
    """The container's URL as an HSM is given it (path-style for Azurite)."""
    return f"{settings.AZURE_STORAGE_BLOB_ENDPOINT.rstrip('/')}/{container}"


def storage_folder_url(container: str, folder: str) -> str:
    """A backup folder's URL (what begin_restore takes)."""
    return f"{storage_container_url(container)}/{folder}"


def storage_split_folder_url(folder_url: str) -> tuple[str, str]:
    """(container, folder) of a folder URL under the configured blob endpoint."""
    base = settings.AZURE_STORAGE_BLOB_ENDPOINT.rstrip("/") + "/"
    if not folder_url.startswith(base):
        raise BadInput("That folder is not in the portal's backup storage account.")
    container, _, folder = folder_url[len(base):].strip("/").partition("/")
    if not container or not folder or "/" in folder:
        raise BadInput("A backup folder URL ends with /<container>/<folder>.")
    return container, folder


def storage_ping() -> None:
    """One cheap authenticated storage call; raises a PortalError when it fails."""
    with storage_errors():
        next(iter(blob_service().list_containers(results_per_page=1).by_page()), None)


def storage_container_ensure(container: str) -> bool:
    """Create the container when missing. True if it was created. Idempotent."""
    with storage_errors():
        try:
            blob_service().create_container(container)
        except ResourceExistsError:
            return False
    return True


def storage_sas(container: str, *, purpose: str) -> str:
    """A container SAS for one backup or restore: its permissions only, DR_SAS_MINUTES of life.

    Signed with the account key when one is configured, else with a user delegation key
    obtained with the portal's credential.
    """
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = datetime.now(timezone.utc)
    start, expiry = now - timedelta(minutes=5), now + timedelta(minutes=settings.DR_SAS_MINUTES)
    permission = ContainerSasPermissions.from_string(SAS_PERMISSIONS[purpose])
    service = blob_service()
    with storage_errors():
        if settings.AZURE_STORAGE_ACCOUNT_KEY:
            return generate_container_sas(service.account_name, container,
                                          account_key=settings.AZURE_STORAGE_ACCOUNT_KEY,
                                          permission=permission, start=start, expiry=expiry,
                                          protocol="https")
        delegation = service.get_user_delegation_key(start, expiry)
        return generate_container_sas(service.account_name, container,
                                      user_delegation_key=delegation, permission=permission,
                                      start=start, expiry=expiry, protocol="https")


def storage_folders(container: str) -> list[dict]:
    """The container's backup folders: name, blob count, bytes, last write, manifest (or None).

    One listing of the container (blobs under `<folder>/`); the manifest, when the folder
    has one, is read for key counts and completeness.
    """
    folders: dict[str, dict] = {}
    with storage_errors():
        client = blob_service().get_container_client(container)
        try:
            for blob in client.list_blobs():
                folder, sep, rest = blob.name.partition("/")
                if not sep:
                    continue
                entry = folders.setdefault(folder, {"folder": folder, "blob_count": 0,
                                                    "size_bytes": 0, "last_modified": None,
                                                    "has_manifest": False})
                entry["blob_count"] += 1
                entry["size_bytes"] += blob.size or 0
                if entry["last_modified"] is None or blob.last_modified > entry["last_modified"]:
                    entry["last_modified"] = blob.last_modified
                if rest == MANIFEST:
                    entry["has_manifest"] = True
        except ResourceNotFoundError:
            return []
    for entry in folders.values():
        entry["manifest"] = (storage_manifest(container, entry["folder"])
                             if entry["has_manifest"] else None)
    return sorted(folders.values(), key=lambda f: f["folder"], reverse=True)


def storage_folder(container: str, folder: str) -> dict | None:
    """One folder's listing (as in storage_folders), or None when it holds no blob."""
    found = {"folder": folder, "blob_count": 0, "size_bytes": 0, "last_modified": None,
             "has_manifest": False, "manifest": None}
    with storage_errors():
        client = blob_service().get_container_client(container)
        try:
            for blob in client.list_blobs(name_starts_with=f"{folder}/"):
                found["blob_count"] += 1
                found["size_bytes"] += blob.size or 0
                if found["last_modified"] is None or blob.last_modified > found["last_modified"]:
                    found["last_modified"] = blob.last_modified
                if blob.name == f"{folder}/{MANIFEST}":
                    found["has_manifest"] = True
        except ResourceNotFoundError:
            return None
    if not found["blob_count"]:
        return None
    if found["has_manifest"]:
        found["manifest"] = storage_manifest(container, folder)
    return found


def storage_manifest(container: str, folder: str) -> dict | None:
    """The folder's manifest (JSON written by the HSM last), or None if absent or unreadable."""
    with storage_errors():
        try:
            data = blob_service().get_blob_client(container, f"{folder}/{MANIFEST}") \
                .download_blob(max_concurrency=1).readall()
        except ResourceNotFoundError:
            return None
    try:
        manifest = json.loads(data)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def storage_folder_delete(container: str, folder: str) -> int:
    """Delete every blob of one backup folder; the number deleted. Idempotent."""
    deleted = 0
    with storage_errors():
        client = blob_service().get_container_client(container)
        try:
            names = [b.name for b in client.list_blobs(name_starts_with=f"{folder}/")]
        except ResourceNotFoundError:
            return 0
        for name in names:
            try:
                client.delete_blob(name)
                deleted += 1
            except ResourceNotFoundError:
                pass
    return deleted


# -- the HSM's backup and restore operations ------------------------------------------

def operation_id(token: str) -> str:
    """The HSM's job id inside a continuation token (the status URL's last-but-one part)."""
    url = base64.b64decode(token.encode()).decode("ascii")
    parts = urlsplit(url).path.strip("/").split("/")
    return parts[1] if len(parts) >= 2 else ""


def _auth(container: str, *, purpose: str, use_managed_identity: bool) -> dict:
    if use_managed_identity:
        return {"use_managed_identity": True}
    return {"sas_token": storage_sas(container, purpose=purpose)}


@contextmanager
def _operation_failures(hsm, what: str):
    """An operation the HSM ran and ended Failed (a 2xx poll whose body says so) is the
    HSM's refusal, in its words; anything else is left to translated_errors."""
    try:
        yield
    except HttpResponseError as exc:
        if exc.status_code not in (200, 201, 202, 204):
            raise
        error = getattr(exc, "error", None)
        said = (getattr(error, "message", "") or "").strip()
        raise BadInput(f"HSM {hsm.name} ended the {what} as failed: "
                       f"{said or 'it gave no reason.'}", code="operation_failed") from exc


def _wait(poller, *, on_poll: Callable[[str], None] | None, tick: float):
    while not poller.done():
        poller.wait(timeout=tick)
        if on_poll is not None and not poller.done():
            on_poll(poller.status())
    return poller.result()


def _poll_options() -> dict:
    # The SDK waits Retry-After (or 5 s) between polls; the service sends 10 s.
    return {"_polling_interval": 5}


def backup_run(hsm, *, container: str, use_managed_identity: bool,
               continuation_token: str = "", on_started: Callable[[str], None] | None = None,
               on_poll: Callable[[str], None] | None = None, tick: float = 2.0) -> str:
    """Run (or, with continuation_token, resume waiting on) a full backup; its folder URL.

    Without a token a new backup starts: `on_started(token)` is called before any wait.
    With one, no request starts anything: the status is polled until it ends.
    """
    with translated_errors(hsm=hsm.name):
        client = backup(hsm)
        url = storage_container_url(container)
        if continuation_token:
            poller = client.begin_backup(url, use_managed_identity=use_managed_identity,
                                         continuation_token=continuation_token, **_poll_options())
        else:
            poller = client.begin_backup(url, **_auth(container, purpose="backup",
                                                      use_managed_identity=use_managed_identity),
                                         **_poll_options())
            if on_started is not None:
                on_started(poller.continuation_token())
        with _operation_failures(hsm, "backup"):
            result = _wait(poller, on_poll=on_poll, tick=tick)
    return result.folder_url


def restore_run(hsm, *, folder_url: str, use_managed_identity: bool, key_name: str = "",
                continuation_token: str = "", on_started: Callable[[str], None] | None = None,
                on_poll: Callable[[str], None] | None = None, tick: float = 2.0) -> None:
    """Run (or resume waiting on) a full restore, or a selective restore of `key_name`."""
    container, _folder = storage_split_folder_url(folder_url)
    extra = {"key_name": key_name} if key_name else {}
    with translated_errors(hsm=hsm.name):
        client = backup(hsm)
        if continuation_token:
            poller = client.begin_restore(folder_url, use_managed_identity=use_managed_identity,
                                          continuation_token=continuation_token, **extra,
                                          **_poll_options())
        else:
            poller = client.begin_restore(folder_url, **_auth(
                container, purpose="restore", use_managed_identity=use_managed_identity),
                **extra, **_poll_options())
            if on_started is not None:
                on_started(poller.continuation_token())
        with _operation_failures(hsm, "restore"):
            _wait(poller, on_poll=on_poll, tick=tick)


def pre_backup_check(hsm, *, container: str, use_managed_identity: bool) -> None:
    """The HSM's own pre-backup check (can it write to the container?); raises if not."""
    with translated_errors(hsm=hsm.name):
        poller = backup(hsm).begin_pre_backup(
            storage_container_url(container),
            **_auth(container, purpose="backup", use_managed_identity=use_managed_identity),
            **_poll_options())
        with _operation_failures(hsm, "pre-backup check"):
            poller.result()


def pre_restore_check(hsm, *, folder_url: str, use_managed_identity: bool) -> None:
    """The HSM's own pre-restore check of a folder (readable, same security domain)."""
    container, _folder = storage_split_folder_url(folder_url)
    with translated_errors(hsm=hsm.name):
        poller = backup(hsm).begin_pre_restore(
            folder_url, **_auth(container, purpose="restore",
                                use_managed_identity=use_managed_identity),
            **_poll_options())
        with _operation_failures(hsm, "pre-restore check"):
            poller.result()


def portal_principal_id() -> str:
    """The object id of the portal's own identity (read from its access token's claims)."""
    token = credential().get_token("https://managedhsm.azure.net/.default").token
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return ""
    return str(claims.get("oid", ""))


def portal_may(hsm, *, purpose: str) -> bool:
    """Whether the portal's identity holds a role at scope / on this HSM allowing `purpose`.

    Reads role assignments and definitions (local RBAC); a role with the data action or a
    matching wildcard counts.
    """
    wanted = DATA_ACTIONS[purpose]
    with translated_errors(hsm=hsm.name):
        principal = portal_principal_id()
        client = access_control(hsm)
        assigned = {a.properties.role_definition_id
                    for a in client.list_role_assignments("/")
                    if a.properties.principal_id == principal}
        if not assigned:
            return False
        for definition in client.list_role_definitions("/"):
            if definition.id not in assigned:
                continue
            for permission in definition.permissions:
                allowed = [a.lower() for a in permission.data_actions or []]
                denied = [a.lower() for a in permission.not_data_actions or []]
                if _matches(wanted, allowed) and not _matches(wanted, denied):
                    return True
    return False


def _matches(action: str, patterns: list[str]) -> bool:
    action = action.lower()
    for pattern in patterns:
        if pattern == action or (pattern.endswith("*") and action.startswith(pattern[:-1])):
            return True
    return False


def hsm_snapshot(hsm, *, on_progress: Callable[[int], None] | None = None) -> dict:
    """What a restore must reproduce: each key's versions and state, and role assignments.

    {"keys": {name: {"versions": [ids, sorted], "enabled": bool, "tags": {...}}},
    "role_assignments": [[name, scope, principal, role], ...] sorted}. Role definitions are
    compared by their GUID (the same built-in role on two HSMs). `on_progress(keys read)`
    runs every 50 keys (a long read of a large HSM still reports).
    """
    from portal.gateway.clients import keys

    snapshot: dict = {"keys": {}, "role_assignments": []}
    with translated_errors(hsm=hsm.name):
        client = keys(hsm)
        for props in client.list_properties_of_keys():
            versions = sorted(v.version for v in client.list_properties_of_key_versions(props.name))
            snapshot["keys"][props.name] = {"versions": versions, "enabled": bool(props.enabled),
                                            "tags": dict(props.tags or {})}
            if on_progress is not None and len(snapshot["keys"]) % 50 == 0:
                on_progress(len(snapshot["keys"]))
        for assignment in access_control(hsm).list_role_assignments("/"):
            p = assignment.properties
            snapshot["role_assignments"].append(
                [assignment.name, p.scope, p.principal_id,
                 (p.role_definition_id or "").rsplit("/", 1)[-1]])
    snapshot["role_assignments"].sort()
    return snapshot
