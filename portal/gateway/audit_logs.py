"""The HSM's own audit log and the audit trail's signed checkpoints (storage, Log Analytics, keys).

Services call these functions with plain values and get plain values back (dicts, bytes,
strings); no SDK object leaves this module.

- Diagnostic logs in storage: a Managed HSM diagnostic setting writes AuditEvents as JSON
  lines into append blobs of the container `insights-logs-auditevent`, one blob per resource
  and hour (`resourceId=/SUBSCRIPTIONS/.../y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`). The blob
  keeps growing for the hour, so readers remember per blob how many bytes they consumed.
- Log Analytics (HSM_AUDIT_SOURCE=log_analytics): the AzureDiagnostics rows of the HSMs,
  queried with azure-monitor-query and mapped to the same event shape.
- Checkpoints: signed with an HSM key (CryptographyClient), stored as JSON blobs in the
  container `audit-checkpoints` of the portal's storage account.
"""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ResourceExistsError, ResourceNotFoundError,
                                   ServiceRequestError, ServiceResponseError)
from django.conf import settings

from portal.errors import HsmUnavailable
from portal.gateway.clients import _cached, _transport_options, blob_service, credential, crypto, keys
from portal.gateway.errors import translated_errors

AUDIT_LOG_CONTAINER = "insights-logs-auditevent"
CHECKPOINT_CONTAINER = "audit-checkpoints"
CHECKPOINT_ALGORITHM = "ES256"


def _storage_errors(what: str):
    """Storage failures as one sentence (the account's URL and keys never in it)."""
    class _Guard:
        def __enter__(self):
            return self

        def __exit__(self, kind, exc, tb):
            if exc is None or isinstance(exc, ResourceNotFoundError):
                return False
            if isinstance(exc, (HttpResponseError, ClientAuthenticationError,
                                ServiceRequestError, ServiceResponseError)):
                raise HsmUnavailable(f"The storage account could not {what} "
                                     f"({exc.__class__.__name__}); try again shortly.",
                                     code="storage_unavailable") from exc
            return False
    return _Guard()


def audit_log_service():
    """The blob service of the account a diagnostic setting writes to.

    HSM_AUDIT_STORAGE_BLOB_ENDPOINT (+ _ACCOUNT_NAME/_ACCOUNT_KEY) when it differs from the
    backup account; otherwise the backup account's client (AZURE_STORAGE_*).
    """
    from azure.storage.blob import BlobServiceClient

    endpoint = settings.HSM_AUDIT_STORAGE_BLOB_ENDPOINT.rstrip("/")
    if not endpoint:
        return blob_service()
    name, key = settings.HSM_AUDIT_STORAGE_ACCOUNT_NAME, settings.HSM_AUDIT_STORAGE_ACCOUNT_KEY

    def build():
        cred = {"account_name": name, "account_key": key} if key else credential()
        return BlobServiceClient(account_url=endpoint, credential=cred, **_transport_options())
    return _cached("audit-blob", repr((endpoint, name, bool(key))), build)


def audit_log_blobs(*, prefix: str = "resourceId=") -> list[dict]:
    """The diagnostic log blobs: [{"name", "etag", "size"}], oldest hour first."""
    container = audit_log_service().get_container_client(AUDIT_LOG_CONTAINER)
    with _storage_errors("list the HSM audit logs"):
        try:
            blobs = [{"name": blob.name, "etag": str(blob.etag or ""), "size": blob.size or 0}
                     for blob in container.list_blobs(name_starts_with=prefix)]
        except ResourceNotFoundError:  # no setting has written anything yet
            return []
    return sorted(blobs, key=lambda blob: blob["name"])


def audit_log_read(*, name: str, offset: int) -> tuple[bytes, str]:
    """The bytes of one log blob from `offset` to its current end, and its etag."""
    blob = audit_log_service().get_blob_client(AUDIT_LOG_CONTAINER, name)
    with _storage_errors("read an HSM audit log"):
        try:
            downloader = blob.download_blob(offset=offset) if offset else blob.download_blob()
        except HttpResponseError as exc:
            if exc.status_code == 416:  # nothing past offset
                return b"", ""
            raise
        return downloader.readall(), str(downloader.properties.etag or "")


# Log Analytics: Managed HSM's AzureDiagnostics columns, mapped to the storage event shape.
LOG_ANALYTICS_QUERY = """AzureDiagnostics
| where ResourceProvider == "MICROSOFT.KEYVAULT" and ResourceType == "MANAGEDHSMS"
| where Category == "AuditEvent" and TimeGenerated > datetime({since})
| project TimeGenerated, ResourceId, OperationName, OperationVersion, ResultType,
    ResultSignature, ResultDescription, DurationMs, CallerIPAddress, CorrelationId,
    identity_claim_oid_g, identity_claim_appid_g, identity_claim_upn_s, requestUri_s,
    httpStatusCode_d, id_s, clientInfo_s, isRbacAuthorized_b
| order by TimeGenerated asc
| take {limit}"""


def log_analytics_row_to_event(row: dict) -> dict:
    """One AzureDiagnostics row as the AuditEvent JSON a diagnostic setting writes."""
    def text(name):
        value = row.get(name)
        return "" if value is None else str(value)

    time = row.get("TimeGenerated")
    if isinstance(time, datetime):
        time = time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    claim = {key: text(column) for key, column in (
        ("oid", "identity_claim_oid_g"), ("appid", "identity_claim_appid_g"),
        ("upn", "identity_claim_upn_s")) if text(column)}
    status = row.get("httpStatusCode_d")
    return {"time": str(time or ""), "resourceId": text("ResourceId"),
            "operationName": text("OperationName"), "operationVersion": text("OperationVersion"),
            "category": "AuditEvent", "resultType": text("ResultType"),
            "resultSignature": text("ResultSignature"),
            "resultDescription": text("ResultDescription"),
            "durationMs": text("DurationMs"), "callerIpAddress": text("CallerIPAddress"),
            "correlationId": text("CorrelationId"),
            "identity": {"claim": claim} if claim else None,
            "properties": {"id": text("id_s"), "requestUri": text("requestUri_s"),
                           "httpStatusCode": int(status) if status is not None else None,
                           "clientInfo": text("clientInfo_s"),
                           "isRbacAuthorized": row.get("isRbacAuthorized_b")}}


def log_analytics_events(*, workspace_id: str, since: datetime, limit: int = 10000) -> list[dict]:
    """AuditEvents of every HSM logged to the workspace after `since` (oldest first).

    Not exercised by the test suite: there is no local Log Analytics. The mapping
    (log_analytics_row_to_event) is tested on rows shaped like the service's.
    """
    from azure.monitor.query import LogsQueryClient, LogsQueryStatus

    client = _cached("logs", settings.HSM_AUDIT_LOGS_ENDPOINT or "default", lambda: LogsQueryClient(
        credential(), **({"endpoint": settings.HSM_AUDIT_LOGS_ENDPOINT}
                         if settings.HSM_AUDIT_LOGS_ENDPOINT else {}), **_transport_options()))
    query = LOG_ANALYTICS_QUERY.format(since=since.astimezone(timezone.utc).isoformat(),
                                       limit=int(limit))
    try:
        response = client.query_workspace(workspace_id, query,
                                          timespan=(since - timedelta(minutes=5),
                                                    datetime.now(timezone.utc)))
    except (HttpResponseError, ClientAuthenticationError, ServiceRequestError,
            ServiceResponseError) as exc:
        raise HsmUnavailable(f"Log Analytics could not be queried ({exc.__class__.__name__}); "
                             "try again shortly.", code="log_analytics_unavailable") from exc
    if response.status != LogsQueryStatus.SUCCESS:
        raise HsmUnavailable("Log Analytics answered only part of the query; the next run "
                             "reads again from the same point.", code="log_analytics_partial")
    events = []
    for table in response.tables:
        columns = list(table.columns)
        for values in table.rows:
            events.append(log_analytics_row_to_event(dict(zip(columns, values, strict=False))))
    return events


# Signed checkpoints.
def checkpoint_key_get(hsm, *, name: str) -> dict | None:
    """{"kid", "kty"} of the checkpoint key's current version, or None if it does not exist."""
    with translated_errors(hsm=hsm.name):
        try:
            key = keys(hsm).get_key(name)
        except ResourceNotFoundError:
            return None
    return {"kid": key.id, "kty": str(key.key_type)}


def checkpoint_key_create(hsm, *, name: str) -> dict:
    """Create the EC P-256 signing key in the HSM (sign/verify only); {"kid", "kty"}."""
    with translated_errors(hsm=hsm.name):
        key = keys(hsm).create_ec_key(name, curve="P-256", hardware_protected=True,
                                      key_operations=["sign", "verify"],
                                      tags={"purpose": "portal-audit-checkpoint"})
    return {"kid": key.id, "kty": str(key.key_type)}


def _digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


def checkpoint_sign(hsm, *, key_id: str, payload: bytes) -> str:
    """The HSM's ES256 signature of SHA-256(payload), base64."""
    from azure.keyvault.keys.crypto import SignatureAlgorithm

    with translated_errors(hsm=hsm.name):
        result = crypto(hsm, key_id).sign(SignatureAlgorithm.es256, _digest(payload))
    return base64.b64encode(result.signature).decode()


def _checkpoint_container():
    return blob_service().get_container_client(settings.AUDIT_CHECKPOINT_CONTAINER
                                               or CHECKPOINT_CONTAINER)


def checkpoint_public_key(hsm, *, key_id: str):
    """The public half of one checkpoint key version, read once from the HSM, as a verifier:
    a callable(payload, signature_b64) -> bool that checks ES256 locally (the HSM holds the
    private key; a verification needs only the public one, so a year of checkpoints costs
    one call per key version)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    uri = hsm.uri.rstrip("/") + "/keys/"
    if not key_id.lower().startswith(uri.lower()):
        raise HsmUnavailable(f"That key id is not a key of HSM {hsm.name}.",
                             code="hsm_url_refused")
    name, _, version = key_id[len(uri):].partition("/")
    with translated_errors(hsm=hsm.name):
        jwk = keys(hsm).get_key(name, version or None).key
    if not (jwk.x and jwk.y) or jwk.crv != "P-256":
        return lambda payload, signature: False
    public = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"),
                                           int.from_bytes(jwk.y, "big"),
                                           ec.SECP256R1()).public_key()

    def verify(payload: bytes, signature: str) -> bool:
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            return False
        if len(raw) != 64:
            return False
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True
    return verify


def checkpoint_store(*, name: str, document: dict) -> None:
    """Write a checkpoint's JSON blob (never overwritten: a second write of a name fails)."""
    container = _checkpoint_container()
    with _storage_errors("store an audit checkpoint"):
        try:
            container.create_container()
        except ResourceExistsError:
            pass
        container.upload_blob(name, json.dumps(document, sort_keys=True).encode(),
                              overwrite=False)


def checkpoint_documents() -> list[dict]:
    """Every checkpoint JSON in the checkpoint container (each with its "blob_name")."""
    container = _checkpoint_container()
    documents = []
    with _storage_errors("list the audit checkpoints"):
        try:
            names = [blob.name for blob in container.list_blobs()]
        except ResourceNotFoundError:
            return []
        for name in names:
            try:
                document = json.loads(container.download_blob(name).readall())
            except ValueError:
                document = {"unreadable": True}
            documents.append({**document, "blob_name": name})
    return documents
