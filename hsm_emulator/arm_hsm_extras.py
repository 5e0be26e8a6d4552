"""Management-plane extras of ``Microsoft.KeyVault/managedHSMs`` and Azure RBAC (issue F).

Beside ``arm.ManagedHsms`` (which serves the HSM resource itself: tags, identity, purge
protection, soft-delete retention, public network access, network ACLs):

- **Private endpoint connections** (azure-mgmt-keyvault ``mhsm_private_endpoint_connections``):
  ``GET .../managedHSMs/{name}/privateEndpointConnections`` (list), ``GET``/``PUT``/``DELETE``
  ``.../privateEndpointConnections/{connection}``. A ``PUT`` sets
  ``privateLinkServiceConnectionState`` (``status`` Approved / Rejected / Pending,
  ``description``); a rejected connection cannot be approved again (the client must
  create a new endpoint), as the service refuses. Every HSM starts with one *Pending*
  connection (from ``pe-<hsm>-clients`` in the emulator's group's virtual network), so
  approving has something to approve. The HSM resource lists them in
  ``properties.privateEndpointConnections``.
- **Regions / the multi-region replica**: ``properties.regions`` of the HSM resource
  (``[{name, isPrimary, provisioningState}]``, primary first) and ``GET .../regions``
  (``mhsm_regions.list_by_resource``). A ``PUT``/``PATCH`` of the HSM whose ``regions``
  names one extra region adds the replica (``Provisioning`` for ``REPLICA_SECONDS``, then
  ``Succeeded``); leaving it out removes it (``Deleting``, then gone). One extra region at
  most; none while another region change is still running (409), as the service does.
- **Azure RBAC** (azure-mgmt-authorization): ``roleAssignments`` at any scope of the
  subscription (the HSM resource's id in particular): list for a scope (at, above and below;
  ``$filter=atScope()``, ``principalId eq '..'``, ``assignedTo('..')``), ``PUT`` (201; the
  name is a GUID; one assignment per principal, role and scope: 409
  ``RoleAssignmentExists``), ``GET``, ``DELETE``; built-in ``roleDefinitions`` (Owner,
  Contributor, Reader, User Access Administrator, Role Based Access Control Administrator,
  Managed HSM Contributor) listed at any scope (``$filter=roleName eq '..'``) and read by
  id. These only record who may manage the HSM resource; the emulator's ARM endpoint does
  not enforce them.
"""

from __future__ import annotations

import copy
import ipaddress
import datetime
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .arm import ArmError, _json
from .arm_services import _LOCATIONS

if TYPE_CHECKING:  # pragma: no cover
    from .arm import ResourceManager
    from .arm_services import CmkServices

_SCOPE = "arm"
REPLICA_SECONDS = 2.0
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_AUTHZ = "/providers/Microsoft.Authorization"
_SUBNET = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+"
                     r"/subnets/[^/]+$", re.IGNORECASE)

BUILTIN_ROLES = [
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner",
     "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
     {"actions": ["*"], "notActions": []}),
    ("b24988ac-6180-42e0-ab88-20f7382dd24c", "Contributor",
     "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
     {"actions": ["*"], "notActions": ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                                       "Microsoft.Authorization/elevateAccess/Action"]}),
    ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", "View all resources, but does not allow you to make any "
                                                        "changes.", {"actions": ["*/read"], "notActions": []}),
    ("18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "User Access Administrator",
     "Lets you manage user access to Azure resources.",
     {"actions": ["*/read", "Microsoft.Authorization/*"], "notActions": []}),
    ("f58310d9-a9f6-439a-9e8d-f62e7b41a168", "Role Based Access Control Administrator",
     "Manage access to Azure resources by assigning roles using Azure RBAC.",
     {"actions": ["Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete",
                  "*/read"], "notActions": []}),
    ("18500a29-7fe2-46b2-a342-b16a415e101d", "Managed HSM contributor",
     "Lets you manage managed HSM pools, but not access to them.",
     {"actions": ["Microsoft.KeyVault/managedHSMs/*", "Microsoft.KeyVault/deletedManagedHsms/read",
                  "Microsoft.KeyVault/locations/deletedManagedHsms/read",
                  "Microsoft.KeyVault/locations/deletedManagedHsms/purge/action",
                  "Microsoft.KeyVault/locations/managedHsmOperationResults/read"], "notActions": []}),
]


def _check_network_acls(acls: Any) -> None:
    """400 unless ``networkAcls`` rules are IPv4 addresses/ranges and subnet ids, as the service requires."""
    if not isinstance(acls, dict):
        return
    ip_rules = acls.get("ipRules") or []
    subnets = acls.get("virtualNetworkRules") or []
    if not isinstance(ip_rules, list) or not isinstance(subnets, list) or len(ip_rules) + len(subnets) > 1000:
        raise ArmError(400, "InvalidParameter", "networkAcls: ipRules and virtualNetworkRules are lists of at most "
                                                "1000 rules together.")
    for rule in ip_rules:
        value = rule.get("value") if isinstance(rule, dict) else None
        try:
            network = ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            network = None
        if network is None or network.version != 4:
            raise ArmError(400, "InvalidParameter", f"networkAcls.ipRules: '{value}' is not an IPv4 address or "
                                                    "range (CIDR).")
    for rule in subnets:
        value = rule.get("id") if isinstance(rule, dict) else None
        if not isinstance(value, str) or not _SUBNET.match(value):
            raise ArmError(400, "InvalidParameter", f"networkAcls.virtualNetworkRules: '{value}' is not a subnet "
                                                    "resource id (/subscriptions/../virtualNetworks/<vnet>/subnets/"
                                                    "<subnet>).")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class HsmExtras:
    """Private endpoint connections, regions and Azure RBAC for the emulated HSMs."""

    def __init__(self, rm: "ResourceManager", services: "CmkServices") -> None:
        self.rm = rm
        self.hsms = rm.managed_hsms
        self.subs = rm.subscriptions
        self.services = services
        self.store = services.store
        self._pecs: dict[str, dict] = self.store.load(_SCOPE, "mhsm_pec")  # "<hsm>/<name>" -> doc
        self._regions: dict[str, dict] = self.store.load(_SCOPE, "mhsm_regions")  # hsm -> {region: {state, at}}
        self._assignments: dict[str, dict] = self.store.load(_SCOPE, "role_assignment")  # id (lower) -> doc
        self.hsms.extensions.append(self)

    def routes(self) -> list[tuple[str, str, Callable]]:
        hsm = (r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.KeyVault/"
               r"managedHSMs/(?P<name>[^/]+)")
        pec = hsm + r"/privateEndpointConnections"
        scope = r"^(?P<scope>/subscriptions/[^/]+(?:/resourceGroups/[^/]+(?:/providers/[^/]+/[^/]+/[^/]+)?)?)"
        return [
            ("GET", pec + r"/?$", self._pec_list),
            ("GET", pec + r"/(?P<pec>[^/]+)/?$", self._pec_get),
            ("PUT", pec + r"/(?P<pec>[^/]+)/?$", self._pec_put),
            ("DELETE", pec + r"/(?P<pec>[^/]+)/?$", self._pec_delete),
            ("GET", hsm + r"/regions/?$", self._regions_list),
            ("GET", scope + _AUTHZ + r"/roleAssignments/?$", self._ra_list),
            ("GET", scope + _AUTHZ + r"/roleAssignments/(?P<ra>[^/]+)/?$", self._ra_get),
            ("PUT", scope + _AUTHZ + r"/roleAssignments/(?P<ra>[^/]+)/?$", self._ra_put),
            ("DELETE", scope + _AUTHZ + r"/roleAssignments/(?P<ra>[^/]+)/?$", self._ra_delete),
            ("GET", scope + _AUTHZ + r"/roleDefinitions/?$", self._rd_list),
            ("GET", scope + _AUTHZ + r"/roleDefinitions/(?P<rd>[^/]+)/?$", self._rd_get),
            ("GET", r"^" + _AUTHZ + r"/roleDefinitions/(?P<rd>[^/]+)/?$", self._rd_get),
        ]

    def _hsm(self, params: dict) -> str:
        name, _ = self.hsms._hsm(params)
        return name

    # -- the ManagedHsms extension hooks ----------------------------------------------

    def decorate(self, name: str, properties: dict) -> None:
        """Fill ``regions`` and ``privateEndpointConnections`` of the HSM resource."""
        properties["regions"] = self._region_list(name)
        properties["privateEndpointConnections"] = [
            {"id": doc["id"], "etag": doc["etag"], "properties": copy.deepcopy(doc["properties"])}
            for doc in self._connections(name)]

    def apply(self, name: str, properties: dict) -> Callable[[], None]:
        """A PUT/PATCH of the HSM: validates ``regions``; the change is made by the callable returned."""
        _check_network_acls(properties.get("networkAcls"))
        regions = properties.get("regions")
        if regions is None:
            return lambda: None
        if not isinstance(regions, list) or not all(isinstance(r, dict) and r.get("name") for r in regions):
            raise ArmError(400, "InvalidParameter", "'regions' must be a list of {\"name\": <region>}.")
        primary = self.hsms.hsms[name].props.region
        wanted = {str(r["name"]).replace(" ", "").lower() for r in regions} - {primary}
        for region in wanted:
            if region not in _LOCATIONS:
                raise ArmError(400, "InvalidParameter", f"The region '{region}' is not available for managed HSMs.")
        if len(wanted) > 1:
            raise ArmError(400, "InvalidParameter", "A managed HSM can be extended to one region besides its "
                                                    f"primary region ({primary}).")
        current = self._replicas(name)
        if wanted == {r for r, s in current.items() if s["state"] in ("Provisioning", "Succeeded")}:
            return lambda: None
        if any(s["state"] in ("Provisioning", "Deleting") for s in current.values()):
            raise ArmError(409, "Conflict", f"A region operation is already in progress on managed HSM '{name}'; "
                                            "retry when it has completed.")
        def commit() -> None:
            now = time.time()
            states = {r: s for r, s in current.items() if r in wanted}
            for region in current:
                if region not in wanted:
                    states[region] = {"state": "Deleting", "at": now}
            for region in wanted - set(current):
                states[region] = {"state": "Provisioning", "at": now}
            self._regions[name] = states
            self.store.put(_SCOPE, "mhsm_regions", name, states)
        return commit

    # -- regions ----------------------------------------------------------------------

    def _replicas(self, name: str) -> dict:
        """The extra regions with their settled states (time moves them on)."""
        states = self._regions.get(name, {})
        now, changed = time.time(), False
        for region, state in list(states.items()):
            if now - state["at"] >= REPLICA_SECONDS:
                if state["state"] == "Provisioning":
                    states[region] = {"state": "Succeeded", "at": state["at"]}
                    changed = True
                elif state["state"] == "Deleting":
                    del states[region]
                    changed = True
        if changed:
            self._regions[name] = states
            self.store.put(_SCOPE, "mhsm_regions", name, states)
        return states

    def _region_list(self, name: str) -> list[dict]:
        primary = self.hsms.hsms[name].props.region
        out = [{"name": primary, "isPrimary": True, "provisioningState": "Succeeded"}]
        for region, state in sorted(self._replicas(name).items()):
            out.append({"name": region, "isPrimary": False, "provisioningState": state["state"]})
        return out

    async def _regions_list(self, request: Request, params: dict) -> Response:
        return JSONResponse({"value": self._region_list(self._hsm(params))})

    # -- private endpoint connections -------------------------------------------------

    def _connections(self, hsm: str) -> list[dict]:
        prefix = f"{hsm.lower()}/"
        if not self.store.get(_SCOPE, "mhsm_pec_seeded", hsm.lower()) and \
                not any(k.startswith(prefix) for k in self._pecs):
            self._seed_connection(hsm)
        return [doc for key, doc in self._pecs.items() if key.startswith(prefix)]

    def _seed_connection(self, hsm: str) -> None:
        name = f"pe-{hsm}-clients.{uuid.uuid4()}"
        sub, group = self.subs.subscription_id, self.subs.resource_group
        doc = {
            "id": f"{self.hsms.resource_id(hsm)}/privateEndpointConnections/{name}", "name": name,
            "type": "Microsoft.KeyVault/managedHSMs/privateEndpointConnections",
            "location": self.hsms.hsms[hsm].props.region, "etag": str(uuid.uuid4()),
            "properties": {
                "privateEndpoint": {"id": f"/subscriptions/{sub}/resourceGroups/{group}/providers/"
                                          f"Microsoft.Network/privateEndpoints/pe-{hsm}-clients"},
                "privateLinkServiceConnectionState": {"status": "Pending", "description": "Please approve: clients "
                                                                                          "subnet of the hub network",
                                                      "actionsRequired": "None"},
                "provisioningState": "Succeeded",
            },
        }
        self._pecs[f"{hsm.lower()}/{name.lower()}"] = doc
        self.store.put(_SCOPE, "mhsm_pec", f"{hsm.lower()}/{name.lower()}", doc)
        self.store.put(_SCOPE, "mhsm_pec_seeded", hsm.lower(), {"at": _now()})

    def _connection(self, params: dict) -> tuple[str, dict]:
        hsm = self._hsm(params)
        self._connections(hsm)
        doc = self._pecs.get(f"{hsm.lower()}/{params['pec'].lower()}")
        if doc is None:
            raise ArmError(404, "PrivateEndpointConnectionNotFound",
                           f"The private endpoint connection '{params['pec']}' of managed HSM '{hsm}' was not found.")
        return hsm, doc

    async def _pec_list(self, request: Request, params: dict) -> Response:
        return JSONResponse({"value": self._connections(self._hsm(params))})

    async def _pec_get(self, request: Request, params: dict) -> Response:
        return JSONResponse(self._connection(params)[1], headers={"ETag": self._connection(params)[1]["etag"]})

    async def _pec_put(self, request: Request, params: dict) -> Response:
        body = await _json(request)  # read before the connection: no await between its check and its write
        hsm, doc = self._connection(params)
        state = ((body.get("properties") or {}).get("privateLinkServiceConnectionState") or {})
        status = state.get("status")
        if status not in ("Approved", "Rejected", "Pending", "Disconnected"):
            raise ArmError(400, "InvalidParameter", "privateLinkServiceConnectionState.status must be Approved, "
                                                    "Rejected or Pending.")
        description = state.get("description") or ""
        if not isinstance(description, str) or len(description) > 140:
            raise ArmError(400, "InvalidParameter", "privateLinkServiceConnectionState.description must be at "
                                                    "most 140 characters.")
        old = doc["properties"]["privateLinkServiceConnectionState"]["status"]
        if old in ("Rejected", "Disconnected") and status in ("Approved", "Pending"):
            raise ArmError(400, "PrivateEndpointConnectionRejected",
                           f"The private endpoint connection '{doc['name']}' was {old.lower()}; it cannot be "
                           f"{status.lower()}. Create a new private endpoint instead.")
        doc = copy.deepcopy(doc)
        doc["properties"]["privateLinkServiceConnectionState"] = {
            "status": status, "description": description, "actionsRequired": "None"}
        doc["etag"] = str(uuid.uuid4())
        key = f"{hsm.lower()}/{doc['name'].lower()}"
        self._pecs[key] = doc
        self.store.put(_SCOPE, "mhsm_pec", key, doc)
        return JSONResponse(doc, headers={"ETag": doc["etag"]})

    async def _pec_delete(self, request: Request, params: dict) -> Response:
        try:
            hsm, doc = self._connection(params)
        except ArmError as error:
            if error.status == 404:
                return Response(status_code=204)
            raise
        key = f"{hsm.lower()}/{doc['name'].lower()}"
        del self._pecs[key]
        self.store.delete(_SCOPE, "mhsm_pec", key)
        gone = copy.deepcopy(doc)
        gone["properties"]["provisioningState"] = "Deleting"
        return JSONResponse(gone)

    # -- Azure RBAC -------------------------------------------------------------------

    def _check_scope(self, scope: str) -> str:
        """The scope, 404 unless its subscription and group exist (and the HSM, for an HSM's id)."""
        match = re.match(r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+)(?:/providers/([^/]+)/([^/]+)/([^/]+))?)?$",
                         scope, re.IGNORECASE)
        if not match:
            raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid.")
        sub, rg, ns, rtype, name = match.groups()
        self.subs.check(sub, rg)
        if ns and f"{ns}/{rtype}".lower() == "microsoft.keyvault/managedhsms":
            self.hsms._hsm({"sub": sub, "rg": rg, "name": name})
        return scope

    def _role_definition(self, guid: str, scope: str) -> Optional[dict]:
        for role_id, name, description, permissions in BUILTIN_ROLES:
            if role_id == guid.lower():
                return {"id": f"/subscriptions/{self.subs.subscription_id}{_AUTHZ}/roleDefinitions/{role_id}",
                        "name": role_id, "type": "Microsoft.Authorization/roleDefinitions",
                        "properties": {"roleName": name, "type": "BuiltInRole", "description": description,
                                       "assignableScopes": ["/"],
                                       "permissions": [{**permissions, "dataActions": [], "notDataActions": []}],
                                       "createdOn": "2015-02-02T21:55:09.8806423Z",
                                       "updatedOn": "2024-04-01T00:00:00.0000000Z"}}
        return None

    async def _rd_list(self, request: Request, params: dict) -> Response:
        self._check_scope(params["scope"])
        wanted = re.search(r"roleName\s+eq\s+'([^']*)'", request.query_params.get("$filter", ""), re.IGNORECASE)
        value = [self._role_definition(r[0], params["scope"]) for r in BUILTIN_ROLES]
        if wanted:
            value = [d for d in value if d["properties"]["roleName"].lower() == wanted.group(1).lower()]
        return JSONResponse({"value": value})

    async def _rd_get(self, request: Request, params: dict) -> Response:
        if params.get("scope"):
            self._check_scope(params["scope"])
        doc = self._role_definition(params["rd"], params.get("scope") or "/")
        if doc is None:
            raise ArmError(404, "RoleDefinitionDoesNotExist", f"The specified role definition with ID "
                                                              f"'{params['rd']}' does not exist.")
        return JSONResponse(doc)

    def _principal_type(self, object_id: str) -> Optional[str]:
        authority = self.rm._authority
        if authority.principal_by_object_id(object_id) is not None:
            return "ServicePrincipal"
        directory = getattr(authority, "directory", None)
        if directory is not None and object_id in directory.users:
            return "User"
        if directory is not None and object_id in directory.groups:
            return "Group"
        return None

    @staticmethod
    def _within(assigned: str, asked: str) -> bool:
        a, b = assigned.lower().rstrip("/"), asked.lower().rstrip("/")
        return b == a or b.startswith(a + "/")

    async def _ra_list(self, request: Request, params: dict) -> Response:
        scope = self._check_scope(params["scope"])
        query = request.query_params.get("$filter", "")
        at_scope = "atscope()" in query.lower()
        principal = re.search(r"(?:principalId\s+eq\s+|assignedTo\()'([^']*)'", query, re.IGNORECASE)
        value = []
        for doc in self._assignments.values():
            assigned = doc["properties"]["scope"]
            if not (self._within(assigned, scope) or (not at_scope and self._within(scope, assigned))):
                continue
            if principal and doc["properties"]["principalId"].lower() != principal.group(1).lower():
                continue
            value.append(doc)
        return JSONResponse({"value": value})

    def _assignment_id(self, scope: str, name: str) -> str:
        return f"{scope}{_AUTHZ}/roleAssignments/{name}"

    async def _ra_get(self, request: Request, params: dict) -> Response:
        scope = self._check_scope(params["scope"])
        doc = self._assignments.get(self._assignment_id(scope, params["ra"]).lower())
        if doc is None:
            raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{params['ra']}' is not found.")
        return JSONResponse(doc)

    async def _ra_put(self, request: Request, params: dict) -> Response:
        scope = self._check_scope(params["scope"])
        name = params["ra"]
        if not _GUID.match(name):
            raise ArmError(400, "InvalidRoleAssignmentId", f"The role assignment ID '{name}' is not valid. The role "
                                                           "assignment ID must be a GUID.")
        props = (await _json(request)).get("properties") or {}
        definition_id = str(props.get("roleDefinitionId") or "")
        guid = definition_id.rstrip("/").rsplit("/", 1)[-1]
        definition = self._role_definition(guid, scope) if _GUID.match(guid) else None
        if definition is None:
            raise ArmError(400, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{guid}' does "
                                                              "not exist.")
        principal_id = str(props.get("principalId") or "")
        kind = self._principal_type(principal_id)
        if kind is None:
            raise ArmError(400, "PrincipalNotFound", f"Principal {principal_id.replace('-', '')} does not exist in "
                                                     f"the directory {self.rm._authority.tenant_id}.")
        key = self._assignment_id(scope, name).lower()
        for other_key, other in self._assignments.items():
            p = other["properties"]
            if other_key != key and p["principalId"] == principal_id and p["scope"].lower() == scope.lower() \
                    and p["roleDefinitionId"].lower().endswith(guid.lower()):
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
        if key in self._assignments:
            existing = self._assignments[key]["properties"]
            if existing["principalId"] != principal_id or not existing["roleDefinitionId"].lower().endswith(guid.lower()):
                raise ArmError(400, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, principal ID, "
                                                                        "and scope are not allowed to be updated.")
            return JSONResponse(self._assignments[key], status_code=201)
        now = _now()
        doc = {"id": self._assignment_id(scope, name), "name": name, "type": "Microsoft.Authorization/roleAssignments",
               "properties": {"roleDefinitionId": definition["id"], "principalId": principal_id,
                              "principalType": props.get("principalType") or kind, "scope": scope,
                              "description": props.get("description"), "condition": None, "conditionVersion": None,
                              "createdOn": now, "updatedOn": now, "createdBy": None, "updatedBy": None,
                              "delegatedManagedIdentityResourceId": None}}
        self._assignments[key] = doc
        self.store.put(_SCOPE, "role_assignment", key, doc)
        return JSONResponse(doc, status_code=201)

    async def _ra_delete(self, request: Request, params: dict) -> Response:
        scope = self._check_scope(params["scope"])
        key = self._assignment_id(scope, params["ra"]).lower()
        doc = self._assignments.pop(key, None)
        if doc is None:
            return Response(status_code=204)
        self.store.delete(_SCOPE, "role_assignment", key)
        return JSONResponse(doc)

