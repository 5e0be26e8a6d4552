"""The real Azure CLI turns on HSM audit logging as the Managed HSM logging guide does
(`az monitor diagnostic-settings create --resource <hsm id> --storage-account <id> --logs ...`),
then HSM calls made with `az keyvault key` land in the emulator's storage; deleting the setting
stops them. An emulator of its own (with its Azurite); the CLI fixtures are test_azure_cli.py's.
"""

import json
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from tests.support.emulator import EmulatorProcess

from . import test_azure_cli as _cli

az = _cli.az
signed_in = _cli.signed_in


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("audit-cli"), hsms=("logged",)).start()
    yield process
    process.stop()


def stored_events(emulator):
    storage = emulator.endpoints["storage"]
    container = ContainerClient(storage["blob_endpoint"], "insights-logs-auditevent",
                                credential={"account_name": storage["account_name"],
                                            "account_key": storage["account_key"]},
                                connection_verify=emulator.ca_bundle)
    prefix = f"resourceId={emulator.endpoints['hsm_resource_ids']['logged'].upper()}/"
    try:
        return [json.loads(line) for blob in sorted(container.list_blobs(name_starts_with=prefix), key=lambda b: b.name)
                for line in container.download_blob(blob.name).readall().decode().splitlines()]
    except ResourceNotFoundError:
        return []


def test_az_monitor_diagnostic_settings_turn_hsm_audit_logging_on_and_off(signed_in, az, emulator):
    group = emulator.endpoints["resource_group"]
    hsm_id = emulator.endpoints["hsm_resource_ids"]["logged"]
    hsm_name = emulator.hsm_url("logged").removeprefix("https://")
    account = az("storage", "account", "create", "--name", f"stlogs{uuid.uuid4().hex[:8]}", "--resource-group",
                 group, "--location", "westeurope", "--sku", "Standard_LRS")
    categories = az("monitor", "diagnostic-settings", "categories", "list", "--resource", hsm_id)
    assert "AuditEvent" in {c["name"] for c in categories["value"]}

    created = az("monitor", "diagnostic-settings", "create", "--name", "hsm-logs", "--resource", hsm_id,
                 "--storage-account", account["id"], "--logs", '[{"category": "AuditEvent", "enabled": true}]')
    assert created["storageAccountId"] == account["id"]
    assert [(log["category"], log["enabled"]) for log in created["logs"]] == [("AuditEvent", True)]
    shown = az("monitor", "diagnostic-settings", "show", "--name", "hsm-logs", "--resource", hsm_id)
    assert shown["name"] == "hsm-logs"
    assert [s["name"] for s in az("monitor", "diagnostic-settings", "list", "--resource", hsm_id)] == ["hsm-logs"]

    mark = emulator.audit("logged")["seq"]
    az("keyvault", "key", "create", "--hsm-name", hsm_name, "--name", "logged-key", "--kty", "EC-HSM")
    az("keyvault", "key", "show", "--hsm-name", hsm_name, "--name", "logged-key")
    emulator.flush_audit("logged")
    activity = emulator.audit("logged", since=mark)
    events = stored_events(emulator)
    assert len(events) == activity["count"] >= 2
    operations = [e["operationName"] for e in events if e["properties"]["httpStatusCode"] == 200]
    assert operations == ["KeyCreate", "KeyGet"]
    assert all("AZURECLI" in e["properties"]["clientInfo"] for e in events)
    admin = emulator.principals["bootstrap-admin"]["object_id"]
    assert {e["identity"]["claim"]["oid"] for e in events if e["identity"]} == {admin}

    az("monitor", "diagnostic-settings", "delete", "--name", "hsm-logs", "--resource", hsm_id)
    assert az("monitor", "diagnostic-settings", "list", "--resource", hsm_id) == []
    az("keyvault", "key", "show", "--hsm-name", hsm_name, "--name", "logged-key")
    emulator.flush_audit("logged")
    assert stored_events(emulator) == events
    assert emulator.audit("logged", since=mark)["count"] > len(events)
