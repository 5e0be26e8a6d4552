"""State survives a restart with the same directory; other emulators are other security domains."""

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultSetting, KeyVaultSettingsClient
from azure.keyvault.keys import KeyClient

from tests.support.emulator import EmulatorProcess

from .conftest import DEFINITION_PREFIX, ROLE_IDS


def _clients(process: EmulatorProcess, principal="bootstrap-admin", hsm="primary"):
    credential = process.credential(principal)
    options = process.client_options()
    url = process.hsm_url(hsm)
    return (KeyClient(url, credential, **options), KeyVaultAccessControlClient(url, credential, **options),
            KeyVaultSettingsClient(url, credential, **options))


def test_restart_with_the_same_directory_keeps_state(tmp_path, key_client):
    key_client.create_ec_key("foreign-key")
    foreign_backup = key_client.backup_key("foreign-key")
    durable = EmulatorProcess(tmp_path / "state", hsms=("primary",), ephemeral=False)
    with durable:
        keys, rbac, settings = _clients(durable)
        created = keys.create_rsa_key("survivor", tags={"keep": "me"})
        keys.create_ec_key("gone")
        keys.begin_delete_key("gone").wait()
        principal = durable.create_principal("persisted")
        rbac.create_role_assignment("/keys/survivor", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                    principal["object_id"], name="persisted-assignment")
        settings.update_setting(KeyVaultSetting(name="AllowKeyManagementOperationsThroughARM", value=True))
        first_endpoints = durable.endpoints

    with durable:
        assert durable.endpoints["tenant_id"] == first_endpoints["tenant_id"]
        assert durable.endpoints["principals"] == first_endpoints["principals"]
        assert durable.endpoints["ca_bundle"] == first_endpoints["ca_bundle"]
        keys, rbac, settings = _clients(durable)
        again = keys.get_key("survivor")
        assert again.properties.version == created.properties.version and again.key.n == created.key.n
        assert again.properties.tags == {"keep": "me"}
        assert keys.get_deleted_key("gone").name == "gone"
        assert rbac.get_role_assignment("/keys/survivor", "persisted-assignment").properties.principal_id == \
            principal["object_id"]
        assert settings.get_setting("AllowKeyManagementOperationsThroughARM").getboolean()
        # The principal created before the restart still signs in and uses its key-scoped role.
        durable.principals["persisted"] = principal
        principal_keys, _, _ = _clients(durable, "persisted")
        assert principal_keys.get_key("survivor").name == "survivor"
        # A key backup from another emulator belongs to another security domain.
        with pytest.raises(HttpResponseError) as info:
            keys.restore_key_backup(foreign_backup)
        assert info.value.status_code == 400


def test_ephemeral_emulator_starts_empty_each_time(tmp_path):
    ephemeral = EmulatorProcess(tmp_path / "mem", hsms=("solo",))
    with ephemeral:
        keys, _, _ = _clients(ephemeral, hsm="solo")
        keys.create_ec_key("transient")
        tenant = ephemeral.endpoints["tenant_id"]
    with ephemeral:
        keys, _, _ = _clients(ephemeral, hsm="solo")
        assert [k.name for k in keys.list_properties_of_keys()] == []
        assert ephemeral.endpoints["tenant_id"] != tenant
        assert list(ephemeral.endpoints["hsms"]) == ["solo"]
