"""The Azure Resource Manager endpoint of the emulated cloud.

Every request is checked as Resource Manager checks it: a bearer token signed by the
authority for either of Resource Manager's names (``https://management.core.windows.net/``
or ``https://management.azure.com/``) — missing: 401 ``AuthenticationFailed``, invalid:
401 ``InvalidAuthenticationToken``, both with Resource Manager's ``WWW-Authenticate``
challenge — then an ``api-version`` (400 ``MissingApiVersionParameter``). Paths are
matched case-insensitively, as ARM does.

Served, one class per resource type (issue F adds types beside ``ManagedHsms``):

- ``Subscriptions``: ``GET /subscriptions`` (one subscription, created on first start and
  kept in the state store), ``GET /subscriptions/{id}``, ``GET /tenants``, and the one
  resource group every emulated HSM lives in (``GET .../resourceGroups/{rg}``);
- ``ManagedHsms``: ``Microsoft.KeyVault/managedHSMs`` — ``GET`` one / list by resource
  group / list by subscription, ``PUT`` (``begin_create_or_update``, what ``az keyvault
  update-hsm`` sends after a ``GET``) and ``PATCH`` (``begin_update``) of an existing HSM:
  ``tags``, ``identity`` (user-assigned managed identities, ``--mi-user-assigned``),
  purge protection (never disabled again), soft-delete retention, public network access
  and network ACLs. Creating or deleting HSMs is not served (``serve --hsm`` makes them).

Long-running operations as ARM runs them: ``PUT``/``PATCH`` answer 200 with
``provisioningState: Updating``, an ``Azure-AsyncOperation`` header (an operation status
resource: ``{"id","name","status":"InProgress"|"Succeeded","startTime","endTime"}``) and
``Retry-After: 1``; the resource reads ``Updating`` until the operation ends
(``UPDATE_SECONDS`` later), then ``Succeeded``. While a full restore runs on the HSM its
``provisioningState`` is ``Restoring``.

A user-assigned identity (``/subscriptions/{sub}/resourceGroups/{rg}/providers/
Microsoft.ManagedIdentity/userAssignedIdentities/{name}``) is backed by a service
principal of the authority, created the first time the identity is assigned; its
``principalId`` and ``clientId`` are what the resource shows. An HSM with such an
identity can back up to and restore from storage as that principal
(``identity_credential``): the authority issues it a storage token.
"""

from __future__ import annotations

import datetime
import re
import time
import uuid
from typing import Any, Awaitable, Callable, Optional

from azure.core.credentials import AccessToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .state import Store
from .tokens import ARM_RESOURCES, Authority, Principal, TokenValidator

STORAGE_RESOURCE = "https://storage.azure.com"
RESOURCE_GROUP = "hsm-emulator"
UPDATE_SECONDS = 0.5
_SCOPE = "arm"
_UAMI_RE = re.compile(r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{1,90}/providers/"
                      r"Microsoft\.ManagedIdentity/userAssignedIdentities/[-\w]{3,128}$", re.IGNORECASE)
_NOT_FOUND_HINT = "For more details please go to https://aka.ms/ARMResourceNotFoundFix"


class ArmError(Exception):
    """An ARM refusal: status and ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        return JSONResponse({"error": {"code": self.code, "message": self.message}}, status_code=self.status)


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Operations:
    """ARM asynchronous operations (the ``Azure-AsyncOperation`` status resources)."""

    def __init__(self, subscription_id: str) -> None:
        self._subscription_id = subscription_id
        self._ops: dict[str, dict] = {}

    def start(self, location: str, seconds: float) -> tuple[str, str]:
        """A new operation ending ``seconds`` from now: (id, status path)."""
        op_id = str(uuid.uuid4())
        path = (f"/subscriptions/{self._subscription_id}/providers/Microsoft.KeyVault/locations/{location}"
                f"/operationResults/{op_id}")
        self._ops[op_id] = {"path": path, "start": time.time(), "end": time.time() + seconds}
        return op_id, path

    def status(self, op_id: str) -> Optional[dict]:
        op = self._ops.get(op_id.lower())
        if op is None:
            return None
        done = time.time() >= op["end"]
        body = {"id": op["path"], "name": op_id.lower(), "status": "Succeeded" if done else "InProgress",
                "startTime": _rfc3339(op["start"])}
        if done:
            body["endTime"] = _rfc3339(op["end"])
        return body


class Subscriptions:
    """The emulated cloud's one subscription, its tenants and its resource group."""

    def __init__(self, store: Store, authority: Authority) -> None:
        self._authority = authority
        doc = store.get(_SCOPE, "meta", "subscription")
        if not doc:
            doc = {"subscription_id": str(uuid.uuid4()), "resource_group": RESOURCE_GROUP}
            store.put(_SCOPE, "meta", "subscription", doc)
        self.subscription_id: str = doc["subscription_id"]
        self.resource_group: str = doc["resource_group"]
        # Other resource groups (arm_services) answer here too.
        self.group_exists: Callable[[str], bool] = lambda rg: rg.lower() == self.resource_group.lower()

    def routes(self) -> list[tuple[str, str, Callable]]:
        return [
            ("GET", r"^/subscriptions/?$", self._list),
            ("GET", r"^/subscriptions/(?P<sub>[^/]+)/?$", self._get),
            ("GET", r"^/tenants/?$", self._tenants),
            ("GET", r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/?$", self._group),
        ]

    def check(self, sub: str, rg: Optional[str] = None) -> None:
        """404 unless ``sub`` (and ``rg``) are the emulator's."""
        if sub.lower() != self.subscription_id:
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        if rg is not None and not self.group_exists(rg):
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")

    def _subscription(self) -> dict:
        return {"id": f"/subscriptions/{self.subscription_id}", "authorizationSource": "RoleBased",
                "managedByTenants": [], "subscriptionId": self.subscription_id,
                "tenantId": self._authority.tenant_id, "displayName": "hsm_emulator", "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                         "spendingLimit": "Off"}}

    async def _list(self, request: Request, params: dict) -> Response:
        return JSONResponse({"value": [self._subscription()], "count": {"type": "Total", "value": 1}})

    async def _get(self, request: Request, params: dict) -> Response:
        self.check(params["sub"])
        return JSONResponse(self._subscription())

    async def _tenants(self, request: Request, params: dict) -> Response:
        tenant = self._authority.tenant_id
        return JSONResponse({"value": [{
            "id": f"/tenants/{tenant}", "tenantId": tenant, "tenantCategory": "Home",
            "displayName": "hsm_emulator", "defaultDomain": "hsm-emulator.local",
            "domains": ["hsm-emulator.local"], "tenantType": "AAD",
        }], "count": {"type": "Total", "value": 1}})

    async def _group(self, request: Request, params: dict) -> Response:
        self.check(params["sub"], params["rg"])
        return JSONResponse({"id": f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}",
                             "name": self.resource_group, "type": "Microsoft.Resources/resourceGroups",
                             "location": "westeurope", "properties": {"provisioningState": "Succeeded"}})


class _IdentityCredential:
    """A TokenCredential for one user-assigned identity: storage tokens from the authority."""

    def __init__(self, authority: Authority, principal: Principal) -> None:
        self._authority, self._principal = authority, principal

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token = self._authority.issue(self._principal, STORAGE_RESOURCE)
        return AccessToken(token, int(time.time()) + 3000)


class ManagedHsms:
    """``Microsoft.KeyVault/managedHSMs``: the emulated HSMs as Resource Manager shows them."""

    TYPE = "Microsoft.KeyVault/managedHSMs"

    def __init__(self, store: Store, authority: Authority, subscriptions: Subscriptions, operations: Operations,
                 admin_object_id: str) -> None:
        self._store = store
        self._authority = authority
        self._subs = subscriptions
        self._ops = operations
        self._admin = admin_object_id
        self.hsms: dict = {}  # name -> HsmApp (set by register)
        self._state: dict[str, dict] = {}
        self._updating_until: dict[str, float] = {}
        # arm_hsm_extras: ``apply(name, properties)`` on PUT/PATCH, ``decorate(name, properties)`` on reads.
        self.extensions: list = []

    def register(self, hsms: dict) -> None:
        """Serve these HSMs (name -> ``app.HsmApp``) and load their ARM state."""
        self.hsms = hsms
        for name in hsms:
            self._state[name] = self._store.get(f"hsm:{name}", _SCOPE, "resource") or {
                "tags": {}, "identity": None, "public_network_access": "Enabled",
                "network_acls": {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [],
                                 "virtualNetworkRules": []}}

    def routes(self) -> list[tuple[str, str, Callable]]:
        base = r"^/subscriptions/(?P<sub>[^/]+)"
        group = base + r"/resourceGroups/(?P<rg>[^/]+)"
        one = group + r"/providers/Microsoft\.KeyVault/managedHSMs/(?P<name>[^/]+)/?$"
        return [
            ("GET", base + r"/providers/Microsoft\.KeyVault/managedHSMs/?$", self._list),
            ("GET", group + r"/providers/Microsoft\.KeyVault/managedHSMs/?$", self._list),
            ("GET", one, self._get),
            ("PUT", one, self._put),
            ("PATCH", one, self._patch),
            ("DELETE", one, self._delete),
            ("GET", base + r"/providers/Microsoft\.KeyVault/locations/(?P<loc>[^/]+)/operationResults/(?P<op>[^/]+)/?$",
             self._operation),
        ]

    # -- identity ---------------------------------------------------------------------

    def _principal(self, identity_id: str) -> Principal:
        display = f"uami:{identity_id.lower()}"
        for principal in self._authority.principals.values():
            if principal.display_name == display:
                return principal
        return self._authority.create_principal(display)

    def identity_credential(self, name: str):
        """A TokenCredential for the HSM's (first) user-assigned identity, or None without one."""
        identity = self._state.get(name, {}).get("identity")
        if not identity or not identity.get("userAssignedIdentities"):
            return None
        first = next(iter(identity["userAssignedIdentities"]))
        return _IdentityCredential(self._authority, self._principal(first))

    # -- representation ---------------------------------------------------------------

    def _hsm(self, params: dict):
        self._subs.check(params["sub"], params["rg"])
        name = params["name"]
        for known, hsm in self.hsms.items() if params["rg"].lower() == self._subs.resource_group.lower() else ():
            if known.lower() == name.lower():
                return known, hsm
        raise ArmError(404, "ResourceNotFound", f"The Resource '{self.TYPE}/{name}' under resource group "
                                                f"'{params['rg']}' was not found. {_NOT_FOUND_HINT}")

    def resource_id(self, name: str) -> str:
        return (f"/subscriptions/{self._subs.subscription_id}/resourceGroups/{self._subs.resource_group}"
                f"/providers/{self.TYPE}/{name}")

    def _provisioning_state(self, name: str, hsm) -> str:
        if getattr(getattr(hsm, "backup", None), "restoring", False):
            return "Restoring"
        if time.time() < self._updating_until.get(name, 0):
            return "Updating"
        return "Succeeded"

    def resource(self, name: str) -> dict:
        """The resource JSON of one HSM (wire names)."""
        hsm = self.hsms[name]
        state = self._state[name]
        props = hsm.props
        properties = {
            "tenantId": self._authority.tenant_id,
            "initialAdminObjectIds": [self._admin],
            "hsmUri": props.base_url + "/",
            "enableSoftDelete": True,
            "softDeleteRetentionInDays": props.retention_days,
            "enablePurgeProtection": props.purge_protection,
            "publicNetworkAccess": state["public_network_access"],
            "networkAcls": state["network_acls"],
            "regions": [],
            "privateEndpointConnections": [],
            "provisioningState": self._provisioning_state(name, hsm),
            "statusMessage": "The Managed HSM is provisioned and ready to use.",
        }
        sd = getattr(hsm, "sd", None)
        if sd is not None and hasattr(sd, "arm_properties"):
            properties["securityDomainProperties"] = sd.arm_properties()
        for extension in self.extensions:
            extension.decorate(name, properties)
        body = {"id": self.resource_id(name), "name": name, "type": self.TYPE, "location": props.region,
                "tags": state["tags"], "sku": {"family": "B", "name": "Standard_B1"}, "properties": properties}
        if state["identity"]:
            identity = state["identity"]
            body["identity"] = {"type": identity["type"], "userAssignedIdentities": {
                rid: {"principalId": self._principal(rid).object_id, "clientId": self._principal(rid).client_id}
                for rid in identity["userAssignedIdentities"]}}
        return body

    # -- handlers ---------------------------------------------------------------------

    async def _list(self, request: Request, params: dict) -> Response:
        self._subs.check(params["sub"], params.get("rg"))
        return JSONResponse({"value": [self.resource(name) for name in self.hsms]})

    async def _get(self, request: Request, params: dict) -> Response:
        name, _ = self._hsm(params)
        return JSONResponse(self.resource(name))

    async def _put(self, request: Request, params: dict) -> Response:
        self._subs.check(params["sub"], params["rg"])
        try:
            name, _ = self._hsm(params)
        except ArmError:
            raise ArmError(400, "BadRequest", "The emulator does not create managed HSMs through Resource Manager; "
                                              "start it with `serve --hsm <name>`.") from None
        body = await _json(request)
        if "location" in body and str(body["location"]).replace(" ", "").lower() != self.hsms[name].props.region:
            raise ArmError(400, "LocationNotAvailableForResourceType",
                           f"The location of managed HSM '{name}' is {self.hsms[name].props.region}; it cannot "
                           "be changed.")
        return self._apply(name, body, replace=True)

    async def _patch(self, request: Request, params: dict) -> Response:
        name, _ = self._hsm(params)
        return self._apply(name, await _json(request), replace=False)

    async def _delete(self, request: Request, params: dict) -> Response:
        self._hsm(params)
        raise ArmError(400, "BadRequest", "The emulator does not delete managed HSMs through Resource Manager.")

    async def _operation(self, request: Request, params: dict) -> Response:
        self._subs.check(params["sub"])
        status = self._ops.status(params["op"])
        if status is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{params['op']}' was not found.")
        headers = {"Retry-After": "1"} if status["status"] == "InProgress" else {}
        return JSONResponse(status, headers=headers)

    def _apply(self, name: str, body: dict, replace: bool) -> Response:
        hsm = self.hsms[name]
        state = dict(self._state[name])
        if "tags" in body or replace:
            tags = body.get("tags") or {}
            if not isinstance(tags, dict) or len(tags) > 50 or not all(
                    isinstance(k, str) and isinstance(v, str) and len(k) <= 512 and len(v) <= 256
                    for k, v in tags.items()):
                raise ArmError(400, "InvalidTag", "Tags must be at most 50 string pairs (names up to 512 "
                                                  "characters, values up to 256).")
            state["tags"] = tags
        if "identity" in body or replace:  # a PUT replaces the resource: no identity, none kept
            state["identity"] = _identity(body.get("identity"))
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties' must be an object.")
        changes = {}
        if properties.get("softDeleteRetentionInDays") is not None:
            changes["retention_days"] = properties["softDeleteRetentionInDays"]
        if properties.get("enablePurgeProtection") is not None:
            changes["purge_protection"] = properties["enablePurgeProtection"]
        if properties.get("enableSoftDelete") is False:
            raise ArmError(400, "BadRequest", "Soft delete cannot be disabled on a managed HSM.")
        if properties.get("publicNetworkAccess") is not None:
            if properties["publicNetworkAccess"] not in ("Enabled", "Disabled"):
                raise ArmError(400, "InvalidParameter", "publicNetworkAccess must be 'Enabled' or 'Disabled'.")
            state["public_network_access"] = properties["publicNetworkAccess"]
        if properties.get("networkAcls") is not None:
            acls = properties["networkAcls"]
            if not isinstance(acls, dict) or acls.get("defaultAction", "Allow") not in ("Allow", "Deny") \
                    or acls.get("bypass", "AzureServices") not in ("AzureServices", "None"):
                raise ArmError(400, "InvalidParameter", "networkAcls: defaultAction is Allow or Deny, bypass is "
                                                        "AzureServices or None.")
            state["network_acls"] = {**state["network_acls"], **{k: v for k, v in acls.items() if v is not None}}
        commits = [extension.apply(name, properties) for extension in self.extensions]  # validated, not yet done
        if changes:
            try:
                hsm.props.update(self._store, {"retention_days": hsm.props.retention_days,
                                               "purge_protection": hsm.props.purge_protection, **changes})
            except ValueError as exc:
                raise ArmError(400, "BadRequest", f"{exc}.") from None
            hsm.keys.invalidate()
        for commit in commits:
            commit()
        if state["identity"]:
            for rid in state["identity"]["userAssignedIdentities"]:
                self._principal(rid)  # provisioned on assignment, as ARM does
        self._state[name] = state
        self._store.put(f"hsm:{name}", _SCOPE, "resource", state)
        op_id, path = self._ops.start(hsm.props.region, UPDATE_SECONDS)
        self._updating_until[name] = time.time() + UPDATE_SECONDS
        return JSONResponse(self.resource(name), status_code=200, headers={
            "Azure-AsyncOperation": f"{self._base_url}{path}?api-version=2026-05-15", "Retry-After": "1"})

    _base_url = ""


def user_assigned_ids(value, unsupported: str) -> Optional[dict]:
    """A request's ``identity``: None for none (absent or type ``None``), else its non-empty
    ``userAssignedIdentities``; ArmError when ARM would refuse it (another type:
    "Identity type '<type>' " + ``unsupported``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ArmError(400, "InvalidIdentity", "'identity' must be an object.")
    kind = str(value.get("type") or "None")
    if kind.lower() == "none":
        return None
    if kind != "UserAssigned":
        raise ArmError(400, "InvalidIdentityType", f"Identity type '{kind}' {unsupported}")
    identities = value.get("userAssignedIdentities")
    if not isinstance(identities, dict) or not identities:
        raise ArmError(400, "BadRequest", "An identity of type 'UserAssigned' needs 'userAssignedIdentities'.")
    return identities


def _identity(value) -> Optional[dict]:
    """The stored form of a request's ``identity``; ArmError when ARM would refuse it."""
    identities = user_assigned_ids(value, "is not supported for managed HSMs; use 'UserAssigned' (or 'None').")
    if identities is None:
        return None
    for rid in identities:
        if not _UAMI_RE.match(rid):
            raise ArmError(400, "LinkedInvalidPropertyId",
                           f"Property id '{rid}' at path 'identity.userAssignedIdentities' is invalid. Expect a fully "
                           "qualified resource id of a user-assigned identity: '/subscriptions/{subscriptionId}/"
                           "resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}'.")
    return {"type": "UserAssigned", "userAssignedIdentities": {rid: {} for rid in identities}}


async def _json(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        import json
        value = json.loads(raw)
    except ValueError:
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                     "deserialized.") from None
    if not isinstance(value, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return value


class ResourceManager:
    """The Resource Manager endpoint: authentication, api-version, dispatch to resource types."""

    def __init__(self, authority: Authority, store: Optional[Store] = None, admin_object_id: str = "") -> None:
        self._authority = authority
        self._validator = TokenValidator(authority, *ARM_RESOURCES)
        self.subscriptions = Subscriptions(store if store is not None else Store(None), authority)
        self.operations = Operations(self.subscriptions.subscription_id)
        self.managed_hsms = ManagedHsms(store if store is not None else Store(None), authority, self.subscriptions,
                                        self.operations, admin_object_id)
        self._routes: list[tuple[str, re.Pattern, Callable[[Request, dict], Awaitable[Response]]]] = [
            (method, re.compile(pattern, re.IGNORECASE), handler)
            for method, pattern, handler in self.subscriptions.routes() + self.managed_hsms.routes()
        ]
        from .arm_services import install  # issue F: CMK resources, HSM extras, Azure RBAC (routes first)

        self.services = install(self)

    @property
    def base_url(self) -> str:
        return self.managed_hsms._base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self.managed_hsms._base_url = value

    def app(self) -> Starlette:
        """The Starlette app serving every Resource Manager route."""
        return Starlette(routes=[Route("/{path:path}", self._dispatch,
                                       methods=["GET", "PUT", "PATCH", "DELETE", "POST"])])

    async def _dispatch(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        path = request.url.path
        matched_path = False
        for method, regex, handler in self._routes:
            match = regex.match(path)
            if match:
                matched_path = True
                if method == request.method:
                    try:
                        return await handler(request, match.groupdict())
                    except ArmError as error:
                        return error.response()
        if matched_path:
            return JSONResponse({"error": {"code": "MethodNotAllowed", "message": f"The method {request.method} "
                                                                                  f"is not allowed on {path}."}},
                                status_code=405)
        return JSONResponse({"error": {"code": "InvalidResourceType", "message": f"The resource type of '{path}' "
                                                                                 "is not served by the emulator."}},
                            status_code=404)

    def _refusal(self, request: Request) -> Response | None:
        """The answer Resource Manager gives a request it will not serve, or None."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._unauthorized("AuthenticationFailed",
                                      "Authentication failed. The 'Authorization' header is missing.",
                                      "The authentication failed because of missing 'Authorization' header.")
        try:
            self._validator.validate(token.strip())
        except ValueError:
            return self._unauthorized("InvalidAuthenticationToken", "The access token is invalid.",
                                      "The access token is invalid.")
        if not request.query_params.get("api-version"):
            return JSONResponse({"error": {
                "code": "MissingApiVersionParameter",
                "message": "The api-version query parameter (?api-version=) is required for all requests.",
            }}, status_code=400)
        return None

    def _unauthorized(self, code: str, message: str, description: str) -> Response:
        challenge = (f'Bearer authorization_uri="{self._authority.base_url}/", error="invalid_token", '
                     f'error_description="{description}"')
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=401,
                            headers={"WWW-Authenticate": challenge})
