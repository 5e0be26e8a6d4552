"""The HSM's managed identity through Resource Manager, and backups/restores that use it.

The identity is set as the official management client sets it (azure-mgmt-keyvault
``managed_hsms.begin_update`` / ``begin_create_or_update``, an ARM long-running
operation); the emulator then gets storage tokens for it from its authority, which the
Azurite it runs accepts in OAuth mode.
"""

import ssl
import uuid

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration import KeyVaultBackupClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import (ManagedHsm, ManagedHsmProperties, ManagedServiceIdentity,
                                        UserAssignedIdentity)

from tests.support.blobs import blob_service

API_VERSION = "2026-05-15"  # azure-mgmt-keyvault 14.1.0's default


@pytest.fixture(scope="module")
def arm_endpoint(emulator):
    return emulator.endpoints["arm"]


@pytest.fixture(scope="module")
def subscription(emulator, arm_endpoint):
    token = emulator.credential().get_token("https://management.azure.com/.default").token
    response = httpx.get(f"{arm_endpoint}/subscriptions", params={"api-version": "2022-12-01"},
                         headers={"Authorization": f"Bearer {token}"},
                         verify=ssl.create_default_context(cafile=emulator.ca_bundle))
    (sub,) = response.json()["value"]
    return sub["subscriptionId"]


@pytest.fixture(scope="module")
def mgmt(emulator, arm_endpoint, subscription):
    return KeyVaultManagementClient(emulator.credential(), subscription, base_url=arm_endpoint,
                                    credential_scopes=["https://management.azure.com/.default"],
                                    connection_verify=emulator.ca_bundle, api_version=API_VERSION)


@pytest.fixture(scope="module")
def group(emulator):
    return emulator.endpoints["resource_group"]


def uami(subscription, name):
    return (f"/subscriptions/{subscription}/resourceGroups/identities/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")


@pytest.fixture(scope="module")
def blobs(emulator):
    return blob_service(emulator)


@pytest.fixture
def container(blobs):
    name = f"mi-{uuid.uuid4().hex[:12]}"
    blobs.create_container(name)
    return name


def test_managed_hsms_are_resources_of_the_emulators_subscription(emulator, mgmt, group, subscription):
    listed = {hsm.name: hsm for hsm in mgmt.managed_hsms.list_by_subscription()}
    assert set(listed) >= {"primary", "secondary"}
    primary = mgmt.managed_hsms.get(group, "primary")
    assert primary.id == f"/subscriptions/{subscription}/resourceGroups/{group}/providers/" \
                         "Microsoft.KeyVault/managedHSMs/primary"
    assert primary.properties.hsm_uri == emulator.hsm_url("primary") + "/"
    assert primary.properties.provisioning_state in ("Succeeded", "Updating")
    assert primary.properties.tenant_id == emulator.endpoints["tenant_id"]
    assert emulator.endpoints["hsm_resource_ids"]["primary"] == primary.id
    with pytest.raises(ResourceNotFoundError):
        mgmt.managed_hsms.get(group, "nonexistent")


def test_a_backup_with_managed_identity_needs_an_identity_on_the_hsm(emulator, admin_credential, mgmt, group,
                                                                    container):
    mgmt.managed_hsms.begin_update(group, "secondary", ManagedHsm(
        location="westeurope", identity=ManagedServiceIdentity(type="None"))).result()
    client = KeyVaultBackupClient(emulator.hsm_url("secondary"), admin_credential, **emulator.client_options())
    url = f"{emulator.endpoints['storage']['blob_endpoint']}/{container}"
    with pytest.raises(HttpResponseError) as failed:
        client.begin_backup(url, use_managed_identity=True).result()
    assert "ManagedIdentityNotFound" in str(failed.value)


def test_identity_set_through_resource_manager_then_backup_and_restore_with_it(
        emulator, admin_credential, mgmt, group, subscription, container, blobs, key_client, name):
    identity_id = uami(subscription, f"hsm-backup-{uuid.uuid4().hex[:6]}")
    poller = mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(
        location="westeurope", tags={"owner": "dr"},
        identity=ManagedServiceIdentity(type="UserAssigned",
                                        user_assigned_identities={identity_id: UserAssignedIdentity()})))
    updated = poller.result()
    assert updated.properties.provisioning_state == "Succeeded"
    assigned = updated.identity.user_assigned_identities[identity_id]
    assert uuid.UUID(assigned.principal_id) and uuid.UUID(assigned.client_id)
    assert mgmt.managed_hsms.get(group, "primary").tags == {"owner": "dr"}

    key_client.create_ec_key(name)
    client = KeyVaultBackupClient(emulator.hsm_url(), admin_credential, **emulator.client_options())
    url = f"{emulator.endpoints['storage']['blob_endpoint']}/{container}"
    assert client.begin_pre_backup(url, use_managed_identity=True).result() is None
    folder_url = client.begin_backup(url, use_managed_identity=True).result().folder_url
    folder = folder_url.rsplit("/", 1)[1]
    names = {b.name for b in blobs.get_container_client(container).list_blobs()}
    assert f"{folder}/manifest.json" in names

    key_client.begin_delete_key(name).wait()
    key_client.purge_deleted_key(name)
    client.begin_restore(folder_url, use_managed_identity=True, key_name=name).result()
    assert key_client.get_key(name).name == name


def test_resource_manager_refuses_a_malformed_identity_id(mgmt, group):
    with pytest.raises(HttpResponseError) as refused:
        mgmt.managed_hsms.begin_update(group, "secondary", ManagedHsm(
            location="westeurope", identity=ManagedServiceIdentity(
                type="UserAssigned", user_assigned_identities={"not-a-resource-id": UserAssignedIdentity()})))
    assert refused.value.status_code == 400
    assert refused.value.error.code == "LinkedInvalidPropertyId"


def test_patch_is_an_arm_long_running_operation(emulator, arm_endpoint, subscription, group):
    token = emulator.credential().get_token("https://management.azure.com/.default").token
    context = ssl.create_default_context(cafile=emulator.ca_bundle)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{arm_endpoint}/subscriptions/{subscription}/resourceGroups/{group}/providers/" \
          "Microsoft.KeyVault/managedHSMs/secondary"
    response = httpx.patch(url, params={"api-version": API_VERSION}, headers=headers, verify=context,
                           json={"tags": {"drill": "yes"}})
    assert response.status_code == 200
    assert response.json()["properties"]["provisioningState"] == "Updating"
    operation = response.headers["azure-asyncoperation"]
    assert response.headers["retry-after"] == "1"
    status = httpx.get(operation, headers=headers, verify=context).json()
    assert status["status"] in ("InProgress", "Succeeded") and status["name"] in operation
    # Path matching is case-insensitive, as ARM's is.
    lower = httpx.get(url.replace("resourceGroups", "resourcegroups").replace("managedHSMs", "managedhsms"),
                      params={"api-version": API_VERSION}, headers=headers, verify=context)
    assert lower.status_code == 200 and lower.json()["tags"] == {"drill": "yes"}


def test_resource_manager_refuses_what_it_does_not_serve(emulator, mgmt, group, subscription):
    with pytest.raises(HttpResponseError) as refused:
        mgmt.managed_hsms.begin_update(group, "secondary", ManagedHsm(
            location="westeurope", identity=ManagedServiceIdentity(type="SystemAssigned")))
    assert refused.value.status_code == 400 and refused.value.error.code == "InvalidIdentityType"
    with pytest.raises(HttpResponseError) as refused:
        mgmt.managed_hsms.begin_create_or_update(group, "brand-new", ManagedHsm(location="westeurope"))
    assert refused.value.status_code == 400
    with pytest.raises(ResourceNotFoundError) as missing:
        mgmt.managed_hsms.get("no-such-group", "primary")
    assert missing.value.error.code == "ResourceGroupNotFound"
    # Soft-delete retention stays within 7-90 days (an HSM's own property, checked as ARM does).
    with pytest.raises(HttpResponseError) as refused:
        mgmt.managed_hsms.begin_update(group, "secondary", ManagedHsm(
            location="westeurope", properties=ManagedHsmProperties(soft_delete_retention_in_days=5)))
    assert refused.value.status_code == 400
    assert emulator.set_properties("secondary")["retention_days"] == 7
