"""Directory look-ups through Microsoft Graph: who is behind an object id, and principal search.

Role assignments on an HSM name principals by object id only; pages show the display name
beside it. `principals_by_ids` names ids with `directoryObjects/getByIds` (at most 1,000 ids
a call, as Graph allows), caching answers for `CACHE_SECONDS` in this process; it never
fails the page: when the directory cannot answer, every id comes back unresolved
(`resolved: False`, no name) and the caller shows the bare id. `principal_search` finds
users and service principals by name, user principal name, application id or object id for
pickers, and raises a PortalError sentence when the directory cannot answer (the user asked).

The pipeline (`clients.graph_pipeline()`) carries the portal's own credential; the Graph
URL is `AZURE_GRAPH_URL` (the emulator's `"graph"` in `make run` and tests).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Iterable

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ServiceRequestError, ServiceResponseError)
from azure.core.rest import HttpRequest

from portal.errors import BadInput, PortalError, Throttled
from portal.gateway.clients import graph_pipeline

logger = logging.getLogger(__name__)

BATCH = 1000           # ids per getByIds call (Graph's limit)
CACHE_SECONDS = 120    # how long a name (or "no such object") is reused
MAX_CACHE = 20000
SEARCH_MAX_LENGTH = 120
SEARCH_LIMIT = 25      # results per kind
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_KINDS = {"#microsoft.graph.user": "user", "#microsoft.graph.servicePrincipal": "service_principal",
          "#microsoft.graph.group": "group"}
_USER_FIELDS = "id,displayName,userPrincipalName,mail"
_SP_FIELDS = "id,displayName,appId,servicePrincipalType"

_lock = threading.Lock()
_cache: dict[str, tuple[float, dict | None]] = {}  # id -> (expires, principal or None = not found)


class DirectoryUnavailable(PortalError):
    status, code = 503, "directory_unavailable"


def clear_cache() -> None:
    """Forget cached names (tests; after the directory changed)."""
    with _lock:
        _cache.clear()


def unresolved(object_id: str) -> dict:
    """The entry for an id the directory did not name (unknown, or the directory failed)."""
    return {"id": object_id, "display_name": "", "kind": "unknown", "upn": "", "app_id": "",
            "resolved": False}


def _principal(item: dict) -> dict:
    kind = _KINDS.get(item.get("@odata.type", ""), "")
    if not kind:
        kind = "user" if "userPrincipalName" in item else \
            "service_principal" if "appId" in item else "group"
    return {"id": item["id"], "display_name": item.get("displayName") or "", "kind": kind,
            "upn": item.get("userPrincipalName") or "", "app_id": item.get("appId") or "",
            "resolved": True}


def _send(request: HttpRequest) -> dict:
    """One Graph call (`request.url` a path under the Graph URL); its JSON body, or the
    PortalError that says why not."""
    try:
        client = graph_pipeline()
        request.url = client.format_url(request.url)
        response = client.send_request(request)
        response.raise_for_status()
        return response.json()
    except ClientAuthenticationError as exc:
        raise DirectoryUnavailable("The portal could not get a token for the directory (Microsoft "
                                   "Graph); check its credential settings.") from exc
    except HttpResponseError as exc:
        raise _http_error(exc.status_code, exc) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise DirectoryUnavailable("The directory (Microsoft Graph) could not be reached; try again "
                                   "in a minute.") from exc
    except ValueError as exc:  # not JSON
        raise DirectoryUnavailable("The directory (Microsoft Graph) sent an answer the portal could "
                                   "not read.") from exc


def _http_error(status: int | None, exc: HttpResponseError) -> PortalError:
    if status in (401, 403):
        return DirectoryUnavailable("The directory (Microsoft Graph) refused the portal's identity: "
                                    "grant it Directory.Read.All (or User.Read.All and "
                                    "Application.Read.All).", code="directory_forbidden")
    if status == 429:
        return Throttled("The directory (Microsoft Graph) is busy; try again in a minute.")
    if status == 400:
        return BadInput("The directory (Microsoft Graph) did not accept that search; use letters, "
                        "digits, spaces and . _ @ - only.", code="directory_bad_query")
    return DirectoryUnavailable(f"The directory (Microsoft Graph) answered with an error "
                                f"({status}); try again in a minute.")


def principals_by_ids(ids: Iterable[str]) -> dict[str, dict]:
    """Every id asked for -> {id, display_name, kind, upn, app_id, resolved}.

    `kind` is `user`, `service_principal`, `group` or `unknown`. Ids that are not object ids
    (GUIDs), ids the directory does not know, and all ids when the directory fails come back
    unresolved; a failure is logged, never raised.
    """
    wanted = list(dict.fromkeys(i for i in ids if i))
    result: dict[str, dict] = {}
    now = time.monotonic()
    to_fetch: list[str] = []
    with _lock:
        for object_id in wanted:
            cached = _cache.get(object_id.lower())
            if cached is not None and cached[0] > now:
                result[object_id] = dict(cached[1]) if cached[1] else unresolved(object_id)
            elif _GUID.match(object_id):
                to_fetch.append(object_id)
            else:
                result[object_id] = unresolved(object_id)
    for start in range(0, len(to_fetch), BATCH):
        batch = to_fetch[start:start + BATCH]
        try:
            body = _send(HttpRequest("POST", "/v1.0/directoryObjects/getByIds", json={
                "ids": batch, "types": ["user", "group", "servicePrincipal"]}))
        except PortalError as exc:
            logger.warning("Directory look-up of %d ids failed: %s", len(batch), exc.message)
            for object_id in to_fetch[start:]:
                result[object_id] = unresolved(object_id)
            break
        found = {item["id"].lower(): _principal(item) for item in body.get("value", [])
                 if isinstance(item, dict) and item.get("id")}
        expires = time.monotonic() + CACHE_SECONDS
        with _lock:
            if len(_cache) > MAX_CACHE:
                _cache.clear()
            for object_id in batch:
                principal = found.get(object_id.lower())
                _cache[object_id.lower()] = (expires, principal)
                result[object_id] = {**principal, "id": object_id} if principal else unresolved(object_id)
    return {object_id: result[object_id] for object_id in wanted}


def principal_search(text: str, *, limit: int = SEARCH_LIMIT) -> list[dict]:
    """Users and service principals matching `text`: an object id or application id exactly,
    otherwise the start of words in the display name (and a user's user principal name).

    Raises BadInput for empty, over-long or unsafe text, and a PortalError when the directory
    cannot answer.
    """
    text = (text or "").strip()
    if not text:
        raise BadInput("Type part of a name, a user principal name or an object id to search "
                       "the directory.", code="directory_bad_query")
    if len(text) > SEARCH_MAX_LENGTH:
        raise BadInput(f"A directory search is at most {SEARCH_MAX_LENGTH} characters.",
                       code="directory_bad_query")
    if not re.fullmatch(r"[\w .@'-]+", text):
        raise BadInput("A directory search may use letters, digits, spaces and . _ @ ' - only.",
                       code="directory_bad_query")
    limit = max(1, min(int(limit), 100))
    found: dict[str, dict] = {}
    if _GUID.match(text):
        found.update({k: v for k, v in principals_by_ids([text]).items() if v["resolved"]})
        quoted = text.replace("'", "''")
        body = _send(HttpRequest("GET", "/v1.0/servicePrincipals", params={
            "$filter": f"appId eq '{quoted}'", "$select": _SP_FIELDS}))
        for item in body.get("value", []):
            found[item["id"]] = _principal({**item, "@odata.type": "#microsoft.graph.servicePrincipal"})
        return list(found.values())[:limit]
    term = text.replace('"', "")
    headers = {"ConsistencyLevel": "eventual"}
    users = _send(HttpRequest("GET", "/v1.0/users", headers=headers, params={
        "$search": f'"displayName:{term}" OR "userPrincipalName:{term}"', "$select": _USER_FIELDS,
        "$top": str(limit)}))
    apps = _send(HttpRequest("GET", "/v1.0/servicePrincipals", headers=headers, params={
        "$search": f'"displayName:{term}"', "$select": _SP_FIELDS, "$top": str(limit)}))
    for item in users.get("value", []):
        found[item["id"]] = _principal({**item, "@odata.type": "#microsoft.graph.user"})
    for item in apps.get("value", []):
        found[item["id"]] = _principal({**item, "@odata.type": "#microsoft.graph.servicePrincipal"})
    return sorted(found.values(), key=lambda p: (p["display_name"].lower(), p["id"]))[:2 * limit]
