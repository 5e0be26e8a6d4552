"""Resource Manager resources that use HSM keys as customer-managed keys (issue F).

Served beside ``arm.ManagedHsms`` by ``arm.ResourceManager`` (``install(rm)`` adds the
routes), through the official ``azure-mgmt-*`` clients with a custom ``base_url``:

- resource groups (``azure-mgmt-resource``): ``PUT`` (201 new / 200 existing), ``GET``,
  list; the emulator's own group (where the HSMs live) always exists;
- ``Microsoft.ManagedIdentity/userAssignedIdentities`` (``azure-mgmt-msi``): ``PUT``
  (201/200), ``GET``, list by group / subscription, ``DELETE``. Each identity is a service
  principal of the emulator's authority (the one ``ManagedHsms`` uses for the same resource
  id): its ``principalId`` is the object id local RBAC assignments name;
- ``Microsoft.Storage/storageAccounts`` (``azure-mgmt-storage``): ``PUT`` is an ARM
  long-running operation (202 + ``Location``, polled until 200 with the account),
  ``PATCH`` and ``GET`` answer at once, ``DELETE``, lists. ``properties.encryption`` with
  ``keySource: Microsoft.Keyvault``, ``keyvaultproperties`` (``keyname``, ``keyvaulturi``,
  ``keyversion``; empty = versionless, the account follows the key's newest version in
  ``currentVersionedKeyIdentifier``) and ``identity.userAssignedIdentity``;
- ``Microsoft.DBforPostgreSQL/flexibleServers`` and ``Microsoft.DBforMySQL/flexibleServers``
  (``azure-mgmt-postgresqlflexibleservers``, ``azure-mgmt-mysqlflexibleservers``): ``PUT``,
  ``PATCH`` and ``DELETE`` are long-running (202 + ``Azure-AsyncOperation``), ``GET``,
  lists; ``properties.dataEncryption`` {``type: AzureKeyVault``, ``primaryKeyURI``,
  ``primaryUserAssignedIdentityId``}.

Pointing encryption at an HSM key runs the checks the services run, in their order, and a
request that fails one changes nothing (the answer is a synchronous 400):

1. the identity named is one of the resource's user-assigned identities and exists;
2. the key URI names an emulated HSM (else the vault is unreachable);
3. the HSM has purge protection (Storage: ``KeyVaultPolicyError`` "Keyvault policy
   recoverable is not set", as the service words it);
4. as that identity, through the HSM's own data plane (in-process, a token the authority
   issues the identity, so local RBAC, key state and key_ops are checked by the HSM): get
   the key (403: the identity lacks a role granting read/wrap/unwrap — *Managed HSM Crypto
   Service Encryption User* on the key, or above; 404: no such key), the key is enabled and
   its key_ops allow wrapKey and unwrapKey, then a real wrapKey + unwrapKey round trip.

Error codes: Storage ``KeyVaultPolicyError``, ``KeyVaultAuthenticationFailure``,
``KeyVaultKeyNotFound``, ``KeyVaultKeyDisabled``, ``KeyVaultKeyOperationsNotPermitted``,
``KeyVaultNotReachable``; PostgreSQL/MySQL ``SecurityInvalidAzureKeyVaultRecoveryLevel``,
``AzureKeyVaultMissingPermissions``, ``AzureKeyVaultKeyNotFound``,
``AzureKeyVaultKeyDisabled``, ``AzureKeyVaultKeyOperationsNotPermitted``,
``AzureKeyVaultNotReachable``, ``InvalidUserAssignedIdentity``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import os
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .arm import ArmError, _json, _NOT_FOUND_HINT, user_assigned_ids
from .routing import scopes_for_key
from .tokens import HSM_RESOURCE

if TYPE_CHECKING:  # pragma: no cover
    from .arm import ResourceManager

_SCOPE = "arm"
LRO_SECONDS = 1.0
HSM_API_VERSION = "7.5"
_NAME = re.compile(r"^[-\w._()]{1,90}$")
_STORAGE_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_SERVER_NAME = re.compile(r"^[a-z0-9][-a-z0-9]{1,61}[a-z0-9]$")
_IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][-\w]{2,127}$")
_LOCATIONS = frozenset({"westeurope", "northeurope", "eastus", "eastus2", "westus", "westus2", "westus3",
                        "uksouth", "ukwest", "francecentral", "germanywestcentral", "swedencentral",
                        "switzerlandnorth", "centralus", "southcentralus", "canadacentral", "australiaeast",
                        "japaneast", "southeastasia", "eastasia"})
UAMI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
STORAGE_TYPE = "Microsoft.Storage/storageAccounts"
PG_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
MYSQL_TYPE = "Microsoft.DBforMySQL/flexibleServers"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _location(value: Any) -> str:
    location = str(value or "").replace(" ", "").lower()
    if location not in _LOCATIONS:
        raise ArmError(400, "LocationNotAvailableForResourceType",
                       f"The provided location '{value}' is not available for this resource type. List of available "
                       f"regions is '{', '.join(sorted(_LOCATIONS))}'.")
    return location


def _tags(value: Any) -> dict:
    tags = value or {}
    if not isinstance(tags, dict) or len(tags) > 50 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 512 and len(v) <= 256 for k, v in tags.items()):
        raise ArmError(400, "InvalidTag", "Tags must be at most 50 string pairs (names up to 512 characters, values "
                                          "up to 256).")
    return tags


def _not_found(kind: str, name: str, group: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"The Resource '{kind}/{name}' under resource group '{group}' was not "
                                             f"found. {_NOT_FOUND_HINT}")


class CmkError(Exception):
    """One failed customer-managed-key check, in service-neutral terms (``reason``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


# -- asynchronous operations --------------------------------------------------------------

class AsyncOperations:
    """ARM operation status resources for the providers served here."""

    def __init__(self) -> None:
        self._ops: dict[str, dict] = {}

    def start(self, request: Request, sub: str, namespace: str, location: str, kind: str,
              finish: Optional[Callable[[], None]] = None, result: Optional[Callable[[], dict]] = None) -> str:
        """A new operation ending ``LRO_SECONDS`` from now; its absolute status URL.

        ``finish`` runs once when it ends (the resource's provisioningState settles);
        ``result`` makes the status URL answer with the resource at the end (Storage's
        ``Location`` polling), instead of an operation status."""
        op_id = str(uuid.uuid4())
        self._ops[op_id] = {"start": time.time(), "end": time.time() + LRO_SECONDS, "finish": finish,
                            "result": result, "done": False}
        base = str(request.base_url).rstrip("/")
        version = request.query_params.get("api-version", "")
        return (f"{base}/subscriptions/{sub}/providers/{namespace}/locations/{location}/{kind}/{op_id}"
                f"?api-version={version}")

    def settle(self) -> None:
        """Run ``finish`` of every operation that has ended."""
        now = time.time()
        for op in self._ops.values():
            if not op["done"] and now >= op["end"]:
                op["done"] = True
                if op["finish"] is not None:
                    op["finish"]()

    async def status(self, request: Request, params: dict) -> Response:
        self.settle()
        op = self._ops.get(params["op"].lower())
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{params['op']}' was not found.")
        done = op["done"]
        if op["result"] is not None:  # Location polling: 202 until done, then the resource
            if not done:
                return Response(status_code=202, headers={"Location": str(request.url), "Retry-After": "1"})
            return JSONResponse(op["result"]())
        body = {"name": params["op"].lower(), "status": "Succeeded" if done else "InProgress",
                "startTime": datetime.datetime.fromtimestamp(op["start"], datetime.timezone.utc).isoformat()}
        return JSONResponse(body, headers={} if done else {"Retry-After": "1"})


# -- documents ----------------------------------------------------------------------------

class Collection:
    """Resources of one type, by lower-case ``<group>/<name>``, written through to the store."""

    def __init__(self, store, kind: str) -> None:
        self._store, self._kind = store, kind
        self.docs: dict[str, dict] = store.load(_SCOPE, kind)

    @staticmethod
    def key(group: str, name: str) -> str:
        return f"{group.lower()}/{name.lower()}"

    def get(self, group: str, name: str) -> Optional[dict]:
        return self.docs.get(self.key(group, name))

    def put(self, group: str, name: str, doc: dict) -> None:
        self.docs[self.key(group, name)] = doc
        self._store.put(_SCOPE, self._kind, self.key(group, name), doc)

    def delete(self, group: str, name: str) -> None:
        self.docs.pop(self.key(group, name), None)
        self._store.delete(_SCOPE, self._kind, self.key(group, name))

    def in_group(self, group: Optional[str]) -> list[dict]:
        return [d for k, d in self.docs.items() if group is None or k.split("/", 1)[0] == group.lower()]


# -- the services -------------------------------------------------------------------------

class CmkServices:
    """Resource groups, identities, storage accounts, flexible servers; CMK checks."""

    def __init__(self, rm: "ResourceManager") -> None:
        self.rm = rm
        store = rm.managed_hsms._store
        self.store = store
        self.subs = rm.subscriptions
        self.ops = AsyncOperations()
        self.groups = Collection(store, "resource_group")
        self.identities = Collection(store, "uami")
        self.storage = Collection(store, "storage_account")
        self.servers = {PG_TYPE: Collection(store, "pg_flexible_server"),
                        MYSQL_TYPE: Collection(store, "mysql_flexible_server")}
        self.subs.group_exists = self.group_exists
        # Writes are read-check-write across awaits (the CMK check calls the HSM): one at a time.
        self._writes = asyncio.Lock()

    # -- plumbing ---------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Callable]]:
        base = r"^/subscriptions/(?P<sub>[^/]+)"
        group = base + r"/resourceGroups/(?P<rg>[^/]+)"
        uami = r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities"
        sa = r"/providers/Microsoft\.Storage/storageAccounts"
        routes = [
            ("GET", base + r"/resourceGroups/?$", self._groups_list),
            ("GET", group + r"/?$", self._group_get),
            ("HEAD", group + r"/?$", self._group_head),
            ("PUT", group + r"/?$", self._group_put),
            ("GET", base + r"/providers/(?P<ns>Microsoft\.(Storage|DBforPostgreSQL|DBforMySQL))/locations/"
                           r"(?P<loc>[^/]+)/(?P<kind>azureAsyncOperation|operationResults|asyncoperations)/(?P<op>[^/?]+)/?$",
             self.ops.status),
            ("GET", base + uami + r"/?$", self._uami_list),
            ("GET", group + uami + r"/?$", self._uami_list),
            ("GET", group + uami + r"/(?P<name>[^/]+)/?$", self._uami_get),
            ("PUT", group + uami + r"/(?P<name>[^/]+)/?$", self._uami_put),
            ("PATCH", group + uami + r"/(?P<name>[^/]+)/?$", self._uami_put),
            ("DELETE", group + uami + r"/(?P<name>[^/]+)/?$", self._uami_delete),
            ("GET", base + sa + r"/?$", self._sa_list),
            ("POST", base + r"/providers/Microsoft\.Storage/checkNameAvailability/?$", self._sa_name_available),
            ("GET", group + sa + r"/?$", self._sa_list),
            ("GET", group + sa + r"/(?P<name>[^/]+)/?$", self._sa_get),
            ("PUT", group + sa + r"/(?P<name>[^/]+)/?$", self._sa_put),
            ("PATCH", group + sa + r"/(?P<name>[^/]+)/?$", self._sa_patch),
            ("DELETE", group + sa + r"/(?P<name>[^/]+)/?$", self._sa_delete),
        ]
        for rtype in (PG_TYPE, MYSQL_TYPE):
            ns, _, kind = rtype.partition("/")
            path = rf"/providers/{re.escape(ns)}/{kind}"
            routes += [
                ("GET", base + path + r"/?$", self._server_handler(rtype, "list")),
                ("GET", group + path + r"/?$", self._server_handler(rtype, "list")),
                ("GET", group + path + r"/(?P<name>[^/]+)/?$", self._server_handler(rtype, "get")),
                ("PUT", group + path + r"/(?P<name>[^/]+)/?$", self._server_handler(rtype, "put")),
                ("PATCH", group + path + r"/(?P<name>[^/]+)/?$", self._server_handler(rtype, "patch")),
                ("DELETE", group + path + r"/(?P<name>[^/]+)/?$", self._server_handler(rtype, "delete")),
            ]
        return [(method, pattern, handler if method in ("GET", "HEAD") else self._serialized(handler))
                for method, pattern, handler in routes]

    def _serialized(self, handler: Callable) -> Callable:
        async def run(request: Request, params: dict) -> Response:
            async with self._writes:
                try:
                    return await handler(request, params)
                except (AttributeError, TypeError, KeyError) as exc:  # a member of the wrong JSON type
                    raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                                 f"deserialized: {exc.__class__.__name__}.") from None
        return run

    def _rid(self, group: str, rtype: str, name: str) -> str:
        return f"/subscriptions/{self.subs.subscription_id}/resourceGroups/{group}/providers/{rtype}/{name}"

    def group_exists(self, rg: str) -> bool:
        return rg.lower() == self.subs.resource_group.lower() or self.groups.get(rg, "") is not None

    def _group_name(self, rg: str) -> str:
        """The group's name as created (ARM keeps the creator's case)."""
        if rg.lower() == self.subs.resource_group.lower():
            return self.subs.resource_group
        doc = self.groups.get(rg, "")
        return doc["name"] if doc else rg

    # -- resource groups --------------------------------------------------------------

    def _group_doc(self, name: str, location: str, tags: dict) -> dict:
        return {"id": f"/subscriptions/{self.subs.subscription_id}/resourceGroups/{name}", "name": name,
                "type": "Microsoft.Resources/resourceGroups", "location": location, "tags": tags,
                "properties": {"provisioningState": "Succeeded"}}

    def _groups_all(self) -> list[dict]:
        own = self._group_doc(self.subs.resource_group, "westeurope", {})
        return [own] + list(self.groups.docs.values())

    async def _groups_list(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"])
        return JSONResponse({"value": self._groups_all()})

    async def _group_get(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        return JSONResponse(next(g for g in self._groups_all() if g["name"].lower() == params["rg"].lower()))

    async def _group_head(self, request: Request, params: dict) -> Response:
        """``check_existence``: 204 or 404, no body."""
        exists = params["sub"].lower() == self.subs.subscription_id and self.group_exists(params["rg"])
        return Response(status_code=204 if exists else 404)

    async def _group_put(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"])
        name = params["rg"]
        if not _NAME.match(name) or name.endswith("."):
            raise ArmError(400, "InvalidResourceGroup", f"The resource group name '{name}' is invalid: up to 90 "
                                                        "letters, digits, '-', '_', '.', '(' or ')', not ending in '.'.")
        body = await _json(request)
        location = _location(body.get("location"))
        existing = self.group_exists(name)
        if existing and name.lower() == self.subs.resource_group.lower():
            return JSONResponse(self._group_doc(self.subs.resource_group, "westeurope", {}))
        old = self.groups.get(name, "")
        if old and old["location"] != location:
            raise ArmError(409, "InvalidResourceGroupLocation",
                           f"Invalid resource group location '{location}'. The Resource group already exists in "
                           f"location '{old['location']}'.")
        doc = self._group_doc(old["name"] if old else name, location, _tags(body.get("tags")))
        self.groups.put(name, "", doc)
        return JSONResponse(doc, status_code=200 if existing else 201)

    # -- user-assigned identities -----------------------------------------------------

    def identity_principal(self, rid: str):
        """The authority principal behind a user-assigned identity resource id."""
        return self.rm.managed_hsms._principal(rid)

    def _uami_doc(self, doc: dict) -> dict:
        principal = self.identity_principal(doc["id"])
        out = copy.deepcopy(doc)
        out["properties"] = {"tenantId": self.rm._authority.tenant_id, "principalId": principal.object_id,
                             "clientId": principal.client_id, "isolationScope": "None"}
        return out

    def find_identity(self, rid: str) -> Optional[dict]:
        match = re.match(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ManagedIdentity/"
                         r"userAssignedIdentities/([^/]+)$", rid or "", re.IGNORECASE)
        if not match or match.group(1).lower() != self.subs.subscription_id:
            return None
        return self.identities.get(match.group(2), match.group(3))

    async def _uami_list(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params.get("rg"))
        return JSONResponse({"value": [self._uami_doc(d) for d in self.identities.in_group(params.get("rg"))]})

    async def _uami_get(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        doc = self.identities.get(params["rg"], params["name"])
        if doc is None:
            raise _not_found(UAMI_TYPE, params["name"], params["rg"])
        return JSONResponse(self._uami_doc(doc))

    async def _uami_put(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        name, group = params["name"], self._group_name(params["rg"])
        if not _IDENTITY_NAME.match(name):
            raise ArmError(400, "InvalidResourceName", f"The resource name '{name}' is invalid: 3 to 128 letters, "
                                                       "digits, '-' or '_', starting with a letter or digit.")
        body = await _json(request)
        old = self.identities.get(group, name)
        if request.method == "PATCH" and old is None:
            raise _not_found(UAMI_TYPE, name, group)
        location = old["location"] if old and "location" not in body else _location(body.get("location"))
        doc = {"id": old["id"] if old else self._rid(group, UAMI_TYPE, name), "name": old["name"] if old else name,
               "type": UAMI_TYPE, "location": location,
               "tags": _tags(body["tags"]) if "tags" in body else (old or {}).get("tags", {})}
        self.identity_principal(doc["id"])
        self.identities.put(group, name, doc)
        return JSONResponse(self._uami_doc(doc), status_code=200 if old else 201)

    async def _uami_delete(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        if self.identities.get(params["rg"], params["name"]) is None:
            return Response(status_code=204)
        self.identities.delete(params["rg"], params["name"])
        return Response(status_code=200)

    def _identity(self, value: Any, rtype: str) -> Optional[dict]:
        """The stored identity block of a request (only user-assigned identities that exist)."""
        ids = user_assigned_ids(value, f"is not served by the emulator for {rtype}; use 'UserAssigned'.")
        if ids is None:
            return None
        for rid in ids:
            if self.find_identity(rid) is None:
                raise ArmError(400, "FailedIdentityOperation",
                               f"Identity operation for resource '{rtype}' failed: the user-assigned identity "
                               f"'{rid}' was not found.")
        return {"type": "UserAssigned", "userAssignedIdentities": {self.find_identity(r)["id"]: {} for r in ids}}

    def _updated(self, old: dict, body: dict, rtype: str) -> tuple[dict, dict]:
        """A PATCH (or PUT over an existing resource): a copy of the resource with the request's
        tags and identity, and the request's properties. Validated on a copy: a refused update
        changes nothing."""
        doc = copy.deepcopy(old)
        if "tags" in body:
            doc["tags"] = _tags(body["tags"])
        if "identity" in body:
            doc["identity"] = self._identity(body["identity"], rtype)
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties' must be an object.")
        return doc, properties

    def _identity_view(self, identity: Optional[dict]) -> Optional[dict]:
        if not identity:
            return {"type": "None"}
        out = {}
        for rid in identity["userAssignedIdentities"]:
            principal = self.identity_principal(rid)
            out[rid] = {"principalId": principal.object_id, "clientId": principal.client_id}
        return {"type": identity["type"], "tenantId": self.rm._authority.tenant_id, "userAssignedIdentities": out}

    @staticmethod
    def _assigned(identity: Optional[dict], rid: str) -> Optional[str]:
        """The identity's resource id as the resource holds it, or None if it does not hold it."""
        for held in (identity or {}).get("userAssignedIdentities", {}):
            if held.lower() == (rid or "").lower():
                return held
        return None

    # -- the CMK check ----------------------------------------------------------------

    def _hsm_for(self, uri: str):
        parts = urlsplit(uri or "")
        for hsm in self.rm.managed_hsms.hsms.values():
            own = urlsplit(hsm.props.base_url)
            if parts.scheme == "https" and parts.netloc.lower() == own.netloc.lower():
                return hsm
        return None

    async def check_key(self, identity_rid: str, vault_uri: str, key_name: str, key_version: str) -> dict:
        """Run the service's checks as that identity; the key bundle's ``kid`` etc., or CmkError."""
        hsm = self._hsm_for(vault_uri)
        if hsm is None:
            raise CmkError("unreachable", f"The key vault '{vault_uri}' could not be reached: it is none of this "
                                          "cloud's managed HSMs.")
        if not hsm.props.purge_protection:
            raise CmkError("purge_protection", f"The managed HSM '{hsm.props.name}' does not have purge protection "
                                               "enabled; customer-managed keys need soft delete and purge protection.")
        principal = self.identity_principal(identity_rid)
        token = self.rm._authority.issue(principal, HSM_RESOURCE)
        transport = httpx.ASGITransport(app=hsm)
        path = f"/keys/{key_name}" + (f"/{key_version}" if key_version else "")
        async with httpx.AsyncClient(transport=transport, base_url=hsm.props.base_url,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            got = await client.get(path, params={"api-version": HSM_API_VERSION})
            self._raise_for(got, principal, key_name, hsm)
            bundle = got.json()
            attrs, key = bundle.get("attributes", {}), bundle.get("key", {})
            if not attrs.get("enabled", False):
                raise CmkError("disabled", f"The key '{key_name}' in managed HSM '{hsm.props.name}' is disabled.")
            ops = set(key.get("key_ops") or [])
            if not {"wrapKey", "unwrapKey"} <= ops:
                raise CmkError("key_ops", f"The key '{key_name}' does not allow wrapKey and unwrapKey (its key "
                                          f"operations: {', '.join(sorted(ops)) or 'none'}).")
            kty = key.get("kty", "")
            alg = "RSA-OAEP-256" if kty.startswith("RSA") else "A256KW" if kty.startswith("oct") else None
            if alg is None:
                raise CmkError("key_ops", f"The key '{key_name}' is of type {kty}, which cannot wrap keys; use an "
                                          "RSA-HSM or oct-HSM key.")
            if kty.startswith("oct") and len(base64.urlsafe_b64decode(key.get("k", "") + "==")) not in (0, 32):
                alg = "A128KW"
            kid_path = urlsplit(key["kid"]).path
            secret = os.urandom(32)
            value = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
            wrapped = await client.post(kid_path + "/wrapkey", params={"api-version": HSM_API_VERSION},
                                        json={"alg": alg, "value": value})
            if wrapped.status_code != 200 and kty.startswith("oct"):  # oct-HSM key of another size
                for other in ("A128KW", "A192KW"):
                    alg = other
                    wrapped = await client.post(kid_path + "/wrapkey", params={"api-version": HSM_API_VERSION},
                                                json={"alg": alg, "value": value})
                    if wrapped.status_code == 200:
                        break
            self._raise_for(wrapped, principal, key_name, hsm)
            unwrapped = await client.post(kid_path + "/unwrapkey", params={"api-version": HSM_API_VERSION},
                                          json={"alg": alg, "value": wrapped.json()["value"]})
            self._raise_for(unwrapped, principal, key_name, hsm)
            if base64.urlsafe_b64decode(unwrapped.json()["value"] + "==") != secret:
                raise CmkError("key_ops", f"The key '{key_name}' did not unwrap what it wrapped.")
        return {"kid": key["kid"], "hsm": hsm.props.name,
                "exp": attrs.get("exp")}

    @staticmethod
    def _raise_for(response: httpx.Response, principal, key_name: str, hsm) -> None:
        if response.status_code == 200:
            return
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        code, message = error.get("code", ""), error.get("message", "")
        inner = (error.get("innererror") or {}).get("code", "")
        if response.status_code == 404:
            raise CmkError("not_found", f"The key '{key_name}' was not found in managed HSM '{hsm.props.name}'.")
        if inner == "KeyDisabled" or "disabled" in message:
            raise CmkError("disabled", f"The key '{key_name}' in managed HSM '{hsm.props.name}' is disabled.")
        if inner in ("KeyOperationForbidden",) or "not permitted" in message:
            raise CmkError("key_ops", f"The key '{key_name}' does not allow wrapKey and unwrapKey.")
        if response.status_code in (401, 403):
            raise CmkError("permission", f"The identity with principal id '{principal.object_id}' (client id "
                                         f"'{principal.client_id}') lacks permission on key '{key_name}' in managed HSM "
                                         f"'{hsm.props.name}': assign it 'Managed HSM Crypto Service Encryption User' "
                                         f"at scope /keys/{key_name} (get, wrapKey, unwrapKey).")
        raise CmkError("unreachable", f"The managed HSM '{hsm.props.name}' refused the key operation: {code} "
                                      f"{message}".strip())

    # -- storage accounts -------------------------------------------------------------

    _STORAGE_ERRORS = {
        "purge_protection": ("KeyVaultPolicyError", "Keyvault policy recoverable is not set"),
        "permission": ("KeyVaultAuthenticationFailure",
                       "The operation failed because of authentication issue on the keyvault. For more information, "
                       "see - https://aka.ms/storagekeyvaultaccesspolicy"),
        "not_found": ("KeyVaultKeyNotFound", "The specified key does not exist in the key vault."),
        "disabled": ("KeyVaultKeyDisabled", "The specified key is disabled."),
        "key_ops": ("KeyVaultKeyOperationsNotPermitted",
                    "The specified key must allow the wrapKey and unwrapKey operations."),
        "unreachable": ("KeyVaultNotReachable", "The key vault could not be reached."),
    }

    def _storage_doc(self, group: str, name: str, body: dict) -> dict:
        location = _location(body.get("location"))
        sku = (body.get("sku") or {}).get("name") or "Standard_LRS"
        kind = body.get("kind") or "StorageV2"
        created = _now()
        return {
            "id": self._rid(group, STORAGE_TYPE, name), "name": name, "type": STORAGE_TYPE, "location": location,
            "tags": _tags(body.get("tags")), "kind": kind,
            "sku": {"name": sku, "tier": "Premium" if sku.startswith("Premium") else "Standard"},
            "identity": None,
            "properties": {
                "provisioningState": "Creating", "creationTime": created, "primaryLocation": location,
                "statusOfPrimary": "available",
                "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/",
                                     "file": f"https://{name}.file.core.windows.net/"},
                "minimumTlsVersion": "TLS1_2", "allowBlobPublicAccess": False, "supportsHttpsTrafficOnly": True,
                "publicNetworkAccess": "Enabled", "accessTier": "Hot",
                "encryption": {"keySource": "Microsoft.Storage", "requireInfrastructureEncryption": False,
                               "services": {"blob": {"enabled": True, "keyType": "Account",
                                                     "lastEnabledTime": created},
                                            "file": {"enabled": True, "keyType": "Account",
                                                     "lastEnabledTime": created}}},
            },
        }

    async def _storage_encryption(self, doc: dict, encryption: Any, identity: Optional[dict]) -> dict:
        """The account's new ``encryption`` after the service's checks (ArmError otherwise)."""
        if not isinstance(encryption, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties.encryption' must be an object.")
        current = copy.deepcopy(doc["properties"]["encryption"])
        source = encryption.get("keySource") or current.get("keySource")
        if source not in ("Microsoft.Storage", "Microsoft.Keyvault"):
            raise ArmError(400, "InvalidValuesForRequestParameters",
                           "Values for request parameters are invalid: keySource (Microsoft.Storage or "
                           "Microsoft.Keyvault).")
        if source == "Microsoft.Storage":
            current.pop("keyvaultproperties", None)
            current.pop("identity", None)
            current["keySource"] = source
            return current
        props = encryption.get("keyvaultproperties") or {}
        name, uri = props.get("keyname"), props.get("keyvaulturi")
        version = props.get("keyversion") or ""
        if not name or not uri:
            raise ArmError(400, "InvalidValuesForRequestParameters",
                           "Values for request parameters are invalid: keyvaultproperties needs keyname and "
                           "keyvaulturi.")
        wanted = ((encryption.get("identity") or {}).get("userAssignedIdentity")
                  or (current.get("identity") or {}).get("userAssignedIdentity"))
        held = self._assigned(identity, wanted) if wanted else None
        if held is None:
            raise ArmError(400, "InvalidValuesForRequestParameters",
                           "Values for request parameters are invalid: encryption.identity.userAssignedIdentity must "
                           "name one of the account's user-assigned identities.")
        try:
            checked = await self.check_key(held, uri, name, version)
        except CmkError as failure:
            code, message = self._STORAGE_ERRORS[failure.reason]
            raise ArmError(400, code, f"{message} ({failure.detail})") from None
        current.update({
            "keySource": "Microsoft.Keyvault",
            "identity": {"userAssignedIdentity": held},
            "keyvaultproperties": {"keyname": name, "keyvaulturi": uri, "keyversion": version,
                                   "currentVersionedKeyIdentifier": checked["kid"],
                                   "lastKeyRotationTimestamp": _now()},
        })
        return current

    def _storage_view(self, doc: dict) -> dict:
        self.ops.settle()
        out = copy.deepcopy(doc)
        out["identity"] = self._identity_view(doc.get("identity"))
        kv = out["properties"]["encryption"].get("keyvaultproperties")
        if kv and not kv.get("keyversion"):  # versionless: the account follows the key's newest version
            hsm = self._hsm_for(kv["keyvaulturi"])
            entry = hsm.keys.live.get(kv["keyname"].lower()) if hsm is not None else None
            if entry is not None:
                kid = hsm.keys.kid(entry, entry.latest)
                if kid != kv["currentVersionedKeyIdentifier"]:
                    kv["currentVersionedKeyIdentifier"] = kid
                    kv["lastKeyRotationTimestamp"] = _now()
                    doc["properties"]["encryption"]["keyvaultproperties"] = copy.deepcopy(kv)
        return out

    def _storage_doc_of(self, params: dict) -> dict:
        self.subs.check(params["sub"], params["rg"])
        doc = self.storage.get(params["rg"], params["name"])
        if doc is None:
            raise _not_found(STORAGE_TYPE, params["name"], params["rg"])
        return doc

    async def _sa_list(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params.get("rg"))
        return JSONResponse({"value": [self._storage_view(d) for d in self.storage.in_group(params.get("rg"))]})

    async def _sa_name_available(self, request: Request, params: dict) -> Response:
        """Storage account names are unique across the (emulated) cloud."""
        self.subs.check(params["sub"])
        name = str((await _json(request)).get("name") or "")
        if not _STORAGE_NAME.match(name):
            return JSONResponse({"nameAvailable": False, "reason": "AccountNameInvalid",
                                 "message": f"{name} is not a valid storage account name. Storage account name must "
                                            "be between 3 and 24 characters in length and use numbers and "
                                            "lower-case letters only."})
        if any(key.endswith(f"/{name}") for key in self.storage.docs):
            return JSONResponse({"nameAvailable": False, "reason": "AlreadyExists",
                                 "message": f"The storage account named {name} is already taken."})
        return JSONResponse({"nameAvailable": True})

    async def _sa_get(self, request: Request, params: dict) -> Response:
        return JSONResponse(self._storage_view(self._storage_doc_of(params)))

    async def _sa_put(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        group, name = self._group_name(params["rg"]), params["name"]
        if not _STORAGE_NAME.match(name):
            raise ArmError(400, "AccountNameInvalid", f"{name} is not a valid storage account name. Storage account "
                                                      "name must be between 3 and 24 characters in length and use "
                                                      "numbers and lower-case letters only.")
        body = await _json(request)
        old = self.storage.get(group, name)
        if old is not None:  # PUT on an existing account updates it, as the service does
            return await self._sa_update(params, old, body, status=200)
        if any(key.endswith(f"/{name}") for key in self.storage.docs):
            raise ArmError(409, "StorageAccountAlreadyTaken", f"The storage account named {name} is already taken.")
        doc = self._storage_doc(group, name, body)
        doc["identity"] = self._identity(body.get("identity"), STORAGE_TYPE)
        properties = body.get("properties") or {}
        if properties.get("encryption"):
            doc["properties"]["encryption"] = await self._storage_encryption(
                doc, properties["encryption"], doc["identity"])
        self._storage_settings(doc, properties)
        self.storage.put(group, name, doc)

        def finish(group=group, name=name) -> None:
            stored = self.storage.get(group, name)
            if stored is not None:
                stored["properties"]["provisioningState"] = "Succeeded"
                self.storage.put(group, name, stored)

        url = self.ops.start(request, params["sub"], "Microsoft.Storage", doc["location"], "asyncoperations",
                             finish=finish, result=lambda: self._storage_view(self.storage.get(group, name)))
        return Response(status_code=202, headers={"Location": url, "Retry-After": "1"})

    @staticmethod
    def _storage_settings(doc: dict, properties: dict) -> None:
        if properties.get("publicNetworkAccess") is not None:
            if properties["publicNetworkAccess"] not in ("Enabled", "Disabled", "SecuredByPerimeter"):
                raise ArmError(400, "InvalidValuesForRequestParameters", "publicNetworkAccess must be Enabled or "
                                                                          "Disabled.")
            doc["properties"]["publicNetworkAccess"] = properties["publicNetworkAccess"]
        if properties.get("minimumTlsVersion") is not None:
            if properties["minimumTlsVersion"] not in ("TLS1_2", "TLS1_3"):
                raise ArmError(400, "InvalidValuesForRequestParameters", "minimumTlsVersion must be TLS1_2 or "
                                                                          "TLS1_3.")
            doc["properties"]["minimumTlsVersion"] = properties["minimumTlsVersion"]

    async def _sa_patch(self, request: Request, params: dict) -> Response:
        return await self._sa_update(params, self._storage_doc_of(params), await _json(request), status=200)

    async def _sa_update(self, params: dict, old: dict, body: dict, status: int) -> Response:
        doc, properties = self._updated(old, body, STORAGE_TYPE)
        enc = doc["properties"]["encryption"]
        if properties.get("encryption") is not None:
            doc["properties"]["encryption"] = await self._storage_encryption(doc, properties["encryption"],
                                                                             doc["identity"])
        elif enc.get("keySource") == "Microsoft.Keyvault" and \
                self._assigned(doc["identity"], enc["identity"]["userAssignedIdentity"]) is None:
            raise ArmError(400, "InvalidValuesForRequestParameters",
                           "The user-assigned identity used for encryption cannot be removed from the account while "
                           "encryption uses it.")
        self._storage_settings(doc, properties)
        self.storage.put(self._group_name(params["rg"]), doc["name"], doc)
        return JSONResponse(self._storage_view(doc), status_code=status)

    async def _sa_delete(self, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        if self.storage.get(params["rg"], params["name"]) is None:
            return Response(status_code=204)
        self.storage.delete(params["rg"], params["name"])
        return Response(status_code=200)

    # -- flexible servers (PostgreSQL, MySQL) -----------------------------------------

    _SERVER_ERRORS = {
        "purge_protection": "SecurityInvalidAzureKeyVaultRecoveryLevel",
        "permission": "AzureKeyVaultMissingPermissions",
        "not_found": "AzureKeyVaultKeyNotFound",
        "disabled": "AzureKeyVaultKeyDisabled",
        "key_ops": "AzureKeyVaultKeyOperationsNotPermitted",
        "unreachable": "AzureKeyVaultNotReachable",
    }

    def _server_handler(self, rtype: str, verb: str):
        async def handler(request: Request, params: dict) -> Response:
            return await getattr(self, f"_server_{verb}")(rtype, request, params)
        return handler

    def _server_doc(self, rtype: str, group: str, name: str, body: dict) -> dict:
        location = _location(body.get("location"))
        properties = body.get("properties") or {}
        pg = rtype == PG_TYPE
        domain = "postgres.database.azure.com" if pg else "mysql.database.azure.com"
        return {
            "id": self._rid(group, rtype, name), "name": name, "type": rtype, "location": location,
            "tags": _tags(body.get("tags")),
            "sku": body.get("sku") or {"name": "Standard_D2ds_v4" if pg else "Standard_D2ds_v4",
                                       "tier": "GeneralPurpose"},
            "identity": None,
            "systemData": {"createdAt": _now()},
            "properties": {
                "administratorLogin": properties.get("administratorLogin") or "azureadmin",
                "version": str(properties.get("version") or ("16" if pg else "8.0.21")),
                "state": "Ready", "fullyQualifiedDomainName": f"{name}.{domain}",
                "storage": {"storageSizeGB": 128, **({"autoGrow": "Disabled"} if pg else {"autoGrow": "Enabled"})},
                "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
                "highAvailability": {"mode": "Disabled"},
                "network": {"publicNetworkAccess": "Disabled"},
                "dataEncryption": {"type": "SystemManaged"} if pg else {"type": "SystemManaged"},
                "availabilityZone": "1", "replicationRole": "None" if not pg else "Primary",
                "provisioningState": "Creating",
            },
        }

    async def _server_encryption(self, rtype: str, doc: dict, value: Any, identity: Optional[dict]) -> dict:
        if not isinstance(value, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties.dataEncryption' must be an object.")
        kind = value.get("type") or doc["properties"]["dataEncryption"].get("type")
        if kind == "SystemManaged":
            return {"type": "SystemManaged"}
        if kind != "AzureKeyVault":
            raise ArmError(400, "InvalidParameterValue", "dataEncryption.type must be SystemManaged or AzureKeyVault.")
        uri = value.get("primaryKeyURI") or value.get("primaryKeyUri")
        rid = value.get("primaryUserAssignedIdentityId")
        if not uri or not rid:
            raise ArmError(400, "InvalidParameterValue", "dataEncryption of type AzureKeyVault needs primaryKeyURI "
                                                          "and primaryUserAssignedIdentityId.")
        held = self._assigned(identity, rid)
        if held is None:
            raise ArmError(400, "InvalidUserAssignedIdentity",
                           f"The user-assigned identity '{rid}' given for data encryption is not assigned to the "
                           f"server '{doc['name']}'.")
        parts = urlsplit(uri)
        segments = [s for s in parts.path.split("/") if s]
        if parts.scheme != "https" or len(segments) not in (2, 3) or segments[0] != "keys":
            raise ArmError(400, "InvalidParameterValue", f"The key URI '{uri}' is not a key identifier: "
                                                          "https://<hsm>/keys/<name>[/<version>].")
        vault = f"{parts.scheme}://{parts.netloc}/"
        try:
            checked = await self.check_key(held, vault, segments[1], segments[2] if len(segments) == 3 else "")
        except CmkError as failure:
            code = self._SERVER_ERRORS[failure.reason]
            if failure.reason == "permission":
                principal = self.identity_principal(held)
                message = (f"The server '{doc['name']}' requires the following Azure Key Vault permissions: 'get, "
                           f"wrapKey, unwrapKey'. Please grant any missing permissions to the identity with principal "
                           f"id '{principal.object_id}'. {failure.detail}")
            else:
                message = f"The operation could not be completed on the server '{doc['name']}': {failure.detail}"
            raise ArmError(400, code, message) from None
        out = {"type": "AzureKeyVault", "primaryKeyURI": uri, "primaryUserAssignedIdentityId": held,
               "primaryEncryptionKeyStatus": "Valid"}
        if rtype == MYSQL_TYPE:
            out.pop("primaryEncryptionKeyStatus")
        out["_kid"] = checked["kid"]
        return out

    def key_usable(self, identity_rid: str, key_uri: str) -> bool:
        """Whether the identity can still use the key now: it exists, is enabled, and RBAC lets it unwrap."""
        parts = urlsplit(key_uri)
        segments = [s for s in parts.path.split("/") if s]
        hsm = self._hsm_for(f"{parts.scheme}://{parts.netloc}/")
        if hsm is None or len(segments) not in (2, 3):
            return False
        entry = hsm.keys.live.get(segments[1].lower())
        version = entry and (entry.versions.get(segments[2]) if len(segments) == 3 else entry.latest)
        if not version or not version.enabled:
            return False
        principal = self.identity_principal(identity_rid)
        return hsm.rbac.allowed(principal.object_id, "keys/unwrap/action", scopes_for_key(segments[1]))

    def _server_view(self, doc: dict) -> dict:
        self.ops.settle()
        out = copy.deepcopy(doc)
        out["identity"] = self._identity_view(doc.get("identity"))
        encryption = out["properties"]["dataEncryption"]
        encryption.pop("_kid", None)
        if encryption.get("type") == "AzureKeyVault":  # the service notices a key it can no longer use
            usable = self.key_usable(encryption["primaryUserAssignedIdentityId"], encryption["primaryKeyURI"])
            if doc["type"] == PG_TYPE:  # MySQL shows neither
                encryption["primaryEncryptionKeyStatus"] = "Valid" if usable else "Invalid"
                if not usable and out["properties"]["state"] == "Ready":
                    out["properties"]["state"] = "Inaccessible"
        return out

    def _server_of(self, rtype: str, params: dict) -> dict:
        self.subs.check(params["sub"], params["rg"])
        doc = self.servers[rtype].get(params["rg"], params["name"])
        if doc is None:
            raise _not_found(rtype, params["name"], params["rg"])
        return doc

    async def _server_list(self, rtype: str, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params.get("rg"))
        return JSONResponse({"value": [self._server_view(d) for d in self.servers[rtype].in_group(params.get("rg"))]})

    async def _server_get(self, rtype: str, request: Request, params: dict) -> Response:
        return JSONResponse(self._server_view(self._server_of(rtype, params)))

    async def _server_put(self, rtype: str, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        group, name = self._group_name(params["rg"]), params["name"]
        old = self.servers[rtype].get(group, name)
        body = await _json(request)
        if old is not None:
            return await self._server_update(rtype, request, params, old, body)
        if not _SERVER_NAME.match(name):
            raise ArmError(400, "InvalidServerName", f"The server name '{name}' is invalid: 3 to 63 lower-case letters, "
                                                     "digits or '-', not starting or ending with '-'.")
        doc = self._server_doc(rtype, group, name, body)
        doc["identity"] = self._identity(body.get("identity"), rtype)
        properties = body.get("properties") or {}
        if properties.get("dataEncryption"):
            doc["properties"]["dataEncryption"] = await self._server_encryption(
                rtype, doc, properties["dataEncryption"], doc["identity"])
        self.servers[rtype].put(group, name, doc)
        return self._server_lro(rtype, request, params, group, name, "Ready", status=202)

    def _server_lro(self, rtype: str, request: Request, params: dict, group: str, name: str, state: str,
                    status: int) -> Response:
        collection = self.servers[rtype]
        doc = collection.get(group, name)
        doc["properties"]["provisioningState"] = "Creating" if status == 202 and state == "Ready" else "Updating"

        def finish() -> None:
            stored = collection.get(group, name)
            if stored is not None:
                stored["properties"]["provisioningState"] = "Succeeded"
                stored["properties"]["state"] = state
                collection.put(group, name, stored)

        collection.put(group, name, doc)
        url = self.ops.start(request, params["sub"], rtype.split("/")[0], doc["location"], "azureAsyncOperation",
                             finish=finish)
        return Response(status_code=status, headers={"Azure-AsyncOperation": url, "Retry-After": "1"})

    async def _server_patch(self, rtype: str, request: Request, params: dict) -> Response:
        old = self._server_of(rtype, params)
        return await self._server_update(rtype, request, params, old, await _json(request))

    async def _server_update(self, rtype: str, request: Request, params: dict, old: dict, body: dict) -> Response:
        doc, properties = self._updated(old, body, rtype)
        enc = doc["properties"]["dataEncryption"]
        if properties.get("dataEncryption"):
            doc["properties"]["dataEncryption"] = await self._server_encryption(
                rtype, doc, properties["dataEncryption"], doc["identity"])
        elif enc.get("type") == "AzureKeyVault" and \
                self._assigned(doc["identity"], enc["primaryUserAssignedIdentityId"]) is None:
            raise ArmError(400, "InvalidUserAssignedIdentity",
                           "The user-assigned identity used for data encryption cannot be removed from the server "
                           "while data encryption uses it.")
        group = self._group_name(params["rg"])
        self.servers[rtype].put(group, doc["name"], doc)
        return self._server_lro(rtype, request, params, group, doc["name"], doc["properties"]["state"], status=202)

    async def _server_delete(self, rtype: str, request: Request, params: dict) -> Response:
        self.subs.check(params["sub"], params["rg"])
        doc = self.servers[rtype].get(params["rg"], params["name"])
        if doc is None:
            return Response(status_code=204)
        self.servers[rtype].delete(params["rg"], params["name"])
        url = self.ops.start(request, params["sub"], rtype.split("/")[0], doc["location"], "azureAsyncOperation")
        return Response(status_code=202, headers={"Azure-AsyncOperation": url, "Retry-After": "1"})

    # -- the demo estate --------------------------------------------------------------

    def seed_demo_estate(self) -> None:
        """A demo estate for ``make run`` (``serve --demo-estate``); kept if already there."""
        if self.store.get(_SCOPE, "meta", "demo-estate") or self.groups.docs:
            return
        sub = self.subs.subscription_id
        estate = [("rg-payments-weu", "westeurope"), ("rg-payments-neu", "northeurope"),
                  ("rg-identities", "westeurope")]
        for group, location in estate:
            self.groups.put(group, "", self._group_doc(group, location, {"env": "demo"}))
        for name, location in (("id-payments-cmk", "westeurope"), ("id-ledger-cmk", "northeurope")):
            doc = {"id": self._rid("rg-identities", UAMI_TYPE, name), "name": name, "type": UAMI_TYPE,
                   "location": location, "tags": {"env": "demo"}}
            self.identity_principal(doc["id"])
            self.identities.put("rg-identities", name, doc)
        for group, name, location in (("rg-payments-weu", "stpaymentsweu01", "westeurope"),
                                      ("rg-payments-weu", "stinvoicesweu01", "westeurope"),
                                      ("rg-payments-neu", "stpaymentsneu01", "northeurope")):
            doc = self._storage_doc(group, name, {"location": location, "tags": {"env": "demo"}})
            doc["properties"]["provisioningState"] = "Succeeded"
            self.storage.put(group, name, doc)
        for rtype, group, name, location in ((PG_TYPE, "rg-payments-weu", "psql-payments-weu", "westeurope"),
                                             (PG_TYPE, "rg-payments-neu", "psql-payments-neu", "northeurope"),
                                             (MYSQL_TYPE, "rg-payments-weu", "mysql-ledger-weu", "westeurope"),
                                             (MYSQL_TYPE, "rg-payments-neu", "mysql-ledger-neu", "northeurope")):
            doc = self._server_doc(rtype, group, name, {"location": location, "tags": {"env": "demo"}})
            doc["properties"]["provisioningState"] = "Succeeded"
            self.servers[rtype].put(group, name, doc)
        # A CMK demo needs what the services check: the primary HSM keeps deleted keys until
        # their retention ends (purge protection, which cannot be turned off again).
        managed = self.rm.managed_hsms
        primary = managed.hsms.get("primary")
        if primary is not None and not primary.props.purge_protection:
            primary.props.update(managed._store, {"retention_days": primary.props.retention_days,
                                                  "purge_protection": True})
            primary.keys.invalidate()
        self.store.put(_SCOPE, "meta", "demo-estate", {"subscription": sub, "seeded": _now()})


def install(rm: "ResourceManager") -> CmkServices:
    """Serve the CMK resources and the HSM extras on ``rm`` (routes first: they take precedence)."""
    from .arm_hsm_extras import HsmExtras

    services = CmkServices(rm)
    extras = HsmExtras(rm, services)
    compiled = [(method, re.compile(pattern, re.IGNORECASE), handler)
                for method, pattern, handler in services.routes() + extras.routes()]
    rm._routes[:0] = compiled
    rm.services, rm.extras = services, extras
    return services
