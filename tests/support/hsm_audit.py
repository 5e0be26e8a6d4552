"""Turning an emulated HSM's diagnostic setting on and off (Resource Manager, as Azure Monitor)."""
import ssl
import uuid
from contextlib import contextmanager

import httpx

ARM_SCOPE = "https://management.azure.com/.default"
API = "2021-05-01-preview"


def storage_account_id(emulator) -> str:
    """A storage account created in the emulator's resource group (azure-mgmt-storage)."""
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.storage import models as storage_models

    client = StorageManagementClient(emulator.credential(), emulator.endpoints["subscription_id"],
                                     base_url=emulator.endpoints["arm"],
                                     credential_scopes=[ARM_SCOPE],
                                     connection_verify=emulator.ca_bundle)
    account = client.storage_accounts.begin_create(
        emulator.endpoints["resource_group"], f"hsmlogs{uuid.uuid4().hex[:8]}",
        storage_models.StorageAccountCreateParameters(
            location="westeurope", kind="StorageV2",
            sku=storage_models.Sku(name="Standard_LRS"))).result()
    return account.id


@contextmanager
def diagnostic_setting(emulator, hsm_name: str = "primary", name: str | None = None):
    """An AuditEvent diagnostic setting to storage on one HSM, removed afterwards."""
    name = name or f"portal-{uuid.uuid4().hex[:6]}"
    url = (f"{emulator.endpoints['hsm_resource_ids'][hsm_name]}/providers/"
           f"Microsoft.Insights/diagnosticSettings/{name}")
    token = emulator.credential().get_token(ARM_SCOPE).token
    with httpx.Client(base_url=emulator.endpoints["arm"], verify=ssl.create_default_context(cafile=emulator.ca_bundle),
                      headers={"Authorization": f"Bearer {token}"}, timeout=30) as arm:
        body = {"properties": {"storageAccountId": storage_account_id(emulator),
                               "logs": [{"category": "AuditEvent", "enabled": True}]}}
        response = arm.put(url, params={"api-version": API}, json=body)
        assert response.status_code == 200, response.text
        try:
            yield name
        finally:
            arm.delete(url, params={"api-version": API})
