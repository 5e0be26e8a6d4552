"""THE way to Azure: the only module that builds SDK clients and credentials.

Switching to the emulator changes HsmInstance URLs and credential settings, never code
paths. Clients are cached per process (one TLS connection pool and token cache each).
Every builder checks the HSM's URL first (`endpoints.hsm_url_checked`): a URL outside the
configured cloud's Managed HSM domain, and not a named emulator host, gets no client and so
never the portal's token.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from azure.core import PipelineClient
from azure.core.pipeline.policies import (BearerTokenCredentialPolicy, HeadersPolicy, HttpLoggingPolicy,
                                          RequestIdPolicy, RetryPolicy, UserAgentPolicy)
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.keyvault.administration import (KeyVaultAccessControlClient, KeyVaultBackupClient,
                                           KeyVaultSettingsClient)
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient
from azure.keyvault.securitydomain import SecurityDomainClient
from django.conf import settings

from portal.errors import HsmUnavailable
from portal.gateway.correlation import correlate_request
from portal.gateway.endpoints import HsmUrlRefused, hsm_url_checked, is_emulator_host
from portal.gateway.errors import remember_hsm

if TYPE_CHECKING:  # the package is imported while Django loads apps: no models here
    from portal.gateway.models import HsmInstance

_lock = threading.RLock()  # builders nest: a client builds the credential
_cache: dict = {}


def _settings_key() -> tuple:
    return (settings.AZURE_CREDENTIAL, settings.AZURE_TENANT_ID, settings.AZURE_CLIENT_ID,
            settings.AZURE_CLIENT_SECRET, settings.AZURE_AUTHORITY_HOST, settings.AZURE_CA_BUNDLE,
            settings.AZURE_HSM_DNS_SUFFIX, tuple(settings.HSM_EMULATOR_HOSTS or ()),
            settings.AZURE_RETRY_TOTAL)


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


def _client_options(uri: str) -> dict:
    # The SDK only sends the token when the challenge's resource matches the HSM's host.
    # An emulator is not under the Managed HSM domain, so only hosts named as emulators
    # skip that check; every other host keeps it, whatever else is configured.
    # raw_request_hook: the portal's request (or job) id goes out as x-ms-client-request-id,
    # which the HSM logs as the AuditEvent's correlationId (portal.gateway.correlation).
    return {"verify_challenge_resource": not is_emulator_host(uri),
            "raw_request_hook": correlate_request, **_transport_options()}


def _checked_uri(hsm: HsmInstance) -> str:
    """The HSM's URL if the portal may send it a token; HsmUnavailable otherwise."""
    try:
        uri = hsm_url_checked(hsm.uri)
    except HsmUrlRefused as exc:
        raise HsmUnavailable(f"The portal will not call HSM {hsm.name}, whose registered URL "
                             f"breaks the rule: {exc} Deregister it and register it again.",
                             code="hsm_url_refused") from None
    remember_hsm(uri, hsm.name)  # error messages name the HSM, never its URL
    return uri


def _client(kind: str, hsm: HsmInstance, client_class):
    uri = _checked_uri(hsm)
    return _cached(kind, uri, lambda: client_class(uri, credential(), **_client_options(uri)))


def keys(hsm: HsmInstance) -> KeyClient:
    """Key client for one HSM; the URL decides whether this is Azure or the emulator."""
    return _client("keys", hsm, KeyClient)


def crypto(hsm: HsmInstance, key_id: str) -> CryptographyClient:
    """Cryptography client for one key id (a kid URL under this HSM, refused otherwise)."""
    uri = _checked_uri(hsm)
    if not key_id.lower().startswith(uri.lower() + "/keys/"):
        raise HsmUnavailable(f"That key id is not a key of HSM {hsm.name}.",
                             code="hsm_url_refused")
    return CryptographyClient(key_id, credential(), **_client_options(uri))


def access_control(hsm: HsmInstance) -> KeyVaultAccessControlClient:
    """Local RBAC client for one HSM."""
    return _client("rbac", hsm, KeyVaultAccessControlClient)


def backup(hsm: HsmInstance) -> KeyVaultBackupClient:
    """Full backup/restore client for one HSM."""
    return _client("backup", hsm, KeyVaultBackupClient)


def blob_service():
    """Blob client for the storage account that holds full backups (settings decide which).

    With AZURE_STORAGE_ACCOUNT_KEY it signs with the account key (and SAS tokens are account
    SAS); without it, the portal's own credential is used (and SAS tokens are user
    delegation SAS).
    """
    from azure.storage.blob import BlobServiceClient

    endpoint = settings.AZURE_STORAGE_BLOB_ENDPOINT.rstrip("/")
    if not endpoint:
        raise HsmUnavailable("No backup storage account is configured "
                             "(AZURE_STORAGE_BLOB_ENDPOINT).", code="storage_not_configured")
    key = ("blob", endpoint, settings.AZURE_STORAGE_ACCOUNT_NAME,
           bool(settings.AZURE_STORAGE_ACCOUNT_KEY))

    def build():
        cred = ({"account_name": settings.AZURE_STORAGE_ACCOUNT_NAME,
                 "account_key": settings.AZURE_STORAGE_ACCOUNT_KEY}
                if settings.AZURE_STORAGE_ACCOUNT_KEY else credential())
        return BlobServiceClient(account_url=endpoint, credential=cred, **_transport_options())
    return _cached("blob", repr(key), build)


def hsm_settings(hsm: HsmInstance) -> KeyVaultSettingsClient:
    """Settings client for one HSM."""
    return _client("settings", hsm, KeyVaultSettingsClient)


def security_domain(hsm: HsmInstance) -> SecurityDomainClient:
    """Security-domain client for one HSM (download/activation, transfer key, upload)."""
    return _client("security_domain", hsm, SecurityDomainClient)


def graph_pipeline() -> PipelineClient:
    """HTTP pipeline to Microsoft Graph (AZURE_GRAPH_URL) with the portal's credential.

    Directory look-ups only (portal.gateway.directory). The token's scope is the Graph URL's
    `/.default` (`https://graph.microsoft.com/.default` in Azure; the emulator accepts its own
    Graph URL); the bearer policy refuses to send it to anything but https.
    """
    base = settings.AZURE_GRAPH_URL.rstrip("/")

    def build():
        policies = [
            RequestIdPolicy(), HeadersPolicy(), UserAgentPolicy(sdk_moniker="mhsm-portal-directory"),
            RetryPolicy(retry_total=settings.AZURE_RETRY_TOTAL),
            BearerTokenCredentialPolicy(credential(), f"{base}/.default"),
            HttpLoggingPolicy(),  # redacts the Authorization header
        ]
        transport = RequestsTransport(connection_verify=settings.AZURE_CA_BUNDLE or True)
        return PipelineClient(base, policies=policies, transport=transport)
    return _cached("graph", base, build)


# Azure Resource Manager (management plane): CMK consumers (storage accounts, PostgreSQL and
# MySQL flexible servers), user-assigned identities, the HSM resource and Azure RBAC on it.
_ARM_CLIENTS = {
    "storage": ("azure.mgmt.storage", "StorageManagementClient"),
    "postgresql": ("azure.mgmt.postgresqlflexibleservers", "PostgreSQLManagementClient"),
    "mysql": ("azure.mgmt.mysqlflexibleservers", "MySQLManagementClient"),
    "msi": ("azure.mgmt.msi", "ManagedServiceIdentityClient"),
    "authorization": ("azure.mgmt.authorization", "AuthorizationManagementClient"),
    "keyvault": ("azure.mgmt.keyvault", "KeyVaultManagementClient"),
    # The package's top-level import fails in v26: the resources sub-package is the client.
    "resources": ("azure.mgmt.resource.resources", "ResourceManagementClient"),
}


def arm(kind: str, subscription_id: str):
    """A Resource Manager client of one kind (see _ARM_CLIENTS) for one subscription.

    The address is AZURE_RESOURCE_MANAGER_URL and the token's scope
    AZURE_RESOURCE_MANAGER_SCOPE: production and the emulator differ only in settings.
    """
    import importlib

    module, name = _ARM_CLIENTS[kind]
    base_url = settings.AZURE_RESOURCE_MANAGER_URL.rstrip("/")
    scope = settings.AZURE_RESOURCE_MANAGER_SCOPE

    def build():
        cls = getattr(importlib.import_module(module), name)
        return cls(credential(), subscription_id, base_url=base_url, credential_scopes=[scope],
                   **_transport_options())
    return _cached(f"arm-{kind}", f"{base_url}|{scope}|{subscription_id}", build)
