"""The settings that point the gateway at an emulator, from its endpoints.json.

Used by `make run` (as environment variables), the tests and the benchmarks, so that all
three reach the emulator exactly the way production reaches Azure: only settings differ.
"""
import json
from pathlib import Path
from urllib.parse import urlsplit


def emulator_environment(endpoints: dict | Path) -> dict[str, str]:
    """Environment variables (names as in the README) for the emulator's bootstrap admin."""
    if isinstance(endpoints, Path):
        endpoints = json.loads(endpoints.read_text())
    admin = endpoints["principals"]["bootstrap-admin"]
    storage = endpoints.get("storage") or {}  # Azurite, when the emulator started it
    storage_env = {"AZURE_STORAGE_BLOB_ENDPOINT": storage["blob_endpoint"],
                   "AZURE_STORAGE_ACCOUNT_NAME": storage.get("account_name", ""),
                   "AZURE_STORAGE_ACCOUNT_KEY": storage.get("account_key", "")} if storage else {}
    return {**storage_env, "AZURE_CREDENTIAL": "client_secret",
            "AZURE_TENANT_ID": endpoints["tenant_id"],
            "AZURE_CLIENT_ID": admin["client_id"], "AZURE_CLIENT_SECRET": admin["client_secret"],
            "AZURE_AUTHORITY_HOST": endpoints["authority"],
            "AZURE_CA_BUNDLE": endpoints["ca_bundle"],
            # Directory look-ups go to the emulator's Graph (older emulators had none).
            **({"AZURE_GRAPH_URL": endpoints["graph"]} if endpoints.get("graph") else {}),
            # Resource Manager (CMK consumers, the HSM resource) when the emulator serves it.
            **({"AZURE_RESOURCE_MANAGER_URL": endpoints["arm"]} if endpoints.get("arm") else {}),
            # The emulator's hosts are not under the Managed HSM domain: naming them lets
            # the portal register them and skip the challenge-resource check for them alone.
            "HSM_EMULATOR_HOSTS": ",".join(emulator_hosts(endpoints))}


def emulator_hosts(endpoints: dict) -> list[str]:
    """The emulator's HSMs as `host:port` entries (the form HSM_EMULATOR_HOSTS takes)."""
    return sorted({urlsplit(url).netloc.lower() for url in endpoints["hsms"].values()})


def apply_to_settings(settings, endpoints: dict | Path) -> None:
    """Set the same values on a Django settings object (tests, benchmarks)."""
    for name, value in emulator_environment(endpoints).items():
        setattr(settings, name, value.split(",") if name == "HSM_EMULATOR_HOSTS" else value)
