"""Local RBAC through KeyVaultAccessControlClient, and its enforcement on data-plane calls."""

import json
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration import KeyVaultDataAction, KeyVaultPermission, KeyVaultRoleScope
from azure.keyvault.keys import KeyClient

from .conftest import DEFINITION_PREFIX, ROLE_IDS

RECORDING = Path(__file__).parents[2] / "hsm_emulator" / "data" / "builtin_roles.json"


def test_built_in_roles_are_served_verbatim(raw):
    body = raw("GET", "/providers/Microsoft.Authorization/roleDefinitions?api-version=2025-07-01", token=True)
    assert body.json()["value"][:10] == json.loads(RECORDING.read_text())
    assert len(body.content) >= 7992  # the recorded list alone is 7992 bytes


def test_built_in_roles_through_the_sdk(access_client):
    roles = {d.role_name: d for d in access_client.list_role_definitions(KeyVaultRoleScope.GLOBAL)}
    user = roles["Managed HSM Crypto User"]
    assert user.name == ROLE_IDS["Crypto User"] and user.role_type == "AKVBuiltInRole"
    assert user.id == DEFINITION_PREFIX + ROLE_IDS["Crypto User"]
    assert KeyVaultDataAction.SIGN_HSM_KEY in user.permissions[0].data_actions
    assert access_client.get_role_definition("/", ROLE_IDS["Administrator"]).role_name == "Managed HSM Administrator"


def test_bootstrap_admin_holds_the_three_initial_roles(emulator, access_client):
    admin = emulator.endpoints["principals"]["bootstrap-admin"]["object_id"]
    held = {a.properties.role_definition_id for a in access_client.list_role_assignments("/")
            if a.properties.principal_id == admin and a.properties.scope == "/"}
    assert held == {DEFINITION_PREFIX + ROLE_IDS[r] for r in ("Administrator", "Crypto Officer", "Crypto User")}


def test_custom_role_definition_lifecycle(access_client):
    created = access_client.set_role_definition(
        "/", name="definition-name", role_name="role-name", description="test",
        permissions=[KeyVaultPermission(data_actions=[KeyVaultDataAction.READ_HSM_KEY])])
    assert created.id == DEFINITION_PREFIX + "definition-name" and created.role_type == "CustomRole"
    assert created.assignable_scopes == ["/"]
    assert created.permissions[0].not_data_actions == [] and created.permissions[0].actions == []
    updated = access_client.set_role_definition(
        "/", name="definition-name", role_name="role-name2",
        permissions=[KeyVaultPermission(data_actions=[], not_data_actions=[KeyVaultDataAction.READ_HSM_KEY])])
    assert updated.description == "" and updated.role_name == "role-name2"
    names = [d.name for d in access_client.list_role_definitions("/")]
    assert names[-1] == "definition-name" and len(names) == len(set(names))
    assert access_client.get_role_definition("/", "definition-name").role_name == "role-name2"
    access_client.delete_role_definition("/", "definition-name")
    with pytest.raises(ResourceNotFoundError):
        access_client.get_role_definition("/", "definition-name")


def test_built_in_roles_are_read_only(access_client):
    with pytest.raises(HttpResponseError) as info:
        access_client.set_role_definition("/", name=ROLE_IDS["Crypto User"], role_name="hijack")
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError):
        access_client.delete_role_definition("/", ROLE_IDS["Crypto User"])


def test_role_assignment_lifecycle_and_filter(emulator, access_client):
    principal = emulator.create_principal("assignee")
    definition_id = DEFINITION_PREFIX + ROLE_IDS["Crypto Auditor"]
    created = access_client.create_role_assignment("/", definition_id, principal["object_id"], name="some-uuid")
    assert created.role_assignment_id == "/providers/Microsoft.Authorization/roleAssignments/some-uuid"
    assert created.properties.scope == "/" and created.properties.role_definition_id == definition_id
    assert access_client.get_role_assignment("/", "some-uuid").properties.principal_id == principal["object_id"]
    filtered = list(access_client.list_role_assignments("/", filter=f"principalId eq '{principal['object_id']}'"))
    assert [a.name for a in filtered] == ["some-uuid"]
    access_client.delete_role_assignment("/", "some-uuid")
    assert "some-uuid" not in [a.name for a in access_client.list_role_assignments("/")]
    with pytest.raises(ResourceNotFoundError):
        access_client.get_role_assignment("/", "some-uuid")
    access_client.delete_role_assignment("/", "some-uuid")  # the SDK swallows the 404


def test_assignments_at_keys_and_key_scope(emulator, access_client, name):
    principal = emulator.create_principal("scoped")
    at_keys = access_client.create_role_assignment(KeyVaultRoleScope.KEYS, DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                                   principal["object_id"])
    at_key = access_client.create_role_assignment(f"/keys/{name}", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                                  principal["object_id"])
    assert at_keys.role_assignment_id.startswith("/keys/providers/Microsoft.Authorization/roleAssignments/")
    assert at_key.properties.scope == f"/keys/{name}"
    listed = {a.name for a in access_client.list_role_assignments(f"/keys/{name}")}
    assert {at_keys.name, at_key.name} <= listed


def test_assignment_to_an_unknown_role_is_refused(emulator, access_client):
    with pytest.raises(HttpResponseError) as info:
        access_client.create_role_assignment("/", DEFINITION_PREFIX + "00000000-0000-0000-0000-000000000000",
                                             emulator.create_principal("nobody")["object_id"])
    assert info.value.status_code == 400


def _key_client(emulator, principal):
    return KeyClient(emulator.hsm_url(), emulator.credential(principal), **emulator.client_options())


def test_principal_without_roles_is_denied(emulator, key_client, name):
    key_client.create_ec_key(name)
    stranger = _key_client(emulator, emulator.create_principal("stranger"))
    with pytest.raises(HttpResponseError) as info:
        stranger.get_key(name)
    assert info.value.status_code == 403 and info.value.error.code == "AccessDenied"
    assert info.value.error.message.startswith(
        f"Not authorized to access Microsoft.KeyVault/managedHsm/keys/read/action on /keys/{name}")


def test_role_at_another_keys_scope_grants_nothing_here(emulator, key_client, principal_with, name):
    key_client.create_ec_key(name + "-mine")
    key_client.create_ec_key(name + "-theirs")
    holder = _key_client(emulator, principal_with("Crypto User", scope=f"/keys/{name}-mine"))
    assert holder.get_key(name + "-mine").name == name + "-mine"
    with pytest.raises(HttpResponseError) as info:
        holder.get_key(name + "-theirs")
    assert info.value.status_code == 403
    with pytest.raises(HttpResponseError):
        list(holder.list_properties_of_keys())  # listing needs the role at /keys or /


def test_administrator_alone_has_no_key_actions(emulator, principal_with, name):
    admin_only = _key_client(emulator, principal_with("Administrator"))
    with pytest.raises(HttpResponseError) as info:
        admin_only.create_rsa_key(name)
    assert info.value.status_code == 403


def test_crypto_officer_may_purge_but_not_read(emulator, key_client, principal_with, name):
    officer = _key_client(emulator, principal_with("Crypto Officer"))
    key_client.create_ec_key(name)
    key_client.begin_delete_key(name).wait()
    assert officer.get_deleted_key(name).name == name
    officer.purge_deleted_key(name)
    with pytest.raises(HttpResponseError) as info:
        officer.get_key("anything")
    assert info.value.status_code == 403


def test_not_data_actions_remove_permissions(emulator, access_client, key_client, name):
    definition = access_client.set_role_definition("/", role_name="all but delete", permissions=[KeyVaultPermission(
        data_actions=["Microsoft.KeyVault/managedHsm/keys/*"],
        not_data_actions=[KeyVaultDataAction.DELETE_HSM_KEY])])
    principal = emulator.create_principal("wildcard")
    access_client.create_role_assignment("/", definition.id, principal["object_id"])
    client = _key_client(emulator, principal)
    client.create_ec_key(name)
    assert client.get_key(name).name == name
    with pytest.raises(HttpResponseError) as info:
        client.begin_delete_key(name)
    assert info.value.status_code == 403


def test_role_definition_in_use_cannot_be_deleted(emulator, access_client):
    definition = access_client.set_role_definition("/", role_name="in use", permissions=[])
    access_client.create_role_assignment("/", definition.id, emulator.create_principal("user")["object_id"])
    with pytest.raises(HttpResponseError) as info:
        access_client.delete_role_definition("/", definition.name)
    assert info.value.status_code == 409


def test_rbac_reads_need_a_role(emulator):
    from azure.keyvault.administration import KeyVaultAccessControlClient

    client = KeyVaultAccessControlClient(emulator.hsm_url(), emulator.credential(emulator.create_principal("no-rbac")),
                                         **emulator.client_options())
    with pytest.raises(HttpResponseError) as info:
        list(client.list_role_assignments("/"))
    assert info.value.status_code == 403 and info.value.error.code == "AccessDenied"
