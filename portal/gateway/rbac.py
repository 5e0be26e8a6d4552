"""Local RBAC of one HSM through KeyVaultAccessControlClient: role definitions and role
assignments at `/`, `/keys` and `/keys/<name>`, as plain dicts (services never hold SDK types).

Every function translates SDK errors into PortalError subclasses (`translated_errors`).
Definitions are created at scope `/` (where Managed HSM keeps them); a definition's id is
`Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/<name>`.
"""
from __future__ import annotations

import re
import uuid

from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.administration import KeyVaultDataAction, KeyVaultPermission

from portal.gateway.clients import access_control
from portal.gateway.errors import translated_errors

DEFINITION_ID_PREFIX = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
# Every data action Managed HSM knows, in the SDK's order (the picker offers these).
DATA_ACTIONS: tuple[str, ...] = tuple(action.value for action in KeyVaultDataAction)
SCOPE_RE = re.compile(r"^/(keys(/[0-9A-Za-z-]{1,127})?)?$")


def _definition(item) -> dict:
    return {
        "id": item.id or "", "name": item.name or "", "role_name": item.role_name or "",
        "description": item.description or "",
        "role_type": str(getattr(item.role_type, "value", item.role_type) or ""),
        "assignable_scopes": [str(getattr(s, "value", s)) for s in item.assignable_scopes or []],
        "permissions": [{
            "actions": list(p.actions or []), "not_actions": list(p.not_actions or []),
            "data_actions": [str(getattr(a, "value", a)) for a in p.data_actions or []],
            "not_data_actions": [str(getattr(a, "value", a)) for a in p.not_data_actions or []],
        } for p in item.permissions or []],
    }


def _assignment(item) -> dict:
    props = item.properties
    return {"id": item.role_assignment_id or "", "name": item.name or "",
            "principal_id": props.principal_id or "", "scope": props.scope or "",
            "role_definition_id": props.role_definition_id or ""}


def definition_name(definition_id: str) -> str:
    """The name (a GUID) at the end of a role definition id."""
    return (definition_id or "").rstrip("/").rsplit("/", 1)[-1]


def role_definitions_list(hsm) -> list[dict]:
    """Built-in and custom role definitions of the HSM."""
    with translated_errors(hsm=hsm.name):
        return [_definition(d) for d in access_control(hsm).list_role_definitions("/")]


def role_definition_get(hsm, name: str) -> dict | None:
    """One role definition by name (GUID), or None when the HSM has none by that name."""
    with translated_errors(hsm=hsm.name):
        try:
            return _definition(access_control(hsm).get_role_definition("/", name))
        except ResourceNotFoundError:
            return None


def role_definition_set(hsm, *, name: str | None, role_name: str, description: str,
                        data_actions: list[str], not_data_actions: list[str]) -> dict:
    """Create (name None: a new GUID) or replace a custom role definition at scope `/`."""
    permission = KeyVaultPermission(data_actions=list(data_actions),
                                    not_data_actions=list(not_data_actions))
    with translated_errors(hsm=hsm.name):
        return _definition(access_control(hsm).set_role_definition(
            "/", name=name or str(uuid.uuid4()), role_name=role_name, description=description,
            permissions=[permission], assignable_scopes=["/"]))


def role_definition_delete(hsm, name: str) -> None:
    """Delete a custom role definition (the HSM refuses one that assignments still use)."""
    with translated_errors(hsm=hsm.name):
        access_control(hsm).delete_role_definition("/", name)


def role_assignments_list(hsm, scope: str = "/") -> list[dict]:
    """Role assignments at, above and below `scope` (`/` lists every assignment)."""
    with translated_errors(hsm=hsm.name):
        return [_assignment(a) for a in access_control(hsm).list_role_assignments(scope)]


def role_assignment_get(hsm, name: str, scope: str = "/") -> dict | None:
    """One role assignment by name, or None when it does not exist."""
    with translated_errors(hsm=hsm.name):
        try:
            return _assignment(access_control(hsm).get_role_assignment(scope, name))
        except ResourceNotFoundError:
            return None


def role_assignment_create(hsm, *, scope: str, definition_id: str, principal_id: str,
                           name: str) -> dict:
    """Assign a role at a scope. `name` (a GUID chosen by the caller) makes it idempotent:
    the HSM answers a repeat with the same assignment."""
    with translated_errors(hsm=hsm.name):
        return _assignment(access_control(hsm).create_role_assignment(
            scope, definition_id, principal_id, name=name))


def role_assignment_delete(hsm, *, scope: str, name: str) -> None:
    """Remove a role assignment (an assignment already gone is not an error)."""
    with translated_errors(hsm=hsm.name):
        access_control(hsm).delete_role_assignment(scope, name)
