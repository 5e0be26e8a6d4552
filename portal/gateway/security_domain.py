"""Security domain of a Managed HSM through the official SecurityDomainClient.

Services call these functions, never azure.* themselves. Every function raises PortalError
subclasses (translated_errors). The security domain and the upload blob pass through as
opaque text: nothing here logs or keeps them.

Long-running operations: download and upload return as soon as the HSM accepted the
request (`skip_activation_polling=True`; the download's security domain is in that first
response); the caller then polls `activation_status` itself, so a worker that restarts
resumes by polling again, without a second POST.
"""
from __future__ import annotations

import base64
import hashlib
import json

from portal.gateway.clients import security_domain
from portal.gateway.errors import translated_errors

# The service spells its terminal success "Success"; the SDK accepts "Succeeded" too.
SUCCEEDED = frozenset({"success", "succeeded"})
FAILED = frozenset({"failed", "canceled", "cancelled"})


def _status(model) -> dict:
    if model is None:
        return {"status": "", "detail": ""}
    status = getattr(model, "status", None)
    status = getattr(status, "value", status) or ""
    return {"status": str(status), "detail": getattr(model, "status_details", None) or ""}


NOT_STARTED = frozenset({"", "notstarted", "not_started"})


def operation_state(status: str) -> str:
    """'succeeded', 'failed', 'not_started' or 'running' for a security-domain status."""
    lowered = (status or "").lower()
    if lowered in SUCCEEDED:
        return "succeeded"
    if lowered in FAILED:
        return "failed"
    if lowered in NOT_STARTED:
        return "not_started"
    return "running"


def download_status(hsm) -> dict:
    """The status of the HSM's security-domain download (its activation): status, detail."""
    with translated_errors(hsm=hsm.name):
        return _status(security_domain(hsm).get_download_status())


def upload_status(hsm) -> dict:
    """The status of the HSM's latest security-domain upload (recovery): status, detail."""
    with translated_errors(hsm=hsm.name):
        return _status(security_domain(hsm).get_upload_status())


def certificate_jwk(*, der: bytes, n: int, e: int, kid: str) -> dict:
    """A wrapping certificate as the security-domain JWK the service expects (as the CLI
    builds it): RSA public numbers, the DER certificate in x5c and its thumbprints."""
    def b64url_int(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def b64url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"kid": kid, "kty": "RSA", "key_ops": ["verify", "encrypt", "wrapKey"],
            "n": b64url_int(n), "e": b64url_int(e),
            "x5c": [base64.b64encode(der).decode()],
            "x5t": b64url(hashlib.sha1(der, usedforsecurity=False).digest()),
            "x5t#S256": b64url(hashlib.sha256(der).digest()), "alg": "RSA-OAEP-256"}


def download_begin(hsm, *, certificates: list[dict], quorum: int) -> str:
    """POST the wrapping certificates (JWKs) and quorum: the HSM starts activating and
    answers with its security domain, returned here as opaque text (the recovery material:
    the caller must not log or store it in the database)."""
    from azure.keyvault.securitydomain.models import CertificateInfo

    with translated_errors(hsm=hsm.name):
        poller = security_domain(hsm).begin_download(
            CertificateInfo(certificates=certificates, required=quorum),
            skip_activation_polling=True)
        return poller.result().value


def transfer_key(hsm) -> dict:
    """The HSM's exchange (transfer) key for a recovery, as its JWK (public)."""
    with translated_errors(hsm=hsm.name):
        result = security_domain(hsm).get_transfer_key()
    key = result.get("transfer_key") if hasattr(result, "get") else result.transfer_key
    # The service sends the JWK as a JSON string inside the JSON (the CLI json.loads it);
    # accept an object too.
    if isinstance(key, (str, bytes)):
        key = json.loads(key)
    return dict(key)  # wire names: kid, kty, n, e, x5c, x5t#S256


def upload_begin(hsm, *, security_domain_text: str) -> None:
    """POST a security domain prepared for this HSM's exchange key. The HSM then restores
    it; poll `upload_status` until it ends."""
    from azure.keyvault.securitydomain.models import SecurityDomain

    with translated_errors(hsm=hsm.name):
        security_domain(hsm).begin_upload(SecurityDomain(value=security_domain_text),
                                          skip_activation_polling=True).result()
