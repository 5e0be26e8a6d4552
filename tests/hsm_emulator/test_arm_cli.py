"""The real Azure CLI against the emulator's Resource Manager for customer-managed keys (issue F):
a resource group, a user-assigned identity, a storage account whose encryption is pointed at an HSM key
(`az storage account update --encryption-key-source Microsoft.Keyvault`), the HSM's replica region
(`az keyvault region add/list/remove`) and a private endpoint connection approved
(`az keyvault private-endpoint-connection approve`).

An emulator of its own (HSM ``cmk``, purge protection turned on here); the CLI fixtures are
test_azure_cli.py's.
"""

import time
import uuid

import pytest

from tests.support.emulator import EmulatorProcess

from . import test_azure_cli as _cli

az = _cli.az
signed_in = _cli.signed_in


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("arm-cli"), hsms=("cmk",), extra_args=("--no-storage",)).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def hsm(signed_in, az, emulator):
    group = emulator.endpoints["resource_group"]
    updated = az("keyvault", "update-hsm", "--hsm-name", "cmk", "--resource-group", group,
                 "--enable-purge-protection", "true")
    assert updated["properties"]["enablePurgeProtection"] is True
    return {"group": group, "url": emulator.hsm_url("cmk"), "name": emulator.hsm_url("cmk").removeprefix("https://")}


def test_az_points_a_storage_account_at_an_hsm_key(signed_in, az, emulator, hsm):
    group = f"rg-cli-{uuid.uuid4().hex[:6]}"
    assert az("group", "create", "--name", group, "--location", "westeurope")["name"] == group
    identity = az("identity", "create", "--resource-group", group, "--name", "id-cli")
    assert identity["principalId"] and identity["clientId"]
    key = az("keyvault", "key", "create", "--hsm-name", hsm["name"], "--name", "cli-cmk", "--kty", "RSA-HSM")
    az("keyvault", "role", "assignment", "create", "--hsm-name", hsm["name"], "--role",
       "Managed HSM Crypto Service Encryption User", "--assignee-object-id", identity["principalId"],
       "--assignee-principal-type", "ServicePrincipal", "--scope", "/keys/cli-cmk")
    name = f"stcli{uuid.uuid4().hex[:8]}"
    account = az("storage", "account", "create", "--name", name, "--resource-group", group, "--location",
                 "westeurope", "--sku", "Standard_LRS", "--identity-type", "UserAssigned", "--user-identity-id",
                 identity["id"])
    assert account["encryption"]["keySource"] == "Microsoft.Storage"
    updated = az("storage", "account", "update", "--name", name, "--resource-group", group,
                 "--encryption-key-source", "Microsoft.Keyvault", "--encryption-key-vault", hsm["url"] + "/",
                 "--encryption-key-name", "cli-cmk", "--key-vault-user-identity-id", identity["id"])
    kv = updated["encryption"]["keyVaultProperties"]
    assert updated["encryption"]["keySource"] == "Microsoft.Keyvault"
    assert kv["currentVersionedKeyIdentifier"] == key["key"]["kid"]
    assert updated["encryption"]["encryptionIdentity"]["encryptionUserAssignedIdentity"] == identity["id"]


def test_az_keyvault_region_add_list_remove(signed_in, az, hsm):
    args = ("--hsm-name", "cmk", "--resource-group", hsm["group"])
    az("keyvault", "region", "add", *args, "--region", "northeurope")
    deadline = time.monotonic() + 15
    while True:
        regions = {r["name"]: r["provisioningState"] for r in az("keyvault", "region", "list", *args)}
        if regions.get("northeurope") == "Succeeded":
            break
        assert regions.get("northeurope") == "Provisioning" and time.monotonic() < deadline, regions
        time.sleep(0.5)
    az("keyvault", "region", "remove", *args, "--region", "northeurope")
    deadline = time.monotonic() + 15
    while "northeurope" in {r["name"] for r in az("keyvault", "region", "list", *args)}:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_az_keyvault_private_endpoint_connection_approve(signed_in, az, hsm):
    args = ("--hsm-name", "cmk", "--resource-group", hsm["group"])
    (pending,) = az("keyvault", "private-endpoint-connection", "list", *args)
    assert pending["privateLinkServiceConnectionState"]["status"] == "Pending"
    approved = az("keyvault", "private-endpoint-connection", "approve", *args, "--name", pending["name"],
                  "--description", "approved by the platform team")
    assert approved["privateLinkServiceConnectionState"]["status"] == "Approved"
