"""Customer-managed keys from an HSM through the official management clients (issue F).

An emulator of its own (HSM ``cmk`` gets purge protection, ``nopp`` never does), with
user-assigned identities (azure-mgmt-msi), storage accounts (azure-mgmt-storage) and
PostgreSQL / MySQL flexible servers. Attaching an HSM key succeeds once the identity holds
*Managed HSM Crypto Service Encryption User* on the key; each missing prerequisite gives the
service's error and leaves the resource as it was.
"""

import ssl
import uuid

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration import KeyVaultAccessControlClient
from azure.keyvault.keys import KeyClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import ManagedHsm, ManagedHsmProperties
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import Identity
from azure.mgmt.mysqlflexibleservers import MySQLManagementClient
from azure.mgmt.mysqlflexibleservers import models as mysql_models
from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
from azure.mgmt.postgresqlflexibleservers import models as pg_models
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage import models as storage_models

from tests.hsm_emulator.conftest import DEFINITION_PREFIX, ROLE_IDS
from tests.support.emulator import EmulatorProcess

ARM_SCOPES = ["https://management.azure.com/.default"]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("arm-cmk"), hsms=("cmk", "nopp"),
                              extra_args=("--no-storage",)).start()
    yield process
    process.stop()


def mgmt_client(emulator, cls, **kwargs):
    return cls(emulator.credential(), emulator.endpoints["subscription_id"], base_url=emulator.endpoints["arm"],
               credential_scopes=ARM_SCOPES, connection_verify=emulator.ca_bundle, **kwargs)


@pytest.fixture(scope="module")
def clients(emulator):
    keyvault = mgmt_client(emulator, KeyVaultManagementClient)
    group = emulator.endpoints["resource_group"]
    keyvault.managed_hsms.begin_update(group, "cmk", ManagedHsm(
        location="westeurope", properties=ManagedHsmProperties(enable_purge_protection=True))).result()
    resources = mgmt_client(emulator, ResourceManagementClient)
    resources.resource_groups.create_or_update("rg-apps", {"location": "westeurope"})
    return {
        "keyvault": keyvault,
        "msi": mgmt_client(emulator, ManagedServiceIdentityClient),
        "storage": mgmt_client(emulator, StorageManagementClient),
        "pg": mgmt_client(emulator, PostgreSQLManagementClient),
        "mysql": mgmt_client(emulator, MySQLManagementClient),
        "resources": resources,
        "keys": {hsm: KeyClient(emulator.hsm_url(hsm), emulator.credential(), **emulator.client_options())
                 for hsm in ("cmk", "nopp")},
        "access": {hsm: KeyVaultAccessControlClient(emulator.hsm_url(hsm), emulator.credential(),
                                                    **emulator.client_options()) for hsm in ("cmk", "nopp")},
    }


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def identity(clients):
    return clients["msi"].user_assigned_identities.create_or_update("rg-apps", unique("id-"),
                                                                    Identity(location="westeurope"))


def rsa_key(clients, hsm="cmk", **kwargs):
    return clients["keys"][hsm].create_rsa_key(unique("cmk-"), hardware_protected=True, **kwargs)


def grant(clients, identity, key, hsm="cmk", role="Crypto Service Encryption User"):
    clients["access"][hsm].create_role_assignment(f"/keys/{key.name}", DEFINITION_PREFIX + ROLE_IDS[role],
                                                  identity.principal_id)


def storage_account(clients, identity):
    poller = clients["storage"].storage_accounts.begin_create("rg-apps", unique("st"), storage_models.StorageAccountCreateParameters(
        location="westeurope", kind="StorageV2", sku=storage_models.Sku(name="Standard_LRS"),
        identity=storage_models.Identity(type="UserAssigned", user_assigned_identities={
            identity.id: storage_models.UserAssignedIdentity()})))
    account = poller.result()
    assert account.provisioning_state == "Succeeded"
    return account


def storage_cmk(emulator, clients, account, identity, key, hsm="cmk", version=""):
    return clients["storage"].storage_accounts.update("rg-apps", account.name, storage_models.StorageAccountUpdateParameters(
        encryption=storage_models.Encryption(
            key_source="Microsoft.Keyvault",
            key_vault_properties=storage_models.KeyVaultProperties(
                key_name=key.name, key_vault_uri=emulator.hsm_url(hsm) + "/", key_version=version),
            encryption_identity=storage_models.EncryptionIdentity(encryption_user_assigned_identity=identity.id))))


def pg_server(clients, identity):
    return clients["pg"].servers.begin_create_or_update("rg-apps", unique("psql-"), pg_models.Server(
        location="westeurope", version="16",
        identity=pg_models.UserAssignedIdentity(type="UserAssigned",
                                                user_assigned_identities={identity.id: pg_models.UserIdentity()}),
    )).result()


def pg_cmk(emulator, clients, server, identity, key_uri):
    return clients["pg"].servers.begin_update("rg-apps", server.name, pg_models.ServerForPatch(
        properties=pg_models.ServerPropertiesForPatch(data_encryption=pg_models.DataEncryption(
            type="AzureKeyVault", primary_key_uri=key_uri, primary_user_assigned_identity_id=identity.id)))).result()


def mysql_server(clients, identity):
    return clients["mysql"].servers.begin_create("rg-apps", unique("mysql-"), mysql_models.Server(
        location="westeurope", version="8.0.21",
        identity=mysql_models.MySQLServerIdentity(type="UserAssigned", user_assigned_identities={identity.id: {}}),
    )).result()


def mysql_cmk(clients, server, identity, key_uri):
    return clients["mysql"].servers.begin_update("rg-apps", server.name, mysql_models.ServerForUpdate(
        data_encryption=mysql_models.DataEncryption(
            type="AzureKeyVault", primary_key_uri=key_uri, primary_user_assigned_identity_id=identity.id))).result()


def key_uri(emulator, key, hsm="cmk", versioned=False):
    return f"{emulator.hsm_url(hsm)}/keys/{key.name}" + (f"/{key.properties.version}" if versioned else "")


# -- identities and groups ------------------------------------------------------------------

def test_identities_are_created_listed_and_deleted_as_authority_principals(emulator, clients, identity):
    msi = clients["msi"]
    assert identity.principal_id and identity.client_id and identity.tenant_id == emulator.endpoints["tenant_id"]
    assert identity.id.endswith(f"/resourceGroups/rg-apps/providers/Microsoft.ManagedIdentity/"
                                f"userAssignedIdentities/{identity.name}")
    again = msi.user_assigned_identities.create_or_update("rg-apps", identity.name, Identity(location="westeurope"))
    assert (again.principal_id, again.client_id) == (identity.principal_id, identity.client_id)
    assert identity.name in {i.name for i in msi.user_assigned_identities.list_by_resource_group("rg-apps")}
    assert identity.name in {i.name for i in msi.user_assigned_identities.list_by_subscription()}
    assert any(p["object_id"] == identity.principal_id for p in emulator.list_principals())
    msi.user_assigned_identities.delete("rg-apps", identity.name)
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get("rg-apps", identity.name)


def test_resource_groups_create_get_list(clients):
    resources = clients["resources"]
    name = unique("rg-")
    created = resources.resource_groups.create_or_update(name, {"location": "northeurope", "tags": {"a": "b"}})
    assert created.location == "northeurope" and created.properties.provisioning_state == "Succeeded"
    assert resources.resource_groups.get(name).tags == {"a": "b"}
    assert {name, "rg-apps"} <= {g.name for g in resources.resource_groups.list()}
    assert resources.resource_groups.check_existence(name) is True
    assert resources.resource_groups.check_existence("rg-none") is False
    with pytest.raises(ResourceNotFoundError):
        resources.resource_groups.get("rg-none")


# -- storage accounts -----------------------------------------------------------------------

def test_storage_account_attach_versionless_key_follows_rotation(emulator, clients, identity):
    account = storage_account(clients, identity)
    assert account.encryption.key_source == "Microsoft.Storage"
    key = rsa_key(clients)
    grant(clients, identity, key)
    updated = storage_cmk(emulator, clients, account, identity, key)
    kv = updated.encryption.key_vault_properties
    assert updated.encryption.key_source == "Microsoft.Keyvault"
    assert updated.encryption.encryption_identity.encryption_user_assigned_identity == identity.id
    assert (kv.key_name, kv.key_version) == (key.name, "")
    assert kv.current_versioned_key_identifier == key.id
    rotated = clients["keys"]["cmk"].rotate_key(key.name)
    got = clients["storage"].storage_accounts.get_properties("rg-apps", account.name)
    assert got.encryption.key_vault_properties.current_versioned_key_identifier == rotated.id
    assert got.identity.user_assigned_identities[identity.id].principal_id == identity.principal_id


def test_storage_account_attach_with_a_role_at_keys_scope_and_a_pinned_version(emulator, clients, identity):
    account = storage_account(clients, identity)
    key = rsa_key(clients)
    clients["access"]["cmk"].create_role_assignment("/keys", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                                    identity.principal_id)
    updated = storage_cmk(emulator, clients, account, identity, key, version=key.properties.version)
    assert updated.encryption.key_vault_properties.current_versioned_key_identifier == key.id


def assert_storage_refused(emulator, clients, account, identity, key, code, hsm="cmk"):
    with pytest.raises(HttpResponseError) as refused:
        storage_cmk(emulator, clients, account, identity, key, hsm=hsm)
    assert refused.value.status_code == 400
    assert refused.value.error.code == code
    after = clients["storage"].storage_accounts.get_properties("rg-apps", account.name)
    assert after.encryption.key_source == "Microsoft.Storage"  # unchanged
    assert after.encryption.key_vault_properties is None
    return refused.value


def test_storage_refusals_leave_the_account_unchanged(emulator, clients, identity):
    account = storage_account(clients, identity)
    keys = clients["keys"]["cmk"]
    no_role = rsa_key(clients)
    error = assert_storage_refused(emulator, clients, account, identity, no_role, "KeyVaultAuthenticationFailure")
    assert identity.principal_id in error.message and "Crypto Service Encryption User" in error.message

    disabled = rsa_key(clients)
    grant(clients, identity, disabled)
    keys.update_key_properties(disabled.name, enabled=False)
    assert_storage_refused(emulator, clients, account, identity, disabled, "KeyVaultKeyDisabled")

    sign_only = rsa_key(clients, key_operations=["sign", "verify"])
    grant(clients, identity, sign_only)
    assert_storage_refused(emulator, clients, account, identity, sign_only, "KeyVaultKeyOperationsNotPermitted")

    missing = rsa_key(clients)
    grant(clients, identity, missing)
    keys.begin_delete_key(missing.name).wait()
    assert_storage_refused(emulator, clients, account, identity, missing, "KeyVaultKeyNotFound")

    unprotected = rsa_key(clients, hsm="nopp")
    grant(clients, identity, unprotected, hsm="nopp")
    error = assert_storage_refused(emulator, clients, account, identity, unprotected, "KeyVaultPolicyError", hsm="nopp")
    assert "Keyvault policy recoverable is not set" in error.message


def test_storage_encryption_identity_must_be_the_accounts(emulator, clients, identity):
    account = storage_account(clients, identity)
    other = clients["msi"].user_assigned_identities.create_or_update("rg-apps", unique("id-"),
                                                                     Identity(location="westeurope"))
    key = rsa_key(clients)
    grant(clients, other, key)
    with pytest.raises(HttpResponseError) as refused:
        storage_cmk(emulator, clients, account, other, key)
    assert refused.value.error.code == "InvalidValuesForRequestParameters"


# -- PostgreSQL and MySQL flexible servers --------------------------------------------------

def test_postgresql_attach_and_refusals(emulator, clients, identity):
    server = pg_server(clients, identity)
    assert server.data_encryption.type == "SystemManaged" and server.state == "Ready"
    key = rsa_key(clients)
    with pytest.raises(HttpResponseError) as refused:
        pg_cmk(emulator, clients, server, identity, key_uri(emulator, key))
    assert refused.value.error.code == "AzureKeyVaultMissingPermissions"
    assert identity.principal_id in refused.value.error.message
    assert clients["pg"].servers.get("rg-apps", server.name).data_encryption.type == "SystemManaged"

    unprotected = rsa_key(clients, hsm="nopp")
    grant(clients, identity, unprotected, hsm="nopp")
    with pytest.raises(HttpResponseError) as refused:
        pg_cmk(emulator, clients, server, identity, key_uri(emulator, unprotected, hsm="nopp"))
    assert refused.value.error.code == "SecurityInvalidAzureKeyVaultRecoveryLevel"

    grant(clients, identity, key)
    clients["keys"]["cmk"].update_key_properties(key.name, enabled=False)
    with pytest.raises(HttpResponseError) as refused:
        pg_cmk(emulator, clients, server, identity, key_uri(emulator, key))
    assert refused.value.error.code == "AzureKeyVaultKeyDisabled"
    assert clients["pg"].servers.get("rg-apps", server.name).data_encryption.type == "SystemManaged"

    clients["keys"]["cmk"].update_key_properties(key.name, enabled=True)
    updated = pg_cmk(emulator, clients, server, identity, key_uri(emulator, key))
    assert updated.data_encryption.type == "AzureKeyVault"
    assert updated.data_encryption.primary_key_uri == key_uri(emulator, key)
    assert updated.data_encryption.primary_user_assigned_identity_id == identity.id
    assert updated.state == "Ready"
    listed = {s.name: s for s in clients["pg"].servers.list_by_resource_group("rg-apps")}
    assert listed[server.name].data_encryption.primary_key_uri == key_uri(emulator, key)


def test_mysql_attach_and_refusals(emulator, clients, identity):
    server = mysql_server(clients, identity)
    key = rsa_key(clients, key_operations=["encrypt", "decrypt"])
    grant(clients, identity, key)
    with pytest.raises(HttpResponseError) as refused:
        mysql_cmk(clients, server, identity, key_uri(emulator, key))
    assert refused.value.error.code == "AzureKeyVaultKeyOperationsNotPermitted"
    absent = unique("absent-")  # the identity may use that name, but there is no such key
    clients["access"]["cmk"].create_role_assignment(f"/keys/{absent}", DEFINITION_PREFIX
                                                    + ROLE_IDS["Crypto Service Encryption User"], identity.principal_id)
    with pytest.raises(HttpResponseError) as refused:
        mysql_cmk(clients, server, identity, f"{emulator.hsm_url('cmk')}/keys/{absent}")
    assert refused.value.error.code == "AzureKeyVaultKeyNotFound"
    assert clients["mysql"].servers.get("rg-apps", server.name).data_encryption.type == "SystemManaged"

    good = rsa_key(clients)
    grant(clients, identity, good)
    updated = mysql_cmk(clients, server, identity, key_uri(emulator, good, versioned=True))
    assert updated.data_encryption.type == "AzureKeyVault"
    assert updated.data_encryption.primary_key_uri == key_uri(emulator, good, versioned=True)
    assert updated.identity.user_assigned_identities[identity.id].principal_id == identity.principal_id



SERVER_REFUSALS = [  # (case, PostgreSQL / MySQL code)
    ("missing role", "AzureKeyVaultMissingPermissions"),
    ("no purge protection", "SecurityInvalidAzureKeyVaultRecoveryLevel"),
    ("disabled key", "AzureKeyVaultKeyDisabled"),
    ("wrong key ops", "AzureKeyVaultKeyOperationsNotPermitted"),
    ("missing key", "AzureKeyVaultKeyNotFound"),
]


def refused_key(emulator, clients, identity, case):
    """A key URI that fails ``case`` for this identity (the other prerequisites met)."""
    hsm = "nopp" if case == "no purge protection" else "cmk"
    key = rsa_key(clients, hsm=hsm, **({"key_operations": ["sign", "verify"]} if case == "wrong key ops" else {}))
    if case != "missing role":
        grant(clients, identity, key, hsm=hsm)
    if case == "disabled key":
        clients["keys"][hsm].update_key_properties(key.name, enabled=False)
    if case == "missing key":
        clients["keys"][hsm].begin_delete_key(key.name).wait()
    return key_uri(emulator, key, hsm=hsm)


@pytest.mark.parametrize("kind", ["pg", "mysql"])
@pytest.mark.parametrize("case,code", SERVER_REFUSALS)
def test_every_server_refusal_leaves_the_server_unchanged(emulator, clients, identity, kind, case, code):
    server = pg_server(clients, identity) if kind == "pg" else mysql_server(clients, identity)
    uri = refused_key(emulator, clients, identity, case)
    with pytest.raises(HttpResponseError) as refused:
        if kind == "pg":
            pg_cmk(emulator, clients, server, identity, uri)
        else:
            mysql_cmk(clients, server, identity, uri)
    assert refused.value.status_code == 400 and refused.value.error.code == code
    after = clients[kind].servers.get("rg-apps", server.name)
    assert after.data_encryption.type == "SystemManaged" and after.data_encryption.primary_key_uri is None


def test_a_postgresql_server_shows_a_key_it_can_no_longer_use(emulator, clients, identity):
    server = pg_server(clients, identity)
    key = rsa_key(clients)
    grant(clients, identity, key)
    attached = pg_cmk(emulator, clients, server, identity, key_uri(emulator, key))
    assert attached.data_encryption.primary_encryption_key_status == "Valid"
    clients["keys"]["cmk"].update_key_properties(key.name, enabled=False)
    got = clients["pg"].servers.get("rg-apps", server.name)
    assert got.data_encryption.primary_encryption_key_status == "Invalid" and got.state == "Inaccessible"
    clients["keys"]["cmk"].update_key_properties(key.name, enabled=True)
    assert clients["pg"].servers.get("rg-apps", server.name).data_encryption.primary_encryption_key_status == "Valid"


def test_malformed_encryption_is_a_bad_request_not_a_dropped_connection(emulator, clients, identity):
    account = storage_account(clients, identity)
    token = emulator.credential().get_token(*ARM_SCOPES).token
    response = httpx.patch(f"{emulator.endpoints['arm']}{account.id}", params={"api-version": "2025-06-01"},
                           json={"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": "x"}}},
                           headers={"Authorization": f"Bearer {token}"},
                           verify=ssl.create_default_context(cafile=emulator.ca_bundle))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestContent"


# -- the demo estate ------------------------------------------------------------------------

def test_demo_estate_only_when_asked(emulator, clients, tmp_path):
    with pytest.raises(ResourceNotFoundError):
        clients["resources"].resource_groups.get("rg-payments-weu")
    with EmulatorProcess(tmp_path / "estate", hsms=("primary",), ephemeral=False,
                         extra_args=("--no-storage", "--demo-estate")) as estate:
        storage = mgmt_client(estate, StorageManagementClient)
        accounts = {a.name: a.location for a in storage.storage_accounts.list()}
        assert accounts == {"stpaymentsweu01": "westeurope", "stinvoicesweu01": "westeurope",
                            "stpaymentsneu01": "northeurope"}
        pg = {s.name: s.location for s in mgmt_client(estate, PostgreSQLManagementClient).servers.list_by_subscription()}
        assert pg == {"psql-payments-weu": "westeurope", "psql-payments-neu": "northeurope"}
        mysql = {s.name for s in mgmt_client(estate, MySQLManagementClient).servers.list()}
        assert mysql == {"mysql-ledger-weu", "mysql-ledger-neu"}
        identities = list(mgmt_client(estate, ManagedServiceIdentityClient).user_assigned_identities
                          .list_by_resource_group("rg-identities"))
        assert {i.name for i in identities} == {"id-payments-cmk", "id-ledger-cmk"}
        assert all(i.principal_id for i in identities)
        # The primary HSM is ready for a CMK demo: purge protection on.
        hsm = mgmt_client(estate, KeyVaultManagementClient).managed_hsms.get(
            estate.endpoints["resource_group"], "primary")
        assert hsm.properties.enable_purge_protection is True
        storage.storage_accounts.delete("rg-payments-weu", "stinvoicesweu01")
    with EmulatorProcess(tmp_path / "estate", hsms=("primary",), ephemeral=False,
                         extra_args=("--no-storage", "--demo-estate")) as again:  # seeded once, kept across restarts
        storage = mgmt_client(again, StorageManagementClient)
        assert {a.name for a in storage.storage_accounts.list()} == {"stpaymentsweu01", "stpaymentsneu01"}
