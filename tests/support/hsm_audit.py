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


def seed_hsm_events(hsm, key_name: str, *, correlation_id: str = "") -> list:
    """Two HSM AuditEvents of a key (KeyCreate by the portal, a refused KeyGet by someone
    else), stored as ingestion stores them, for pages that show timelines."""
    from datetime import datetime, timezone

    from portal.audit.hsm_events import _store, event_row

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    base = {"TenantId": str(uuid.uuid4()), "time": now, "resourceId": hsm.arm_resource_id.upper(),
            "operationVersion": "7.6", "category": "AuditEvent", "callerIpAddress": "127.0.0.1",
            "location": "westeurope"}
    events = [
        {**base, "operationName": "KeyCreate", "resultType": "Success", "resultSignature": "OK",
         "resultDescription": "", "durationMs": "12", "correlationId": correlation_id or str(uuid.uuid4()),
         "identity": {"claim": {"oid": str(uuid.uuid4()), "appid": str(uuid.uuid4())}},
         "properties": {"id": f"{hsm.uri.rstrip('/')}/keys/{key_name}/{uuid.uuid4().hex}",
                        "requestUri": f"{hsm.uri.rstrip('/')}/keys/{key_name}/create?api-version=7.6",
                        "httpStatusCode": 200, "isRbacAuthorized": True}},
        {**base, "operationName": "KeyGet", "resultType": "Success", "resultSignature": "Forbidden",
         "resultDescription": "Caller is not authorized", "durationMs": "3",
         "correlationId": str(uuid.uuid4()),
         "identity": {"claim": {"oid": str(uuid.uuid4()), "upn": "eve@contoso.example"}},
         "properties": {"id": f"{hsm.uri.rstrip('/')}/keys/{key_name}",
                        "requestUri": f"{hsm.uri.rstrip('/')}/keys/{key_name}?api-version=7.6",
                        "httpStatusCode": 403, "isRbacAuthorized": False}},
    ]
    hsms = {hsm.arm_resource_id.upper(): hsm} if hsm.arm_resource_id else {}
    rows = [event_row(event, hsms=hsms, source="storage") for event in events]
    for row in rows:
        if row.hsm is None:
            row.hsm, row.hsm_name = hsm, hsm.name
    _store(rows)
    return rows
