"""The emulator's Azurite as tests and benchmarks see it: azure-storage-blob with the account key.

``endpoints["storage"]`` of a running ``EmulatorProcess`` names the blob endpoint, the
account and its key; these helpers give a client on it, a fresh container, and a container
SAS as a backup or restore is handed one.
"""

from __future__ import annotations

import datetime
import uuid

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas


def blob_service(emulator) -> BlobServiceClient:
    """A client on the emulator's storage account, signed with the account key."""
    storage = emulator.endpoints["storage"]
    return BlobServiceClient(storage["blob_endpoint"], credential={"account_name": storage["account_name"],
                                                                    "account_key": storage["account_key"]},
                             connection_verify=emulator.ca_bundle)


def container_create(emulator, prefix: str) -> str:
    """A new, empty container named ``<prefix>-<12 hex>``; its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    blob_service(emulator).create_container(name)
    return name


def container_sas(storage: dict, container: str, permission: str = "crdwl", minutes: int = 60) -> str:
    """A SAS token for the container, with these permissions, valid for ``minutes``."""
    return generate_container_sas(storage["account_name"], container, account_key=storage["account_key"],
                                  permission=ContainerSasPermissions.from_string(permission),
                                  expiry=datetime.datetime.now(datetime.timezone.utc)
                                  + datetime.timedelta(minutes=minutes))
