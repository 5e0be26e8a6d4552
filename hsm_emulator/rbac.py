"""Managed HSM local RBAC: role definitions, role assignments, and the access check.

- The 10 built-in role definitions are served verbatim from a real service response
  (``data/builtin_roles.json``, recorded with api-version 2025-07-01); they are
  read-only. Custom definitions live at scope ``/``: ``PUT`` creates or updates (201
  both times, defaults filled in as the service does), ``DELETE`` answers 200 with the
  deleted definition.
- Assignments live at ``/``, ``/keys`` or ``/keys/<name>``. ``PUT`` answers 201,
  ``DELETE`` 200 with the deleted assignment. Listing at a scope returns assignments at,
  above and below it (ARM semantics; unverified for Managed HSM), narrowed by
  ``$filter=principalId eq '<id>'`` or ``atScope()``.
- ``Rbac.allowed`` decides whether a principal holds a data action at any of the given
  scopes: some assignment's role lists it in ``dataActions`` (wildcards allowed) and
  that same permission block does not exclude it in ``notDataActions``.

State persists in the store under the HSM's scope.
"""

from __future__ import annotations

import json
import re
import uuid
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Optional

from .errors import HsmError, bad_parameter, not_found
from .routing import Call, Reply, Route
from .state import Store

DATA_ACTION_PREFIX = "Microsoft.KeyVault/managedHsm/"
DEFINITION_ID_PREFIX = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
ADMINISTRATOR = "a290e904-7015-4bba-90c8-60543313cdb4"
CRYPTO_OFFICER = "515eb02d-2335-4d2d-92f2-b1cbdf9c3778"
CRYPTO_USER = "21dbd100-6940-42c2-9190-5d6cb909625b"
BOOTSTRAP_ROLES = (ADMINISTRATOR, CRYPTO_OFFICER, CRYPTO_USER)

BUILTIN_DEFINITIONS: list[dict] = json.loads(
    (Path(__file__).parent / "data" / "builtin_roles.json").read_text(encoding="utf-8")
)
_BUILTIN_BY_NAME = {d["name"].lower(): d for d in BUILTIN_DEFINITIONS}
_SCOPE_RE = re.compile(r"^/(keys(/[0-9A-Za-z-]{1,127})?)?$")
_PRINCIPAL_FILTER = re.compile(r"principalId\s+eq\s+'([^']*)'", re.IGNORECASE)
_ASSIGNED_TO_FILTER = re.compile(r"assignedTo\('([^']*)'\)", re.IGNORECASE)


def normalize_scope(prefix: str) -> str:
    """The RBAC scope named by a URL prefix (``""`` is ``/``); 400 if not a valid scope."""
    scope = prefix.rstrip("/") or "/"
    if not _SCOPE_RE.match(scope):
        raise bad_parameter(f"The scope '{scope}' is not valid; use '/', '/keys' or '/keys/<key name>'.")
    return scope


def scope_chain(scope: str) -> tuple[str, ...]:
    """The scope and its ancestors, lower-cased, most general first."""
    scope = scope.lower()
    if scope == "/":
        return ("/",)
    if scope == "/keys":
        return ("/", "/keys")
    return ("/", "/keys", scope)


def _definition_name(definition_id: str) -> str:
    return definition_id.rstrip("/").rsplit("/", 1)[-1]


class Rbac:
    """Role definitions and assignments of one HSM, with a cached access check."""

    def __init__(self, store: Store, hsm_name: str) -> None:
        self._store = store
        self._scope = f"hsm:{hsm_name}"
        self.custom: dict[str, dict] = store.load(self._scope, "role_definition")
        self.assignments: dict[str, dict] = store.load(self._scope, "role_assignment")
        self._decisions: dict[tuple, bool] = {}
        self._grants: dict[str, list[tuple[str, str]]] = {}
        self._reindex()

    # -- queries ------------------------------------------------------------------

    def definition(self, name: str) -> Optional[dict]:
        """A role definition (built-in or custom) by name, or None."""
        key = name.lower()
        return _BUILTIN_BY_NAME.get(key) or self.custom.get(key)

    def allowed(self, oid: str, action: str, scopes: tuple[str, ...]) -> bool:
        """Whether ``oid`` holds ``action`` (short form) at any of ``scopes``."""
        key = (oid, action, scopes)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(oid, DATA_ACTION_PREFIX + action, scopes)
            self._decisions[key] = decision
        return decision

    def _decide(self, oid: str, action: str, scopes: tuple[str, ...]) -> bool:
        for scope, definition_name in self._grants.get(oid.lower(), ()):
            if scope not in scopes:
                continue
            definition = self.definition(definition_name)
            if definition and _grants(definition, action):
                return True
        return False

    def _reindex(self) -> None:
        grants: dict[str, list[tuple[str, str]]] = {}
        for assignment in self.assignments.values():
            props = assignment["properties"]
            grants.setdefault(props["principalId"].lower(), []).append(
                (props["scope"].lower(), _definition_name(props["roleDefinitionId"]))
            )
        self._grants = grants
        self._decisions.clear()

    # -- mutations ----------------------------------------------------------------

    def bootstrap(self, oid: str) -> None:
        """On first start only, grant ``oid`` Administrator, Crypto Officer and Crypto User at ``/``."""
        if self._store.get(self._scope, "meta", "rbac-bootstrap") or (not self._store.durable and self.assignments):
            return
        for role in BOOTSTRAP_ROLES:
            self._put_assignment(str(uuid.uuid4()), "/", oid, DEFINITION_ID_PREFIX + role)
        self._store.put(self._scope, "meta", "rbac-bootstrap", {"principal": oid})

    def export_state(self) -> dict:
        """Custom role definitions and every role assignment, for a full backup."""
        return {"definitions": list(self.custom.values()), "assignments": list(self.assignments.values())}

    def replace_state(self, state: dict) -> None:
        """Take the role definitions and assignments of a full backup, replacing these."""
        self.custom = {d["name"].lower(): d for d in state.get("definitions", [])}
        self.assignments = {a["name"].lower(): a for a in state.get("assignments", [])}
        self._store.replace_kind(self._scope, "role_definition", self.custom)
        self._store.replace_kind(self._scope, "role_assignment", self.assignments)
        self._reindex()

    def _put_assignment(self, name: str, scope: str, principal_id: str, definition_id: str) -> dict:
        prefix = "" if scope == "/" else scope
        assignment = {
            "id": f"{prefix}/providers/Microsoft.Authorization/roleAssignments/{name}",
            "name": name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {"principalId": principal_id, "roleDefinitionId": definition_id, "scope": scope},
        }
        self.assignments[name.lower()] = assignment
        self._store.put(self._scope, "role_assignment", name.lower(), assignment)
        self._reindex()
        return assignment

    # -- HTTP ---------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Routes for ``{scope}/providers/Microsoft.Authorization/...``; match before key routes."""
        base = r"^(?P<scope>(?:/[^/]+)*)/providers/Microsoft\.Authorization/"

        def url_scopes(params: dict) -> tuple[str, ...]:
            return scope_chain(normalize_scope(params["scope"]))

        def route(method, tail, handler, action):
            return Route(method, base + tail, handler, action, scopes=url_scopes, admin_route=True)

        return [
            route("GET", r"roleDefinitions/?$", self._list_definitions, "roleDefinitions/read/action"),
            route("GET", r"roleDefinitions/(?P<name>[^/]+)$", self._get_definition, "roleDefinitions/read/action"),
            route("PUT", r"roleDefinitions/(?P<name>[^/]+)$", self._set_definition, "roleDefinitions/write/action"),
            route("DELETE", r"roleDefinitions/(?P<name>[^/]+)$", self._delete_definition, "roleDefinitions/delete/action"),
            route("GET", r"roleAssignments/?$", self._list_assignments, "roleAssignments/read/action"),
            route("GET", r"roleAssignments/(?P<name>[^/]+)$", self._get_assignment, "roleAssignments/read/action"),
            route("PUT", r"roleAssignments/(?P<name>[^/]+)$", self._create_assignment, "roleAssignments/write/action"),
            route("DELETE", r"roleAssignments/(?P<name>[^/]+)$", self._delete_assignment, "roleAssignments/delete/action"),
        ]

    async def _list_definitions(self, call: Call) -> Reply:
        normalize_scope(call.params["scope"])
        definitions = BUILTIN_DEFINITIONS + list(self.custom.values())
        match = re.search(r"roleName\s+eq\s+'([^']*)'", call.query.get("$filter", ""), re.IGNORECASE)
        if match:
            definitions = [d for d in definitions if d["properties"]["roleName"] == match.group(1)]
        return Reply(200, {"value": definitions})

    def _existing_definition(self, name: str) -> dict:
        definition = self.definition(name)
        if definition is None:
            raise not_found("RoleDefinitionNotFound", f"Role definition '{name}' was not found.")
        return definition

    async def _get_definition(self, call: Call) -> Reply:
        normalize_scope(call.params["scope"])
        return Reply(200, self._existing_definition(call.params["name"]))

    async def _set_definition(self, call: Call) -> Reply:
        if normalize_scope(call.params["scope"]) != "/":
            raise bad_parameter("Role definitions can only be created at scope '/'.")
        name = call.params["name"]
        if name.lower() in _BUILTIN_BY_NAME:
            raise bad_parameter(f"Role definition '{name}' is a built-in role and cannot be modified.")
        props = call.json().get("properties")
        if not isinstance(props, dict):
            raise bad_parameter("The parameter 'properties' is required.")
        role_type = props.get("type") or "CustomRole"
        if role_type != "CustomRole":
            raise bad_parameter("Only role definitions of type 'CustomRole' can be created.")
        definition = {
            "id": DEFINITION_ID_PREFIX + name,
            "name": name,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": _text(props.get("roleName"), "roleName"),
                "description": _text(props.get("description"), "description"),
                "type": "CustomRole",
                "permissions": [_permission(p) for p in _list(props.get("permissions"), "permissions")],
                "assignableScopes": [normalize_scope(s) for s in _list(props.get("assignableScopes"), "assignableScopes")]
                or ["/"],
            },
        }
        self.custom[name.lower()] = definition
        self._store.put(self._scope, "role_definition", name.lower(), definition)
        self._decisions.clear()
        return Reply(201, definition)

    async def _delete_definition(self, call: Call) -> Reply:
        normalize_scope(call.params["scope"])
        name = call.params["name"]
        if name.lower() in _BUILTIN_BY_NAME:
            raise bad_parameter(f"Role definition '{name}' is a built-in role and cannot be deleted.")
        definition = self.custom.get(name.lower())
        if definition is None:
            raise not_found("RoleDefinitionNotFound", f"Role definition '{name}' was not found.")
        in_use = [a for a in self.assignments.values()
                  if _definition_name(a["properties"]["roleDefinitionId"]).lower() == name.lower()]
        if in_use:
            raise HsmError(409, "Conflict", f"Role definition '{name}' is used by {len(in_use)} role assignment(s); "
                                            "delete them first.")
        del self.custom[name.lower()]
        self._store.delete(self._scope, "role_definition", name.lower())
        self._decisions.clear()
        return Reply(200, definition)

    async def _list_assignments(self, call: Call) -> Reply:
        scope = normalize_scope(call.params["scope"]).lower()
        text = call.query.get("$filter", "")
        principal = _PRINCIPAL_FILTER.search(text) or _ASSIGNED_TO_FILTER.search(text)
        at_scope_only = "atscope()" in text.replace(" ", "").lower()
        ancestors = scope_chain(scope)
        value = []
        for assignment in self.assignments.values():
            props = assignment["properties"]
            assigned = props["scope"].lower()
            related = assigned in ancestors or (not at_scope_only and (scope == "/" or assigned.startswith(scope + "/")))
            if related and (principal is None or props["principalId"].lower() == principal.group(1).lower()):
                value.append(assignment)
        return Reply(200, {"value": value})

    def _existing_assignment(self, call: Call) -> dict:
        normalize_scope(call.params["scope"])
        assignment = self.assignments.get(call.params["name"].lower())
        if assignment is None:
            raise not_found("RoleAssignmentNotFound", f"Role assignment '{call.params['name']}' was not found.")
        return assignment

    async def _get_assignment(self, call: Call) -> Reply:
        return Reply(200, self._existing_assignment(call))

    async def _create_assignment(self, call: Call) -> Reply:
        scope = normalize_scope(call.params["scope"])
        props = call.json().get("properties")
        if not isinstance(props, dict):
            raise bad_parameter("The parameter 'properties' is required.")
        principal_id = props.get("principalId")
        definition_id = props.get("roleDefinitionId")
        if not isinstance(principal_id, str) or not principal_id:
            raise bad_parameter("The parameter 'principalId' is required.")
        if not isinstance(definition_id, str) or not definition_id:
            raise bad_parameter("The parameter 'roleDefinitionId' is required.")
        definition = self.definition(_definition_name(definition_id))
        if definition is None:
            raise bad_parameter(f"The role definition '{definition_id}' does not exist.")
        name = call.params["name"]
        existing = self.assignments.get(name.lower())
        if existing is not None:
            same = (existing["properties"]["principalId"].lower() == principal_id.lower()
                    and existing["properties"]["scope"].lower() == scope.lower()
                    and existing["properties"]["roleDefinitionId"] == definition["id"])
            if not same:
                raise HsmError(409, "Conflict", f"Role assignment '{name}' already exists with different properties.")
            return Reply(201, existing)
        return Reply(201, self._put_assignment(name, scope, principal_id, definition["id"]))

    async def _delete_assignment(self, call: Call) -> Reply:
        assignment = self._existing_assignment(call)
        del self.assignments[call.params["name"].lower()]
        self._store.delete(self._scope, "role_assignment", call.params["name"].lower())
        self._reindex()
        return Reply(200, assignment)


def _grants(definition: dict, action: str) -> bool:
    """Whether a role definition's permissions include ``action`` (full form)."""
    lowered = action.lower()
    for permission in definition["properties"]["permissions"]:
        if any(fnmatchcase(lowered, p.lower()) for p in permission.get("dataActions", ())) and not any(
            fnmatchcase(lowered, p.lower()) for p in permission.get("notDataActions", ())
        ):
            return True
    return False


def _permission(value) -> dict:
    if not isinstance(value, dict):
        raise bad_parameter("Each permission must be a JSON object.")
    return {member: [_text(a, member) for a in _list(value.get(member), member)]
            for member in ("actions", "dataActions", "notActions", "notDataActions")}


def _list(value, member: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_parameter(f"The parameter '{member}' must be an array.")
    return value


def _text(value, member: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_parameter(f"The parameter '{member}' must be a string.")
    return value
