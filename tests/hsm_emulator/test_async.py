"""The asyncio clients (aiohttp transport) against the emulator."""

import hashlib

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.keyvault.administration import KeyVaultSetting
from azure.keyvault.administration.aio import KeyVaultAccessControlClient, KeyVaultSettingsClient
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import EncryptionAlgorithm, SignatureAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient

from .conftest import DEFINITION_PREFIX, ROLE_IDS


@pytest.mark.asyncio
async def test_async_key_lifecycle_and_crypto(emulator, name):
    async with emulator.async_credential() as credential, \
            KeyClient(emulator.hsm_url(), credential, **emulator.client_options()) as client:
        key = await client.create_rsa_key(name, size=2048)
        assert (await client.get_key(name)).id == key.id
        names = [item.name async for item in client.list_properties_of_keys()]
        assert name in names
        async with CryptographyClient(key, credential, **emulator.client_options()) as crypto:
            digest = hashlib.sha256(b"async").digest()
            signature = (await crypto.sign(SignatureAlgorithm.ps256, digest)).signature
            assert (await crypto.verify(SignatureAlgorithm.ps256, digest, signature)).is_valid
            encrypted = await crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"secret")
            assert (await crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, encrypted.ciphertext)).plaintext == b"secret"
        deleted = await client.delete_key(name)
        assert deleted.recovery_id.endswith(f"/deletedkeys/{name}")
        with pytest.raises(ResourceExistsError):
            await client.create_ec_key(name)
        await client.purge_deleted_key(name)


@pytest.mark.asyncio
async def test_async_access_control_and_settings(emulator):
    principal = emulator.create_principal("async-assignee")
    async with emulator.async_credential() as credential:
        async with KeyVaultAccessControlClient(emulator.hsm_url(), credential, **emulator.client_options()) as rbac:
            assignment = await rbac.create_role_assignment("/keys", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                                           principal["object_id"])
            assert assignment.properties.scope == "/keys"
            roles = [d.role_name async for d in rbac.list_role_definitions("/")]
            assert "Managed HSM Crypto Officer" in roles
            await rbac.delete_role_assignment("/keys", assignment.name)
        async with KeyVaultSettingsClient(emulator.hsm_url(), credential, **emulator.client_options()) as settings:
            setting = await settings.get_setting("AllowKeyManagementOperationsThroughARM")
            assert setting.setting_type == "boolean"
            with pytest.raises(HttpResponseError):
                await settings.update_setting(KeyVaultSetting(name="AllowKeyManagementOperationsThroughARM",
                                                              value="nope"))


@pytest.mark.asyncio
async def test_async_client_is_denied_without_role(emulator, name):
    stranger = emulator.create_principal("async-stranger")
    async with emulator.async_credential(stranger) as credential, \
            KeyClient(emulator.hsm_url(), credential, **emulator.client_options()) as client:
        with pytest.raises(HttpResponseError) as info:
            await client.create_ec_key(name)
        assert info.value.status_code == 403
