"""A Microsoft Graph subset over the emulator's directory: what principal look-ups ask.

Served at its own port (``"graph"`` in ``endpoints.json``), for bearer tokens from the
emulator's authority whose audience is Microsoft Graph under any of its names:
``https://graph.microsoft.com``, Graph's application id
``00000003-0000-0000-c000-000000000000``, or this endpoint's own URL (the Azure CLI asks
for a token for its cloud's ``microsoftGraphResourceId`` and sends requests there, so a
cloud that names the emulator's Graph URL gets tokens for that URL). Any valid token of
the tenant may read the directory (the emulator has no Graph permissions to grant).

- ``POST /v1.0/directoryObjects/getByIds`` ``{"ids": [...≤1000], "types"?: [...]}``:
  users, groups and service principals with ``@odata.type``; unknown ids are left out.
- ``GET /v1.0/users``, ``/v1.0/servicePrincipals``, ``/v1.0/groups`` with ``$filter``
  (``eq`` on id, appId, displayName, userPrincipalName, mail; ``startswith(property,
  'text')``; ``servicePrincipalNames/any(c:c eq 'name')``; joined by ``and``/``or``),
  ``$search`` (``"displayName:text"``: each word begins a word of the value, needs ``ConsistencyLevel: eventual``),
  ``$top`` (1-999, default 100, ``@odata.nextLink`` beyond), ``$select``, ``$count``.
- ``GET /v1.0/users/{id or userPrincipalName}``, ``/v1.0/servicePrincipals/{id}``,
  ``/v1.0/servicePrincipals(appId='{appId}')``, ``/v1.0/groups/{id}``,
  ``/v1.0/directoryObjects/{id}``, ``/v1.0/me`` (delegated tokens only).

Test controls (loopback, the run's control secret): ``POST|GET|DELETE /_emulator/faults``
as on an HSM (``faults.py``): matching requests are delayed and/or refused with the status
in Graph's envelope (403 ``Authorization_RequestDenied``, 429 ``TooManyRequests`` with
``Retry-After``, 503 ``ServiceNotAvailable``, ...).

Answers have Graph's shapes: ``@odata.context``, ``value``; errors
``{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}``
with Graph's codes (``InvalidAuthenticationToken``, ``Request_ResourceNotFound``,
``Request_BadRequest``, ``Request_UnsupportedQuery``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import uuid
from typing import Any, Callable, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultInjector
from .routing import control_refusal
from .tokens import GRAPH_RESOURCES, Authority, TokenValidator

MAX_IDS = 1000
MAX_TOP = 999
DEFAULT_TOP = 100
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TYPES = {"user": "#microsoft.graph.user", "group": "#microsoft.graph.group",
          "serviceprincipal": "#microsoft.graph.servicePrincipal"}
# One filter clause: eq, startswith, or servicePrincipalNames/any(...); strings use '' for '.
_CLAUSE = re.compile(
    r"\s*(?:(?P<eq_prop>[A-Za-z]+)\s+eq\s+'(?P<eq_val>(?:[^']|'')*)'"
    r"|startswith\(\s*(?P<sw_prop>[A-Za-z]+)\s*,\s*'(?P<sw_val>(?:[^']|'')*)'\s*\)"
    r"|servicePrincipalNames/any\(\s*(?P<var>\w+)\s*:\s*(?P=var)\s+eq\s+'(?P<any_val>(?:[^']|'')*)'\s*\))\s*")
_CONNECTOR = re.compile(r"\s*(and|or)\s+", re.I)
_FAULT_CODES = {
    400: ("BadRequest", "The request was refused by an injected fault."),
    401: ("InvalidAuthenticationToken", "Access token validation failure (injected fault)."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("Request_ResourceNotFound", "The resource was not found (injected fault)."),
    429: ("TooManyRequests", "Too many requests (injected fault)."),
    503: ("ServiceNotAvailable", "The service is temporarily unavailable (injected fault)."),
}
_SEARCH = re.compile(r'"(?P<prop>[A-Za-z]+):(?P<val>[^"]*)"')


class GraphError(Exception):
    """An error answer in Graph's envelope."""

    def __init__(self, status: int, code: str, message: str, headers: Optional[dict] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _unsupported(message: str = "Unsupported Query.") -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


class Graph:
    """The Graph endpoint of the emulated cloud."""

    def __init__(self, authority: Authority, base_url: str = "") -> None:
        self._authority = authority
        self.base_url = base_url
        self._validator: Optional[TokenValidator] = None
        self.faults = FaultInjector()

    def app(self) -> Starlette:
        """The Starlette app: one route, dispatched here (Graph paths hold parentheses and quotes)."""
        return Starlette(routes=[
            Route("/_emulator/faults", self._faults, methods=["GET", "POST", "DELETE"]),
            Route("/{path:path}", self._dispatch, methods=["GET", "POST"]),
        ])

    async def _faults(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._authority.control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        if request.method == "GET":
            return JSONResponse({"value": self.faults.list()})
        if request.method == "DELETE":
            self.faults.clear()
            return JSONResponse({"value": []})
        try:
            spec = json.loads(await request.body() or b"{}")
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object")
            return JSONResponse(self.faults.add(spec).describe(), status_code=201)
        except ValueError as exc:
            return JSONResponse({"error": {"code": "BadRequest", "message": str(exc)}}, status_code=400)

    async def _inject_fault(self, request: Request) -> None:
        fault = self.faults.take(request.method, request.url.path) if self.faults else None
        if fault is None:
            return
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.status is not None:
            code, message = _FAULT_CODES.get(fault.status, ("UnknownError", "Injected fault."))
            raise GraphError(fault.status, code, message,
                             {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None)

    # -- objects ------------------------------------------------------------------

    def _user(self, user) -> dict:
        return {"id": user.object_id, "businessPhones": [], "displayName": user.display_name, "givenName": None,
                "jobTitle": None, "mail": user.user_principal_name, "mobilePhone": None, "officeLocation": None,
                "preferredLanguage": None, "surname": None, "userPrincipalName": user.user_principal_name}

    def _service_principal(self, principal) -> dict:
        return {"id": principal.object_id, "deletedDateTime": None, "accountEnabled": True,
                "alternativeNames": [], "appDisplayName": principal.display_name, "appDescription": None,
                "appId": principal.client_id, "appOwnerOrganizationId": self._authority.tenant_id,
                "appRoleAssignmentRequired": principal.assignment_required,
                "displayName": principal.display_name, "homepage": None, "replyUrls": list(principal.redirect_uris),
                "servicePrincipalNames": [principal.client_id, *principal.identifier_uris],
                "servicePrincipalType": "Application", "signInAudience": "AzureADMyOrg", "tags": [],
                "appRoles": [dict(role) for role in principal.app_roles], "oauth2PermissionScopes": []}

    def _group(self, group) -> dict:
        return {"id": group.object_id, "deletedDateTime": None, "classification": None, "description": None,
                "displayName": group.display_name, "groupTypes": [], "mail": None, "mailEnabled": False,
                "mailNickname": re.sub(r"[^A-Za-z0-9]", "", group.display_name) or "group",
                "securityEnabled": True, "visibility": None}

    def _collection(self, kind: str) -> list[dict]:
        directory = self._authority.directory
        if kind == "users":
            return [self._user(u) for u in directory.users.values()]
        if kind == "servicePrincipals":
            return [self._service_principal(p) for p in self._authority.principals.values()]
        return [self._group(g) for g in directory.groups.values()]

    def _by_id(self, object_id: str) -> Optional[tuple[str, dict]]:
        """(type name, object) for a directory object id, or None."""
        directory = self._authority.directory
        if object_id in directory.users:
            return "user", self._user(directory.users[object_id])
        if object_id in directory.groups:
            return "group", self._group(directory.groups[object_id])
        principal = self._authority.principal_by_object_id(object_id)
        if principal is not None:
            return "serviceprincipal", self._service_principal(principal)
        return None

    # -- HTTP ---------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            await self._inject_fault(request)
            claims = self._authenticate(request)
            path = "/" + request.path_params["path"]
            body = await self._route(request, path, claims)
            return JSONResponse(body, headers=self._headers(request, request_id))
        except GraphError as exc:
            headers = {**self._headers(request, request_id), **exc.headers}
            if exc.status == 401:
                headers["WWW-Authenticate"] = (f'Bearer realm="", authorization_uri="{self._authority.base_url}/'
                                               f'{self._authority.tenant_id}/oauth2/authorize", '
                                               f'client_id="{GRAPH_RESOURCES[1]}"')
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            return JSONResponse({"error": {"code": exc.code, "message": exc.message, "innerError": {
                "date": now, "request-id": request_id,
                "client-request-id": request.headers.get("client-request-id", request_id)}}},
                status_code=exc.status, headers=headers)

    @staticmethod
    def _headers(request: Request, request_id: str) -> dict[str, str]:
        return {"request-id": request_id, "client-request-id": request.headers.get("client-request-id", request_id),
                "Cache-Control": "no-cache", "OData-Version": "4.0"}

    def _authenticate(self, request: Request) -> dict:
        if self._validator is None:
            self._validator = TokenValidator(self._authority, *GRAPH_RESOURCES, self.base_url)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            return self._validator.validate(token.strip())
        except ValueError as exc:
            raise GraphError(401, "InvalidAuthenticationToken", f"Access token validation failure. {exc}") from None

    async def _route(self, request: Request, path: str, claims: dict) -> dict:
        version, _, rest = path.lstrip("/").partition("/")
        if version not in ("v1.0", "beta"):
            raise GraphError(400, "BadRequest", f"Invalid version: {version}")
        rest = "/" + rest.rstrip("/")
        context = f"{self.base_url}/{version}/$metadata"
        method = request.method
        if rest == "/directoryObjects/getByIds":
            if method != "POST":
                raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request "
                                                            "target.")
            return self._get_by_ids(await _json(request), context)
        if method != "GET":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        if rest == "/me":
            if claims.get("idtyp") == "app" or claims.get("oid") not in self._authority.directory.users:
                raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            return {"@odata.context": f"{context}#users/$entity",
                    **self._user(self._authority.directory.users[claims["oid"]])}
        match = re.fullmatch(r"/servicePrincipals\(appId='([^']*)'\)", rest)
        if match:
            principal = self._authority.principals.get(match.group(1))
            if principal is None:
                raise _not_found(match.group(1))
            return {"@odata.context": f"{context}#servicePrincipals/$entity", **self._service_principal(principal)}
        match = re.fullmatch(r"/(users|servicePrincipals|groups|directoryObjects)(?:/([^/]+))?", rest)
        if not match:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest.strip('/')}'.")
        kind, object_id = match.group(1), match.group(2)
        if object_id is None:
            if kind == "directoryObjects":
                raise _unsupported()
            return self._list(request, kind, context)
        found = self._by_id(object_id)
        if kind == "users" and found is None:
            user = self._authority.directory.user_by_upn(object_id)
            found = ("user", self._user(user)) if user is not None else None
        wanted = {"users": "user", "servicePrincipals": "serviceprincipal", "groups": "group"}.get(kind)
        if found is None or (wanted is not None and found[0] != wanted):
            raise _not_found(object_id)
        obj = _select(found[1], request.query_params.get("$select"))
        if kind == "directoryObjects":
            return {"@odata.context": f"{context}#directoryObjects/$entity", "@odata.type": _TYPES[found[0]], **obj}
        return {"@odata.context": f"{context}#{kind}/$entity", **obj}

    def _get_by_ids(self, body: Any, context: str) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
            raise GraphError(400, "Request_BadRequest", "The request body must contain 'ids', a list of object ids.")
        ids = body["ids"]
        if len(ids) > MAX_IDS:
            raise GraphError(400, "Request_BadRequest", f"Too many ids: at most {MAX_IDS} may be given.")
        types = body.get("types")
        if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
            raise GraphError(400, "Request_BadRequest", "'types' must be a list of type names.")
        wanted = None if not types else {t.lower().removeprefix("microsoft.graph.") for t in types}
        value = []
        for object_id in ids:
            if not isinstance(object_id, str) or not _GUID.match(object_id):
                raise GraphError(400, "Request_BadRequest", f"Invalid object identifier '{object_id}'.")
            found = self._by_id(object_id.lower())
            if found is None or (wanted is not None and found[0] not in wanted):
                continue
            value.append({"@odata.type": _TYPES[found[0]], **found[1]})
        return {"@odata.context": f"{context}#directoryObjects", "value": value}

    def _list(self, request: Request, kind: str, context: str) -> dict:
        query = request.query_params
        eventual = request.headers.get("consistencylevel", "").lower() == "eventual"
        items = self._collection(kind)
        if query.get("$filter"):
            items = [item for item in items if _filter(query["$filter"])(item)]
        if query.get("$search"):
            if not eventual:
                raise GraphError(400, "Request_UnsupportedQuery", "Request with $search query parameter only works "
                                 "through MSGraph with a special request header: 'ConsistencyLevel: eventual'")
            items = [item for item in items if _search(query["$search"])(item)]
        items.sort(key=lambda item: (str(item.get("displayName") or "").lower(), item["id"]))
        try:
            top = int(query.get("$top", DEFAULT_TOP))
            skip = int(query.get("$skiptoken", "0") or 0)
        except ValueError:
            raise GraphError(400, "Request_BadRequest", "Invalid value for $top or $skiptoken.") from None
        if not 1 <= top <= MAX_TOP or skip < 0:
            raise GraphError(400, "Request_BadRequest", f"Invalid page size specified: '{top}'. Must be between 1 "
                                                        f"and {MAX_TOP} inclusive.")
        page = [_select(item, query.get("$select")) for item in items[skip:skip + top]]
        body: dict[str, Any] = {"@odata.context": f"{context}#{kind}"}
        if query.get("$count", "").lower() == "true":
            if not eventual:
                raise GraphError(400, "Request_BadRequest", "$count requires the header 'ConsistencyLevel: eventual'.")
            body["@odata.count"] = len(items)
        if skip + top < len(items):
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = str(skip + top)
            body["@odata.nextLink"] = (f"{self.base_url}{request.url.path}?"
                                       + "&".join(f"{k}={_quote(v)}" for k, v in params.items()))
        body["value"] = page
        return body


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _not_found(object_id: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound", f"Resource '{object_id}' does not exist or one of its "
                                                       "queried reference-property objects are not present.")


def _select(item: dict, select: Optional[str]) -> dict:
    if not select:
        return item
    names = {name.strip() for name in select.split(",") if name.strip()}
    return {k: v for k, v in item.items() if k in names or k == "id"}


def _filter(expression: str) -> Callable[[dict], bool]:
    """A predicate for an OData ``$filter`` in the subset described above; 400 otherwise."""
    if len(expression) > 2000:
        raise _unsupported()
    groups: list[list[Callable[[dict], bool]]] = [[]]
    position = 0
    while True:
        match = _CLAUSE.match(expression, position)
        if not match:
            raise _unsupported(f"Unsupported or invalid query filter clause specified: '{expression}'.")
        groups[-1].append(_clause(match))
        position = match.end()
        if position == len(expression):
            break
        connector = _CONNECTOR.match(expression, position)
        if not connector:
            raise _unsupported(f"Unsupported or invalid query filter clause specified: '{expression}'.")
        if connector.group(1).lower() == "or":
            groups.append([])
        position = connector.end()
    return lambda item: any(all(test(item) for test in group) for group in groups)


def _clause(match: re.Match) -> Callable[[dict], bool]:
    if match.group("eq_prop"):
        prop, value = match.group("eq_prop"), match.group("eq_val").replace("''", "'")
        if prop not in ("id", "appId", "displayName", "userPrincipalName", "mail"):
            raise _unsupported(f"Unsupported property '{prop}' in filter.")
        return lambda item: str(item.get(prop) or "").lower() == value.lower()
    if match.group("sw_prop"):
        prop, value = match.group("sw_prop"), match.group("sw_val").replace("''", "'")
        if prop not in ("displayName", "userPrincipalName", "mail"):
            raise _unsupported(f"Unsupported property '{prop}' in startswith.")
        return lambda item: str(item.get(prop) or "").lower().startswith(value.lower())
    value = match.group("any_val").replace("''", "'").lower()
    return lambda item: value in (name.lower() for name in item.get("servicePrincipalNames") or [])


def _search(expression: str) -> Callable[[dict], bool]:
    """A predicate for ``$search``: ``"prop:text"`` terms joined by OR/AND; word-prefix matches."""
    terms = list(_SEARCH.finditer(expression))
    if not terms or len(expression) > 1000:
        raise GraphError(400, "Request_UnsupportedQuery", "Syntax error: the $search expression is not valid.")
    any_of = " OR " in expression.upper()

    def term(match: re.Match) -> Callable[[dict], bool]:
        prop, text = match.group("prop"), match.group("val").lower()
        if prop not in ("displayName", "userPrincipalName", "mail", "appId"):
            raise _unsupported(f"Unsupported property '{prop}' in $search.")

        wanted = [w for w in re.split(r"[\s._@-]+", text) if w]

        def test(item: dict) -> bool:
            # Graph tokenizes both sides: every searched word must begin some word of the value.
            value = str(item.get(prop) or "").lower()
            words = [w for w in re.split(r"[\s._@-]+", value) if w]
            return value.startswith(text) or all(any(w.startswith(q) for w in words) for q in wanted)
        return test

    tests = [term(m) for m in terms]
    if any_of:
        return lambda item: any(test(item) for test in tests)
    return lambda item: all(test(item) for test in tests)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
