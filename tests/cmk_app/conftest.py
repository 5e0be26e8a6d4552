"""An emulator of this package's own: purge protection is irreversible, so the primary HSM
that gets it here is not the one the rest of the suite purges keys on. The secondary HSM
never gets it (the "no purge protection" path)."""
import uuid

import pytest

from tests.support.cmk import GROUP, mgmt, start_cmk_emulator  # noqa: F401 (GROUP re-exported)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    process = start_cmk_emulator(tmp_path_factory.mktemp("cmk-emulator"))
    yield process
    process.stop()


@pytest.fixture
def sdk(emulator):
    from azure.keyvault.administration import KeyVaultAccessControlClient
    from azure.keyvault.keys import KeyClient
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient
    from azure.mgmt.mysqlflexibleservers import MySQLManagementClient
    from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
    from azure.mgmt.storage import StorageManagementClient

    return {
        "storage": mgmt(emulator, StorageManagementClient),
        "pg": mgmt(emulator, PostgreSQLManagementClient),
        "mysql": mgmt(emulator, MySQLManagementClient),
        "msi": mgmt(emulator, ManagedServiceIdentityClient),
        "keyvault": mgmt(emulator, KeyVaultManagementClient),
        "keys": KeyClient(emulator.hsm_url("primary"), emulator.credential(),
                          **emulator.client_options()),
        "access": {h: KeyVaultAccessControlClient(emulator.hsm_url(h), emulator.credential(),
                                                  **emulator.client_options())
                   for h in ("primary", "secondary")},
    }


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def storage_account(sdk):
    from azure.mgmt.storage import models

    return sdk["storage"].storage_accounts.begin_create(GROUP, unique("st"), models.StorageAccountCreateParameters(
        location="westeurope", kind="StorageV2", sku=models.Sku(name="Standard_LRS"))).result()


def make_pg(sdk, location="westeurope", group=GROUP):
    from azure.mgmt.postgresqlflexibleservers import models

    return sdk["pg"].servers.begin_create_or_update(group, unique("psql-"), models.Server(
        location=location, version="16")).result()


def make_mysql(sdk, location="westeurope", group=GROUP):
    from azure.mgmt.mysqlflexibleservers import models

    return sdk["mysql"].servers.begin_create(group, unique("mysql-"), models.Server(
        location=location, version="8.0.21")).result()


@pytest.fixture
def cmk_key(hsm, admin, key_name):
    """An RSA-HSM key that may wrap and unwrap, in the HSM and the portal's inventory."""
    from keys_app import services
    from keys_app.spec import spec_build

    return services.key_create(hsm=hsm, spec=spec_build(
        name=key_name, kty="RSA-HSM", key_size=2048, tags={"owner": "payments"},
        key_ops=["wrapKey", "unwrapKey", "encrypt", "decrypt"]), actor=admin, request_id="r-key")


def assignments_for(sdk, principal_id: str, hsm: str = "primary") -> list:
    return [a for a in sdk["access"][hsm].list_role_assignments("/")
            if a.properties.principal_id == principal_id]
