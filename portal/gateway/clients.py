"""THE way to Azure: the only module that builds SDK clients and credentials.

Switching to the emulator changes HsmInstance URLs and credential settings, never code
paths. Clients are cached per process (one TLS connection pool and token cache each).
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.keyvault.administration import (KeyVaultAccessControlClient, KeyVaultBackupClient,
                                           KeyVaultSettingsClient)
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient
from django.conf import settings

if TYPE_CHECKING:  # the package is imported while Django loads apps: no models here
    from portal.gateway.models import HsmInstance

_lock = threading.RLock()  # builders nest: a client builds the credential
_cache: dict = {}


def _settings_key() -> tuple:
    return (settings.AZURE_CREDENTIAL, settings.AZURE_TENANT_ID, settings.AZURE_CLIENT_ID,
            settings.AZURE_CLIENT_SECRET, settings.AZURE_AUTHORITY_HOST, settings.AZURE_CA_BUNDLE,
            settings.HSM_VERIFY_CHALLENGE_RESOURCE, settings.AZURE_RETRY_TOTAL)


def _cached(kind: str, key: str, build):
    cache_key = (kind, key, _settings_key())
    with _lock:
        client = _cache.get(cache_key)
        if client is None:
            client = _cache[cache_key] = build()
        return client


def reset_clients() -> None:
    """Forget cached clients and credentials (after settings change, e.g. in tests)."""
    with _lock:
        _cache.clear()


def _transport_options() -> dict:
    options = {"retry_total": settings.AZURE_RETRY_TOTAL}
    if settings.AZURE_CA_BUNDLE:
        # The emulator (and a TLS-inspecting proxy) is signed by a private CA.
        options["connection_verify"] = settings.AZURE_CA_BUNDLE
    return options


def credential():
    """Credential for every Azure call, chosen by settings, never by callers."""
    def build():
        if settings.AZURE_CREDENTIAL == "client_secret":
            extra = {}
            if settings.AZURE_AUTHORITY_HOST:
                # A private authority (the emulator) is not in Microsoft's instance list.
                extra = {"authority": settings.AZURE_AUTHORITY_HOST,
                         "disable_instance_discovery": True}
            return ClientSecretCredential(settings.AZURE_TENANT_ID, settings.AZURE_CLIENT_ID,
                                          settings.AZURE_CLIENT_SECRET, **extra,
                                          **_transport_options())
        return DefaultAzureCredential(**_transport_options())
    return _cached("credential", "", build)


def _client_options() -> dict:
    # The emulator is not under *.managedhsm.azure.net, so the challenge's resource
    # cannot match its host; real Azure keeps the check on.
    return {"verify_challenge_resource": settings.HSM_VERIFY_CHALLENGE_RESOURCE,
            **_transport_options()}


def keys(hsm: HsmInstance) -> KeyClient:
    """Key client for one HSM; the URL decides whether this is Azure or the emulator."""
    return _cached("keys", hsm.uri, lambda: KeyClient(hsm.uri, credential(), **_client_options()))


def crypto(hsm: HsmInstance, key_id: str) -> CryptographyClient:
    """Cryptography client for one key id (a kid URL under this HSM)."""
    return CryptographyClient(key_id, credential(), **_client_options())


def access_control(hsm: HsmInstance) -> KeyVaultAccessControlClient:
    """Local RBAC client for one HSM."""
    return _cached("rbac", hsm.uri, lambda: KeyVaultAccessControlClient(
        hsm.uri, credential(), **_client_options()))


def backup(hsm: HsmInstance) -> KeyVaultBackupClient:
    """Full backup/restore client for one HSM."""
    return _cached("backup", hsm.uri, lambda: KeyVaultBackupClient(
        hsm.uri, credential(), **_client_options()))


def hsm_settings(hsm: HsmInstance) -> KeyVaultSettingsClient:
    """Settings client for one HSM."""
    return _cached("settings", hsm.uri, lambda: KeyVaultSettingsClient(
        hsm.uri, credential(), **_client_options()))
