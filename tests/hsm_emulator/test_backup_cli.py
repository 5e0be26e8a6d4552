"""The real Azure CLI: ``az keyvault backup start``, ``az keyvault restore start`` (full and
``--key-name``) with a SAS token and with the managed identity, and ``az keyvault update-hsm
--mi-user-assigned`` against the emulator's Resource Manager.

Sign-in and the custom cloud come from test_azure_cli.py's fixtures.
"""

import uuid

import pytest

from . import test_azure_cli as _cli
from tests.support.blobs import container_create, container_sas

# The CLI fixtures (private configuration directory, custom cloud, sign-in), shared.
az = _cli.az
signed_in = _cli.signed_in


@pytest.fixture(scope="module")
def storage(emulator):
    return emulator.endpoints["storage"]


@pytest.fixture(scope="module")
def container(emulator):
    return container_create(emulator, "cli")


@pytest.fixture(scope="module")
def sas(storage, container):
    return container_sas(storage, container)


def test_az_backup_start_and_restore_start_with_a_sas_token(signed_in, az, emulator, storage, container, sas,
                                                           key_client):
    hsm = ["--hsm-name", emulator.hsm_url().removeprefix("https://")]
    url = f"{storage['blob_endpoint']}/{container}"
    name = f"cli-bk-{uuid.uuid4().hex[:10]}"
    key_client.create_ec_key(name)

    result = az("keyvault", "backup", "start", *hsm, "--storage-resource-uri", url, "--storage-container-SAS-token", sas)
    folder_url = result["folderUrl"]
    assert folder_url.startswith(f"{url}/mhsm-primary-")
    folder = folder_url.rsplit("/", 1)[1]

    key_client.begin_delete_key(name).wait()
    key_client.purge_deleted_key(name)
    az("keyvault", "restore", "start", *hsm, "--storage-resource-uri", url, "--backup-folder", folder,
       "--storage-container-SAS-token", sas, "--key-name", name)
    assert key_client.get_key(name).name == name

    # Full restore of the primary from its own (minutes-old) backup.
    later = f"cli-later-{uuid.uuid4().hex[:8]}"
    key_client.create_ec_key(later)
    az("keyvault", "restore", "start", *hsm, "--storage-resource-uri", url, "--backup-folder", folder,
       "--storage-container-SAS-token", sas)
    assert later not in {k.name for k in key_client.list_properties_of_keys()}
    assert emulator.backup_state()["jobs"][-1]["kind"] == "restore"


def test_az_update_hsm_mi_user_assigned_then_backup_with_the_managed_identity(signed_in, az, emulator, storage,
                                                                             container):
    endpoints = emulator.endpoints
    identity = (f"/subscriptions/{endpoints['subscription_id']}/resourceGroups/identities/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/cli-{uuid.uuid4().hex[:6]}")
    updated = az("keyvault", "update-hsm", "--hsm-name", "secondary", "--resource-group",
                 endpoints["resource_group"], "--mi-user-assigned", identity)
    assert identity in updated["identity"]["userAssignedIdentities"]
    assert updated["properties"]["provisioningState"] == "Succeeded"
    shown = az("keyvault", "show", "--hsm-name", "secondary", "--resource-group", endpoints["resource_group"])
    assert shown["identity"]["userAssignedIdentities"][identity]["principalId"]

    url = f"{storage['blob_endpoint']}/{container}"
    hsm = ["--hsm-name", emulator.hsm_url("secondary").removeprefix("https://")]
    result = az("keyvault", "backup", "start", *hsm, "--storage-resource-uri", url, "--use-managed-identity", "true")
    assert result["folderUrl"].startswith(f"{url}/mhsm-secondary-")
