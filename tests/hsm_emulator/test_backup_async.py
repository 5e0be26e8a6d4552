"""KeyVaultBackupClient (asyncio, aiohttp transport): backup with SAS and with the managed
identity, full restore, selective key restore, pre-checks.

The full restore goes back into the primary from its own backup (the state it had at the
backup), so the HSM the rest of the suite shares loses nothing but this test's key.
"""


import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration.aio import KeyVaultBackupClient
from azure.keyvault.keys.aio import KeyClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import ManagedHsm, ManagedServiceIdentity, UserAssignedIdentity

from tests.support.blobs import container_create, container_sas


@pytest.fixture(scope="module")
def storage(emulator):
    return emulator.endpoints["storage"]


@pytest.fixture
def container(emulator):
    return container_create(emulator, "async")


@pytest.mark.asyncio
async def test_async_backup_full_restore_and_selective_restore_with_sas(emulator, storage, container, name):
    url = f"{storage['blob_endpoint']}/{container}"
    sas = container_sas(storage, container)
    async with emulator.async_credential() as credential, \
            KeyVaultBackupClient(emulator.hsm_url(), credential, **emulator.client_options()) as client, \
            KeyClient(emulator.hsm_url(), credential, **emulator.client_options()) as keys:
        kept = await keys.create_ec_key(name, tags={"async": "yes"})
        assert await (await client.begin_pre_backup(url, sas_token=sas)).result() is None
        folder_url = (await (await client.begin_backup(url, sas_token=sas)).result()).folder_url
        assert folder_url.startswith(f"{url}/mhsm-primary-")
        assert await (await client.begin_pre_restore(folder_url, sas_token=sas)).result() is None

        later = f"{name}-later"
        await keys.create_ec_key(later)
        # The target's own backup above is minutes old: the 30-minute rule is met.
        await (await client.begin_restore(folder_url, sas_token=sas)).result()
        with pytest.raises(ResourceNotFoundError):
            await keys.get_key(later)  # created after the backup: gone
        assert (await keys.get_key(name)).properties.version == kept.properties.version

        deleted = await keys.delete_key(name)
        assert deleted.name == name
        await keys.purge_deleted_key(name)
        await (await client.begin_restore(folder_url, sas_token=sas, key_name=name)).result()
        restored = await keys.get_key(name)
        assert restored.key.x == kept.key.x and restored.properties.tags == {"async": "yes"}


@pytest.mark.asyncio
async def test_async_backup_with_the_managed_identity(emulator, storage, container):
    endpoints = emulator.endpoints
    mgmt = KeyVaultManagementClient(emulator.credential(), endpoints["subscription_id"], base_url=endpoints["arm"],
                                    credential_scopes=["https://management.azure.com/.default"],
                                    connection_verify=emulator.ca_bundle, api_version="2026-05-15")
    identity = (f"/subscriptions/{endpoints['subscription_id']}/resourceGroups/identities/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/async-backup")
    mgmt.managed_hsms.begin_update(endpoints["resource_group"], "primary", ManagedHsm(
        location="westeurope", identity=ManagedServiceIdentity(
            type="UserAssigned", user_assigned_identities={identity: UserAssignedIdentity()}))).result()
    url = f"{storage['blob_endpoint']}/{container}"
    async with emulator.async_credential() as credential, \
            KeyVaultBackupClient(emulator.hsm_url(), credential, **emulator.client_options()) as client:
        result = await (await client.begin_backup(url, use_managed_identity=True)).result()
        assert result.folder_url.startswith(f"{url}/mhsm-primary-")
        with pytest.raises(HttpResponseError) as failed:
            await (await client.begin_pre_restore(f"{url}/mhsm-primary-1999010100000000",
                                                  use_managed_identity=True)).result()
        assert "FolderNotFound" in str(failed.value)
