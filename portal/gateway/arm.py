"""Azure Resource Manager for the portal's CMK and HSM-resource pages, as plain dicts.

Customer-managed-key consumers (storage accounts, PostgreSQL and MySQL flexible servers),
user-assigned identities, the Managed HSM resource (network, private endpoint connections,
replica regions) and Azure RBAC on it. Services never hold SDK types: every function returns
dicts and lists, and every failure is a PortalError whose message says what to do next
(`arm_errors`).
"""
from __future__ import annotations

import re
import uuid
from contextlib import contextmanager

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ResourceNotFoundError, ServiceRequestError,
                                   ServiceResponseError)

from portal.errors import BadInput, Conflict, HsmUnavailable, NotAllowed, NotFound, Throttled
from portal.gateway.clients import arm

STORAGE, POSTGRESQL, MYSQL = "storage", "postgresql", "mysql"
TYPES = {
    STORAGE: "Microsoft.Storage/storageAccounts",
    POSTGRESQL: "Microsoft.DBforPostgreSQL/flexibleServers",
    MYSQL: "Microsoft.DBforMySQL/flexibleServers",
}
TYPE_LABELS = {STORAGE: "Storage account", POSTGRESQL: "Azure Database for PostgreSQL flexible server",
               MYSQL: "Azure Database for MySQL flexible server"}
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
_RID = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                  r"(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)$", re.I)
# What the services answer when pointing encryption at a key fails, in words that say what
# to do (the service's code -> the reason the portal reports).
CMK_REASONS = {
    "KeyVaultPolicyError": "purge_protection",
    "SecurityInvalidAzureKeyVaultRecoveryLevel": "purge_protection",
    "KeyVaultAuthenticationFailure": "permission",
    "AzureKeyVaultMissingPermissions": "permission",
    "KeyVaultKeyNotFound": "not_found",
    "AzureKeyVaultKeyNotFound": "not_found",
    "KeyVaultKeyDisabled": "disabled",
    "AzureKeyVaultKeyDisabled": "disabled",
    "KeyVaultKeyOperationsNotPermitted": "key_ops",
    "AzureKeyVaultKeyOperationsNotPermitted": "key_ops",
    "KeyVaultNotReachable": "unreachable",
    "AzureKeyVaultNotReachable": "unreachable",
}


class CmkRefused(BadInput):
    """The service refused to point encryption at the key; `reason` says which check failed."""

    code = "cmk_refused"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, code=f"cmk_{reason}")
        self.reason = reason


def parse_id(resource_id: str) -> dict:
    """{sub, rg, ns, type, name} of an ARM resource id; BadInput when it is not one."""
    match = _RID.match((resource_id or "").strip())
    if not match:
        raise BadInput("That is not an Azure resource id (/subscriptions/<id>/resourceGroups/"
                       "<group>/providers/<namespace>/<type>/<name>).", code="bad_resource_id")
    return match.groupdict()


def kind_of(resource_id: str) -> str:
    """storage, postgresql or mysql for a CMK consumer's id; BadInput otherwise."""
    parts = parse_id(resource_id)
    full = f"{parts['ns']}/{parts['type']}".lower()
    for kind, rtype in TYPES.items():
        if rtype.lower() == full:
            return kind
    raise BadInput("Only storage accounts and PostgreSQL or MySQL flexible servers can use an "
                   "HSM key here.", code="unsupported_resource")


def _message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    text = getattr(error, "message", None) or exc.reason or ""
    text = re.sub(r"https?://\S+", "", text).replace("\n", " ").strip()
    return re.sub(r"\s+", " ", text)


def _code(exc: HttpResponseError) -> str:
    return getattr(getattr(exc, "error", None), "code", None) or ""


@contextmanager
def arm_errors(what: str):
    """Turn Resource Manager failures into PortalErrors that name `what` was being done."""
    try:
        yield
    except ResourceNotFoundError as exc:
        raise NotFound(f"Azure did not find it while {what}: {_message(exc) or 'not found'}",
                       code="arm_not_found") from exc
    except ClientAuthenticationError as exc:
        raise NotAllowed(f"Azure refused the portal's identity while {what}: give it a role "
                         "on the resource (Reader to see it, Contributor to change it).",
                         code="arm_forbidden") from exc
    except HttpResponseError as exc:
        status, code, text = exc.status_code, _code(exc), _message(exc)
        if code in CMK_REASONS:
            raise CmkRefused(text, reason=CMK_REASONS[code]) from exc
        if status == 403:
            raise NotAllowed(f"Azure refused the portal's identity while {what}: give it a "
                             "role that allows this on the resource.", code="arm_forbidden") from exc
        if status == 409:
            raise Conflict(f"Azure refused this while {what}: {text}", code="arm_conflict") from exc
        if status == 429:
            raise Throttled(f"Azure is throttling the portal while {what}; try again in a "
                            "minute.") from exc
        if status and 400 <= status < 500:
            raise BadInput(f"Azure refused this while {what}: {text}", code="arm_refused") from exc
        raise HsmUnavailable(f"Azure Resource Manager did not answer while {what} "
                             f"({status or 'no status'}); try again shortly.",
                             code="arm_unavailable") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise HsmUnavailable(f"Azure Resource Manager could not be reached while {what}; try "
                             "again shortly.", code="arm_unavailable") from exc


# -- reading CMK consumers ----------------------------------------------------------------

def _value(obj, name, default=None):
    value = getattr(obj, name, default)
    return getattr(value, "value", value)


def _identities(identity) -> dict[str, dict]:
    out = {}
    for rid, item in (getattr(identity, "user_assigned_identities", None) or {}).items():
        out[rid] = {"principal_id": getattr(item, "principal_id", "") or "",
                    "client_id": getattr(item, "client_id", "") or ""}
    return out


def _split_key_uri(uri: str) -> tuple[str, str, str]:
    """(vault URL, key name, version or "") of https://<host>/keys/<name>[/<version>]."""
    match = re.match(r"^(https://[^/]+)/keys/([^/]+)(?:/([^/]+))?/?$", uri or "", re.I)
    if not match:
        return "", "", ""
    return match[1].lower(), match[2], match[3] or ""


def _storage(account) -> dict:
    encryption = account.encryption
    kv = getattr(encryption, "key_vault_properties", None)
    key = None
    if encryption is not None and _value(encryption, "key_source") == "Microsoft.Keyvault" and kv:
        current = kv.current_versioned_key_identifier or ""
        _vault, _name, current_version = _split_key_uri(current)
        key = {"vault": (kv.key_vault_uri or "").rstrip("/").lower(), "name": kv.key_name or "",
               "version": kv.key_version or "", "current_version": current_version,
               "identity": getattr(getattr(encryption, "encryption_identity", None),
                                   "encryption_user_assigned_identity", "") or ""}
    return {"id": account.id, "name": account.name, "kind": STORAGE, "location": account.location,
            "resource_group": parse_id(account.id)["rg"],
            "provisioning_state": _value(account, "provisioning_state") or "",
            "identities": _identities(account.identity), "key": key}


def _server(server, kind: str) -> dict:
    props = getattr(server, "properties", None) or server
    enc = getattr(props, "data_encryption", None)
    key = None
    if enc is not None and _value(enc, "type") == "AzureKeyVault" and enc.primary_key_uri:
        vault, name, version = _split_key_uri(enc.primary_key_uri)
        key = {"vault": vault, "name": name, "version": version, "current_version": version,
               "identity": enc.primary_user_assigned_identity_id or ""}
    return {"id": server.id, "name": server.name, "kind": kind, "location": server.location,
            "resource_group": parse_id(server.id)["rg"],
            "provisioning_state": _value(props, "state") or "",
            "identities": _identities(server.identity), "key": key}


def consumers_list(subscription_id: str) -> list[dict]:
    """Every storage account and PostgreSQL/MySQL flexible server of the subscription."""
    out = []
    with arm_errors("listing storage accounts"):
        out += [_storage(a) for a in arm(STORAGE, subscription_id).storage_accounts.list()]
    with arm_errors("listing PostgreSQL flexible servers"):
        out += [_server(s, POSTGRESQL) for s in
                arm(POSTGRESQL, subscription_id).servers.list_by_subscription()]
    with arm_errors("listing MySQL flexible servers"):
        out += [_server(s, MYSQL) for s in arm(MYSQL, subscription_id).servers.list()]
    return sorted(out, key=lambda item: (item["kind"], item["name"]))


def consumer_get(resource_id: str) -> dict:
    """One CMK consumer, read now."""
    kind, parts = kind_of(resource_id), parse_id(resource_id)
    with arm_errors(f"reading {parts['name']}"):
        if kind == STORAGE:
            return _storage(arm(STORAGE, parts["sub"]).storage_accounts.get_properties(
                parts["rg"], parts["name"]))
        return _server(arm(kind, parts["sub"]).servers.get(parts["rg"], parts["name"]), kind)


def _identity_types(current: str, user_assigned: bool) -> str:
    system = "SystemAssigned" in (current or "")
    if system and user_assigned:
        return "SystemAssigned,UserAssigned"
    return "SystemAssigned" if system else "UserAssigned" if user_assigned else "None"


def consumer_encryption_set(resource_id: str, *, identity_id: str, vault_url: str,
                            key_name: str, key_version: str = "") -> dict:
    """Give the resource the identity (kept beside the ones it has) and point its encryption
    at the key (versionless when key_version is ""). The service checks the key as that
    identity; a refusal is CmkRefused and changes nothing. Returns the resource as read after."""
    kind, parts = kind_of(resource_id), parse_id(resource_id)
    current = consumer_get(resource_id)
    with arm_errors(f"setting the encryption of {parts['name']}"):
        if kind == STORAGE:
            from azure.mgmt.storage import models as m

            client = arm(STORAGE, parts["sub"])
            account = client.storage_accounts.get_properties(parts["rg"], parts["name"])
            ids = {rid: m.UserAssignedIdentity() for rid in current["identities"]}
            ids[identity_id] = m.UserAssignedIdentity()
            client.storage_accounts.update(parts["rg"], parts["name"], m.StorageAccountUpdateParameters(
                identity=m.Identity(type=_identity_types(_value(account.identity, "type") if
                                                         account.identity else "", True),
                                    user_assigned_identities=ids),
                encryption=m.Encryption(
                    key_source="Microsoft.Keyvault",
                    key_vault_properties=m.KeyVaultProperties(
                        key_name=key_name, key_vault_uri=vault_url.rstrip("/") + "/",
                        key_version=key_version),
                    encryption_identity=m.EncryptionIdentity(
                        encryption_user_assigned_identity=identity_id))))
        elif kind == POSTGRESQL:
            from azure.mgmt.postgresqlflexibleservers import models as m

            ids = {rid: m.UserIdentity() for rid in current["identities"]}
            ids[identity_id] = m.UserIdentity()
            arm(POSTGRESQL, parts["sub"]).servers.begin_update(parts["rg"], parts["name"], m.ServerForPatch(
                identity=m.UserAssignedIdentity(type="UserAssigned", user_assigned_identities=ids),
                properties=m.ServerPropertiesForPatch(data_encryption=m.DataEncryption(
                    type="AzureKeyVault", primary_key_uri=_key_uri(vault_url, key_name, key_version),
                    primary_user_assigned_identity_id=identity_id)))).result()
        else:
            from azure.mgmt.mysqlflexibleservers import models as m

            ids = {rid: {} for rid in current["identities"]}
            ids[identity_id] = {}
            arm(MYSQL, parts["sub"]).servers.begin_update(parts["rg"], parts["name"], m.ServerForUpdate(
                identity=m.MySQLServerIdentity(type="UserAssigned", user_assigned_identities=ids),
                data_encryption=m.DataEncryption(
                    type="AzureKeyVault", primary_key_uri=_key_uri(vault_url, key_name, key_version),
                    primary_user_assigned_identity_id=identity_id))).result()
    return consumer_get(resource_id)


def _key_uri(vault_url: str, key_name: str, key_version: str) -> str:
    return f"{vault_url.rstrip('/')}/keys/{key_name}" + (f"/{key_version}" if key_version else "")


def consumer_encryption_clear(resource_id: str, *, remove_identity: str = "") -> dict:
    """Encryption back to service-managed keys; with remove_identity, that user-assigned
    identity also leaves the resource (the wizard's undo). Returns the resource after."""
    kind, parts = kind_of(resource_id), parse_id(resource_id)
    current = consumer_get(resource_id)
    keep = [rid for rid in current["identities"] if rid.lower() != remove_identity.lower()]
    with arm_errors(f"clearing the encryption of {parts['name']}"):
        if kind == STORAGE:
            from azure.mgmt.storage import models as m

            client = arm(STORAGE, parts["sub"])
            client.storage_accounts.update(parts["rg"], parts["name"], m.StorageAccountUpdateParameters(
                encryption=m.Encryption(key_source="Microsoft.Storage")))
            if remove_identity and len(keep) != len(current["identities"]):
                client.storage_accounts.update(parts["rg"], parts["name"], m.StorageAccountUpdateParameters(
                    identity=m.Identity(type="UserAssigned" if keep else "None",
                                        user_assigned_identities={r: m.UserAssignedIdentity()
                                                                  for r in keep} or None)))
        elif kind == POSTGRESQL:
            from azure.mgmt.postgresqlflexibleservers import models as m

            client = arm(POSTGRESQL, parts["sub"])
            client.servers.begin_update(parts["rg"], parts["name"], m.ServerForPatch(
                properties=m.ServerPropertiesForPatch(data_encryption=m.DataEncryption(
                    type="SystemManaged")))).result()
            if remove_identity and len(keep) != len(current["identities"]):
                client.servers.begin_update(parts["rg"], parts["name"], m.ServerForPatch(
                    identity=m.UserAssignedIdentity(
                        type="UserAssigned" if keep else "None",
                        user_assigned_identities={r: m.UserIdentity() for r in keep}))).result()
        else:
            from azure.mgmt.mysqlflexibleservers import models as m

            client = arm(MYSQL, parts["sub"])
            client.servers.begin_update(parts["rg"], parts["name"], m.ServerForUpdate(
                data_encryption=m.DataEncryption(type="SystemManaged"))).result()
            if remove_identity and len(keep) != len(current["identities"]):
                client.servers.begin_update(parts["rg"], parts["name"], m.ServerForUpdate(
                    identity=m.MySQLServerIdentity(type="UserAssigned" if keep else "None",
                                                   user_assigned_identities={r: {} for r in keep})))\
                    .result()
    return consumer_get(resource_id)


# -- user-assigned identities ---------------------------------------------------------------

def _uami(item) -> dict:
    return {"id": item.id, "name": item.name, "location": item.location,
            "resource_group": parse_id(item.id)["rg"], "principal_id": item.principal_id or "",
            "client_id": item.client_id or ""}


def identities_list(subscription_id: str) -> list[dict]:
    """The subscription's user-assigned managed identities."""
    with arm_errors("listing managed identities"):
        return sorted((_uami(i) for i in arm("msi", subscription_id)
                       .user_assigned_identities.list_by_subscription()), key=lambda i: i["name"])


def identity_get(resource_id: str) -> dict | None:
    """One user-assigned identity, or None when it does not exist."""
    parts = parse_id(resource_id)
    with arm_errors(f"reading identity {parts['name']}"):
        try:
            return _uami(arm("msi", parts["sub"]).user_assigned_identities.get(parts["rg"],
                                                                               parts["name"]))
        except ResourceNotFoundError:
            return None


def identity_create(*, subscription_id: str, resource_group: str, name: str,
                    location: str) -> dict:
    """Create (or return the existing) user-assigned identity; its principal id is what
    local RBAC on the HSM is granted to."""
    from azure.mgmt.msi.models import Identity

    with arm_errors(f"creating identity {name}"):
        return _uami(arm("msi", subscription_id).user_assigned_identities.create_or_update(
            resource_group, name, Identity(location=location, tags={"created-by": "mhsm-portal"})))


def identity_delete(resource_id: str) -> None:
    """Delete a user-assigned identity (one already gone is not an error)."""
    parts = parse_id(resource_id)
    with arm_errors(f"deleting identity {parts['name']}"):
        arm("msi", parts["sub"]).user_assigned_identities.delete(parts["rg"], parts["name"])


# -- the Managed HSM resource ---------------------------------------------------------------

def _hsm_parts(hsm) -> dict:
    if not hsm.arm_resource_id:
        raise NotFound(f"HSM {hsm.name} has no Azure resource id in the portal: register it "
                       "with its resource id to use its management plane.",
                       code="no_resource_id")
    return parse_id(hsm.arm_resource_id)


def _acls(acls) -> dict:
    if acls is None:
        return {"default_action": "", "bypass": "", "ip_rules": [], "virtual_network_rules": []}
    return {"default_action": _value(acls, "default_action") or "",
            "bypass": _value(acls, "bypass") or "",
            "ip_rules": [r.value for r in acls.ip_rules or []],
            "virtual_network_rules": [r.id for r in acls.virtual_network_rules or []]}


def _pec(item) -> dict:
    props = getattr(item, "properties", None) or item
    state = getattr(props, "private_link_service_connection_state", None)
    endpoint = getattr(props, "private_endpoint", None)
    rid = getattr(item, "id", "") or ""
    return {"name": getattr(item, "name", "") or rid.rsplit("/", 1)[-1], "id": rid,
            "status": _value(state, "status") or "", "description": getattr(state, "description", "")
            or "", "private_endpoint": getattr(endpoint, "id", "") or "",
            "provisioning_state": _value(props, "provisioning_state") or ""}


def hsm_resource_get(hsm) -> dict:
    """The HSM's management-plane properties, read now."""
    parts = _hsm_parts(hsm)
    with arm_errors(f"reading HSM {hsm.name}'s resource"):
        item = arm("keyvault", parts["sub"]).managed_hsms.get(parts["rg"], parts["name"])
    props = item.properties
    identity = getattr(item, "identity", None)
    return {
        "id": item.id, "name": item.name, "location": item.location,
        "sku": _value(item.sku, "name") or "",
        "provisioning_state": _value(props, "provisioning_state") or "",
        "purge_protection": bool(props.enable_purge_protection),
        "soft_delete_retention_days": props.soft_delete_retention_in_days,
        "public_network_access": _value(props, "public_network_access") or "Enabled",
        "network_acls": _acls(props.network_acls),
        "private_endpoint_connections": [_pec(p) for p in props.private_endpoint_connections or []],
        "regions": [{"name": r.name, "is_primary": bool(r.is_primary),
                     "provisioning_state": _value(r, "provisioning_state") or ""}
                    for r in props.regions or []],
        "identity_type": _value(identity, "type") or "None" if identity else "None",
        "identities": _identities(identity),
        "principal_id": getattr(identity, "principal_id", "") or "",
        "security_domain": _value(getattr(props, "security_domain_properties", None),
                                  "activation_status") or "",
    }


def _hsm_update(hsm, what: str, **properties) -> dict:
    from azure.mgmt.keyvault.models import ManagedHsm, ManagedHsmProperties

    parts = _hsm_parts(hsm)
    client = arm("keyvault", parts["sub"])
    with arm_errors(what):
        current = client.managed_hsms.get(parts["rg"], parts["name"])
        client.managed_hsms.begin_update(parts["rg"], parts["name"], ManagedHsm(
            location=current.location, properties=ManagedHsmProperties(**properties))).result()
    return hsm_resource_get(hsm)


def hsm_public_network_access_set(hsm, *, enabled: bool) -> dict:
    """Turn the HSM's public network access on or off; returns the properties after."""
    return _hsm_update(hsm, f"changing HSM {hsm.name}'s public network access",
                       public_network_access="Enabled" if enabled else "Disabled")


def hsm_purge_protection_enable(hsm) -> dict:
    """Turn on the HSM's purge protection (Azure never turns it off again)."""
    return _hsm_update(hsm, f"turning on HSM {hsm.name}'s purge protection",
                       enable_purge_protection=True)


def hsm_regions_set(hsm, *, regions: list[str]) -> dict:
    """Set the HSM's regions (the primary first, then replicas); adding a region starts a
    replica, leaving one out removes it. Returns the properties after."""
    from azure.mgmt.keyvault.models import MHSMGeoReplicatedRegion

    return _hsm_update(hsm, f"changing HSM {hsm.name}'s replica regions",
                       regions=[MHSMGeoReplicatedRegion(name=r) for r in regions])


def hsm_private_endpoint_set(hsm, *, name: str, status: str, description: str) -> dict:
    """Approve or reject a private endpoint connection (status Approved / Rejected)."""
    from azure.mgmt.keyvault import models as m

    parts = _hsm_parts(hsm)
    with arm_errors(f"changing private endpoint connection {name}"):
        item = arm("keyvault", parts["sub"]).mhsm_private_endpoint_connections.put(
            parts["rg"], parts["name"], name, m.MHSMPrivateEndpointConnection(
                properties=m.MHSMPrivateEndpointConnectionProperties(
                    private_link_service_connection_state=m.MHSMPrivateLinkServiceConnectionState(
                        status=status, description=description))))
    return _pec(item)


# -- Azure RBAC on the HSM resource ---------------------------------------------------------

def hsm_azure_role_assignments(hsm) -> list[dict]:
    """Azure RBAC (management plane) at, above and below the HSM resource, with role names."""
    parts = _hsm_parts(hsm)
    client = arm("authorization", parts["sub"])
    with arm_errors(f"reading Azure role assignments of HSM {hsm.name}"):
        names = {d.id.lower(): d.role_name for d in client.role_definitions.list(hsm.arm_resource_id)}
        out = []
        for item in client.role_assignments.list_for_scope(hsm.arm_resource_id):
            definition = item.role_definition_id or ""
            out.append({"name": item.name, "principal_id": item.principal_id or "",
                        "principal_type": _value(item, "principal_type") or "",
                        "scope": item.scope or "", "role_definition_id": definition,
                        "role_name": names.get(definition.lower(), definition.rsplit("/", 1)[-1])})
    return sorted(out, key=lambda a: (a["role_name"], a["principal_id"]))


def new_name() -> str:
    """A fresh GUID for an assignment or identity suffix."""
    return str(uuid.uuid4())

