"""The security domain of one HSM: activation by download, recovery by transfer key + upload.

Routes (``SecurityDomainClient`` and ``az keyvault security-domain``; Administrator only):

- ``POST /securitydomain/download`` ``{"certificates": [JWK with x5c] x 3..10, "required": M}``
  on an HSM that is not activated: 202 ``{"value": "<security domain JSON text>"}`` with
  ``azure-asyncoperation: .../securitydomain/download/pending``; activation then completes
  ``ACTIVATION_SECONDS`` later (the status reads ``InProgress`` until then, ``Success`` after).
- ``GET /securitydomain/upload``: the transfer (exchange) key of an HSM awaiting recovery,
  ``{"key_format": "jwk", "transfer_key": "<JWK as JSON text>"}``. ``transfer_key`` is a
  JSON *string* as the service sends it: the Azure CLI does ``json.loads(ret['transfer_key'])``
  and the SDK's live tests ``json.loads(str(...transfer_key))``. One RSA-2048 key with a
  self-signed certificate (``x5c``) per recovery, kept until an upload succeeds.
- ``POST /securitydomain/upload`` ``{"value": "<restore blob JSON text>"}``: 202
  ``{"status": "InProgress", ...}``; the HSM takes the source's security domain and is
  activated ``ACTIVATION_SECONDS`` later, or the status ends ``Failed`` with the reason.
- ``GET /securitydomain/download/pending`` and ``/upload/pending``: ``{"status":
  "InProgress" | "Success" | "Failed" | "NotStarted", "status_details": ...}``.

The downloaded document is the service's format, the one the CLI's ``restore-blob`` and
``upload`` read: ``EncData`` holds the domain (id and master key) as a ``dir`` JWE
(A256CBC-HS512) under ``SP800-108(S, tag)``; ``SharedKeys`` holds a random 32-byte
secret ``S`` split with Shamir's scheme over GF(257) into one share per certificate
(quorum ``required``), each share an RSA-OAEP-256 JWE to that certificate's public key
and named by its ``x5t#S256``. Custodians holding ``required`` private keys recover ``S``,
decrypt ``EncData`` and re-encrypt it under a fresh key wrapped to this HSM's transfer key
(``WrappedKey``); nothing else can. ``tests/support/sd_custodian.py`` prepares that blob
the way the CLI does.

Until it is activated, an HSM refuses every data-plane route but these with 403
``Forbidden`` / inner ``HsmNotActivated`` (the service's code is unverified).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import struct
import time
from concurrent.futures import Executor
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from .errors import HsmError, activity_id, bad_parameter
from .hsm import HsmProperties, SecurityDomain
from .routing import Call, Reply, Route
from .state import Sealer, Store

ACTIVATION_SECONDS = 1.0
RETRY_AFTER = "1"
MIN_CERTIFICATES, MAX_CERTIFICATES = 3, 10
MIN_QUORUM = 2
DOMAIN_TAG = "mhsm_emulator_domain"
DOMAIN_FORMAT = "hsm-emulator/security-domain/1"
NOT_ACTIVATED_INNER = "HsmNotActivated"

_PRIME = 257  # Shamir over GF(257): each secret byte is one point, each share one uint16 per byte.


# ---------------------------------------------------------------------------
# primitives, as the service and the Azure CLI (security_domain/*.py) use them

def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Inverse of ``b64url`` (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sp800_108(key: bytes, label: str, context: str = "", bits: int = 512) -> bytes:
    """SP 800-108 counter-mode KDF with HMAC-SHA512 (one block covers the 512 bits used)."""
    suffix = label.encode() + b"\x00" + context.encode() + struct.pack(">I", bits)
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += hmac.new(key, struct.pack(">I", counter) + suffix, hashlib.sha512).digest()
        counter += 1
    return out[: bits // 8]


def _mac(mac_key: bytes, encoded_header: str, iv: bytes, ciphertext: bytes) -> bytes:
    aad = encoded_header.encode("ascii")
    return hmac.new(mac_key, aad + iv + ciphertext + struct.pack(">Q", len(aad) * 8), hashlib.sha512).digest()[:32]


def jwe_encrypt(cek: bytes, plaintext: bytes, header: dict, encrypted_key: bytes = b"") -> str:
    """Compact JWE with A256CBC-HS512 content encryption under the 64-byte ``cek``."""
    encoded_header = b64url(json.dumps(header, separators=(",", ":")).encode())
    iv = os.urandom(16)
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    tag = _mac(cek[:32], encoded_header, iv, ciphertext)
    return ".".join((encoded_header, b64url(encrypted_key), b64url(iv), b64url(ciphertext), b64url(tag)))


def jwe_parts(compact: str) -> tuple[dict, bytes, bytes, bytes, bytes, str]:
    """(header, encrypted key, iv, ciphertext, tag, encoded header); ValueError if malformed."""
    if not isinstance(compact, str):
        raise ValueError("a JWE must be a string")
    parts = compact.split(".")
    if len(parts) != 5:
        raise ValueError("a compact JWE has five parts")
    header = json.loads(unb64url(parts[0]))
    if not isinstance(header, dict):
        raise ValueError("the JWE header is not an object")
    return (header, *(unb64url(p) for p in parts[1:]), parts[0])  # type: ignore[return-value]


def jwe_decrypt(cek: bytes, compact: str) -> bytes:
    """Plaintext of an A256CBC-HS512 JWE; ValueError if the tag does not verify."""
    header, _, iv, ciphertext, tag, encoded = jwe_parts(compact)
    if header.get("enc") != "A256CBC-HS512" or len(cek) != 64:
        raise ValueError("unsupported content encryption")
    if not hmac.compare_digest(tag, _mac(cek[:32], encoded, iv, ciphertext)):
        raise ValueError("the JWE authentication tag does not verify")
    decryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv)).decryptor()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()


OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def jwe_to_public_key(public_key: rsa.RSAPublicKey, plaintext: bytes, kid: str) -> str:
    """RSA-OAEP-256 + A256CBC-HS512 JWE of ``plaintext`` for the holder of the private key."""
    cek = os.urandom(64)
    return jwe_encrypt(cek, plaintext, {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": kid},
                       public_key.encrypt(cek, OAEP_256))


def split_secret(secret: bytes, shares: int, required: int) -> list[bytes]:
    """Shamir shares of ``secret``, the CLI's wire form: per byte a little-endian uint16 ``x << 9 | y``."""
    words: list[list[int]] = [[] for _ in range(shares)]
    for byte in secret:
        coefficients = [secrets.randbelow(_PRIME) for _ in range(required - 1)] + [byte]
        for x in range(1, shares + 1):
            y = 0
            for coefficient in coefficients:  # Horner; the secret byte is the constant term
                y = (y * x + coefficient) % _PRIME
            words[x - 1].append((x << 9) | y)
    return [struct.pack(f"<{len(w)}H", *w) for w in words]


def x5t_s256(certificate: x509.Certificate) -> str:
    """base64url SHA-256 of the DER certificate, the name a share or a transfer key goes by."""
    return b64url(hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest())


# ---------------------------------------------------------------------------
# the HSM side

def _status(status: str, details: Optional[str]) -> dict:
    return {"status": status, "status_details": details}


class HsmSecurityDomain:
    """Activation state, security domain and recovery of one HSM, persisted in the store."""

    def __init__(self, props: HsmProperties, default_domain: SecurityDomain, store: Store, sealer: Sealer,
                 set_domain: Callable[[SecurityDomain], None], executor: Optional[Executor] = None,
                 activated: bool = True) -> None:
        self.props = props
        self._default = default_domain
        self._store = store
        self._sealer = sealer
        self._set_domain = set_domain
        self._executor = executor
        self._scope = f"hsm:{props.name}"
        self.activated = activated
        self.domain: SecurityDomain = default_domain if activated else _new_domain()
        self.download: Optional[dict] = None   # {"status", "status_details", "done_at", "outcome"?}
        self.upload: Optional[dict] = None
        self._pending_domain: Optional[SecurityDomain] = None
        self._transfer_key: Optional[rsa.RSAPrivateKey] = None
        self._transfer_cert: Optional[x509.Certificate] = None
        self._transfer_lock = asyncio.Lock()
        self._load()
        self._set_domain(self.domain)

    # -- persistence ----------------------------------------------------------------

    def _load(self) -> None:
        doc = self._store.get(self._scope, "meta", "security_domain")
        if not doc:
            return
        self.activated = doc["activated"]
        self.domain = self._load_domain(doc["domain_id"]) or self.domain
        self.download, self.upload = doc.get("download"), doc.get("upload")
        for op in (self.download, self.upload):
            if op and op["status"] == "InProgress" and op["done_at"] == float("inf"):  # stopped mid-request
                op.update(_status("Failed", "The operation was interrupted; start it again."))
        if doc.get("pending_domain_id"):
            self._pending_domain = self._load_domain(doc["pending_domain_id"])
        if doc.get("transfer_key"):
            sealed = base64.b64decode(doc["transfer_key"]["key"])
            der = self._sealer.unseal(sealed, f"sd-transfer:{self.props.name}")
            key = serialization.load_der_private_key(der, password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            self._transfer_key = key
            self._transfer_cert = x509.load_der_x509_certificate(base64.b64decode(doc["transfer_key"]["cert"]))

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "activated": self.activated, "domain_id": self.domain.id, "download": self.download,
            "upload": self.upload,
            "pending_domain_id": self._pending_domain.id if self._pending_domain else None,
        }
        if self.activated or self._pending_domain:
            self._save_domain(self._pending_domain or self.domain)
            self._save_domain(self.domain)
        if self._transfer_key is not None and self._transfer_cert is not None:
            der = self._transfer_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption())
            doc["transfer_key"] = {
                "key": base64.b64encode(self._sealer.seal(der, f"sd-transfer:{self.props.name}")).decode(),
                "cert": base64.b64encode(self._transfer_cert.public_bytes(serialization.Encoding.DER)).decode(),
            }
        self._store.put(self._scope, "meta", "security_domain", doc)

    def _save_domain(self, domain: SecurityDomain) -> None:
        if domain.id == self._default.id:
            return  # kept under "default" by SecurityDomain.load_or_create
        self._store.put("emulator", "security_domain", domain.id, {
            "id": domain.id,
            "key": base64.b64encode(self._sealer.seal(domain.master_key, f"sd:{domain.id}")).decode(),
        })

    def _load_domain(self, domain_id: Optional[str]) -> Optional[SecurityDomain]:
        if domain_id is None:
            return None
        if domain_id == self._default.id:
            return self._default
        doc = self._store.get("emulator", "security_domain", domain_id)
        if not doc:
            return None
        return SecurityDomain(doc["id"], self._sealer.unseal(base64.b64decode(doc["key"]), f"sd:{doc['id']}"))

    # -- state ----------------------------------------------------------------------

    def settle(self) -> None:
        """Complete a download's or upload's activation once its time has come."""
        for op in (self.download, self.upload):
            if op and op["status"] == "InProgress" and time.time() >= op["done_at"]:
                if op.get("outcome") == "Failed":
                    op["status"], op["status_details"] = "Failed", op.pop("failure")
                else:
                    op["status"], op["status_details"] = "Success", "The HSM is activated."
                    if self._pending_domain is not None:
                        self.domain = self._pending_domain
                        self._pending_domain = None
                    self.activated = True
                    self._transfer_key = self._transfer_cert = None
                    self._set_domain(self.domain)
                op.pop("outcome", None)
                self._save()

    @property
    def busy(self) -> bool:
        """Whether a download or upload is still activating the HSM."""
        self.settle()
        return any(op and op["status"] == "InProgress" for op in (self.download, self.upload))

    def gate(self, path: str) -> None:
        """Refuse a data-plane call on an HSM that is not (yet) activated."""
        if self.activated or path.startswith("/securitydomain/"):
            return
        self.settle()
        if not self.activated:
            raise HsmError(403, "Forbidden",
                           f"The managed HSM '{self.props.name}' is not activated: download its security domain "
                           "(activation) or upload one (recovery) first. "
                           f"(Activity ID: {activity_id()})", inner=NOT_ACTIVATED_INNER)

    def arm_properties(self) -> dict:
        """``properties.securityDomainProperties`` as Resource Manager shows it."""
        self.settle()
        if self.activated:
            return {"activationStatus": "Active", "activationStatusMessage": "Your HSM has been activated."}
        if self.busy:
            return {"activationStatus": "Unknown", "activationStatusMessage": "Activation is in progress."}
        return {"activationStatus": "NotActivated",
                "activationStatusMessage": "Your HSM is provisioned and ready to be activated."}

    def reprovision(self) -> None:
        """Forget the domain, activation and transfer key: a newly provisioned HSM."""
        self.activated = False
        self.domain = _new_domain()
        self.download = self.upload = None
        self._pending_domain = None
        self._transfer_key = self._transfer_cert = None
        self._store.delete(self._scope, "meta", "security_domain")
        self._set_domain(self.domain)

    # -- HTTP -----------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("POST", r"^/securitydomain/download/?$", self._download, "securitydomain/download/action"),
            Route("GET", r"^/securitydomain/download/pending/?$", self._download_status,
                  "securitydomain/download/read", api_version=False),
            Route("GET", r"^/securitydomain/upload/?$", self._transfer_key_route, "securitydomain/transferkey/read"),
            Route("POST", r"^/securitydomain/upload/?$", self._upload, "securitydomain/upload/action"),
            Route("GET", r"^/securitydomain/upload/pending/?$", self._upload_status,
                  "securitydomain/upload/read", api_version=False),
        ]

    def _refuse_if_activated(self, what: str) -> None:
        if self.busy:
            raise HsmError(409, "Conflict", f"A security domain operation is already in progress on this HSM; "
                                            f"wait for it to finish before {what}.")
        if self.activated:
            raise HsmError(409, "Conflict", f"The managed HSM '{self.props.name}' is already activated; {what} is "
                                            "only possible on an HSM that is not activated.",
                           inner="HsmAlreadyActivated")

    async def _offload(self, fn, *args):
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _lro_headers(self, call: Call, operation: str) -> dict[str, str]:
        return {"azure-asyncoperation": f"{call.base_url}/securitydomain/{operation}/pending",
                "Retry-After": RETRY_AFTER}

    async def _download(self, call: Call) -> Reply:
        self._refuse_if_activated("downloading the security domain")
        body = call.json()
        certificates = _certificates(body.get("certificates"))
        required = body.get("required")
        if isinstance(required, bool) or not isinstance(required, int):
            raise bad_parameter("The parameter 'required' (the quorum) must be an integer.")
        if not MIN_QUORUM <= required <= len(certificates):
            raise bad_parameter(f"The quorum 'required' must be from {MIN_QUORUM} to the number of certificates "
                                f"({len(certificates)}); it was {required}.")
        # Claimed before the first await: a concurrent download or upload now meets "in progress".
        self.download = {**_status("InProgress", "Activation of the HSM is in progress."), "done_at": float("inf")}
        domain = self._pending_domain or self.domain
        try:
            document = await self._offload(_security_domain_document, domain, certificates, required)
        except BaseException:
            self.download = None
            raise
        self._pending_domain = domain
        self.download["done_at"] = time.time() + ACTIVATION_SECONDS
        self._save()
        return Reply(202, {"value": document}, self._lro_headers(call, "download"))

    async def _download_status(self, call: Call) -> Reply:
        return self._status_reply(self.download, "download")

    async def _upload_status(self, call: Call) -> Reply:
        return self._status_reply(self.upload, "upload")

    def _status_reply(self, op: Optional[dict], name: str) -> Reply:
        self.settle()
        body = self._status_body(op, name)
        # While in progress, Retry-After keeps the SDK (default interval 30 s) polling every second.
        return Reply(200, body, {"Retry-After": RETRY_AFTER} if body["status"] == "InProgress" else {})

    def _status_body(self, op: Optional[dict], name: str) -> dict:
        if op is not None:
            return _status(op["status"], op["status_details"])
        if self.activated:
            return _status("Success", "The HSM is activated.")
        return _status("NotStarted", f"No security domain {name} has been started; the HSM is not activated.")

    async def _transfer_key_route(self, call: Call) -> Reply:
        self._refuse_if_activated("recovery (getting a transfer key)")
        async with self._transfer_lock:  # concurrent first calls get one key, not one each
            if self._transfer_key is None:
                self._transfer_key, self._transfer_cert = await self._offload(_new_transfer_key, self.props.name)
                self._save()
        assert self._transfer_cert is not None
        public = self._transfer_key.public_key().public_numbers()
        der = self._transfer_cert.public_bytes(serialization.Encoding.DER)
        jwk = {
            "kid": f"{call.base_url}/securitydomain/transferkey/{x5t_s256(self._transfer_cert)[:16]}",
            "kty": "RSA", "key_ops": ["wrapKey", "encrypt"], "alg": "RSA-OAEP-256",
            "n": b64url(public.n.to_bytes((public.n.bit_length() + 7) // 8, "big")),
            "e": b64url(public.e.to_bytes((public.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(der).decode()],
            "x5t": b64url(hashlib.sha1(der).digest()),  # noqa: S324 - the JWK thumbprint member, not security
            "x5t#S256": x5t_s256(self._transfer_cert),
        }
        return Reply(200, {"key_format": "jwk", "transfer_key": json.dumps(jwk, separators=(",", ":"))})

    async def _upload(self, call: Call) -> Reply:
        self._refuse_if_activated("uploading a security domain")
        value = call.json().get("value")
        if self._transfer_key is None or self._transfer_cert is None:
            raise bad_parameter("This HSM has no transfer key: get it first (GET /securitydomain/upload, "
                                "'az keyvault security-domain init-recovery'), then prepare the blob for it.")
        if not isinstance(value, str) or not value:
            raise bad_parameter("The parameter 'value' (the security domain restore blob) is required.")
        try:
            blob = json.loads(value)
            wrapped = blob["WrappedKey"]
            data = blob["EncData"]["data"]
            thumbprint, enc_key = wrapped["x5t_256"], wrapped["enc_key"]
            if not isinstance(data, list) or not data or not isinstance(thumbprint, str):
                raise ValueError("no data")
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_parameter("The security domain restore blob is not valid: it must be the JSON document "
                                "'az keyvault security-domain restore-blob' writes (EncData, WrappedKey).") from exc
        expected = x5t_s256(self._transfer_cert)
        if thumbprint != expected:
            raise bad_parameter(f"The security domain restore blob was prepared for another transfer key "
                                f"(x5t#S256 {thumbprint}); this HSM's transfer key is {expected}. Prepare it again "
                                "with this HSM's exchange key.")
        # Claimed before the first await (see _download).
        upload = self.upload = {**_status("InProgress", "Restoring the security domain."), "done_at": float("inf")}
        try:
            self._pending_domain = await self._offload(_restore_domain, self._transfer_key, enc_key, data)
        except ValueError as exc:
            upload["outcome"] = "Failed"
            upload["failure"] = f"The security domain could not be restored: {exc}"
        upload["done_at"] = time.time() + ACTIVATION_SECONDS
        self._save()
        return Reply(202, _status("InProgress", "Restoring the security domain."), self._lro_headers(call, "upload"))


# ---------------------------------------------------------------------------
# helpers

def _new_domain() -> SecurityDomain:
    import uuid

    return SecurityDomain(str(uuid.uuid4()), os.urandom(32))


def _certificates(value: Any) -> list[x509.Certificate]:
    """The wrapping certificates of a download request, checked as the service does."""
    if not isinstance(value, list):
        raise bad_parameter("The parameter 'certificates' must be a list of JSON web keys with x5c.")
    if not MIN_CERTIFICATES <= len(value) <= MAX_CERTIFICATES:
        raise bad_parameter(f"Between {MIN_CERTIFICATES} and {MAX_CERTIFICATES} certificates are required to "
                            f"download the security domain; {len(value)} were given.")
    certificates, seen = [], set()
    for index, jwk in enumerate(value):
        try:
            der = base64.b64decode(jwk["x5c"][0], validate=True)
            certificate = x509.load_der_x509_certificate(der)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise bad_parameter(f"Certificate {index + 1} has no valid x5c (a base64 DER certificate).") from exc
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
            raise bad_parameter(f"Certificate {index + 1} must hold an RSA public key of at least 2048 bits.")
        thumbprint = x5t_s256(certificate)
        if thumbprint in seen:
            raise bad_parameter(f"Certificate {index + 1} is given twice; each custodian needs their own.")
        seen.add(thumbprint)
        certificates.append(certificate)
    return certificates


def _security_domain_document(domain: SecurityDomain, certificates: list[x509.Certificate], required: int) -> str:
    secret = os.urandom(32)
    plaintext = json.dumps({"format": DOMAIN_FORMAT, "id": domain.id,
                            "key": base64.b64encode(domain.master_key).decode()}).encode()
    datum = jwe_encrypt(sp800_108(secret, DOMAIN_TAG), plaintext,
                        {"alg": "dir", "enc": "A256CBC-HS512", "kid": DOMAIN_TAG})
    shares = split_secret(secret, len(certificates), required)
    enc_shares = []
    for certificate, share in zip(certificates, shares, strict=True):
        thumbprint = x5t_s256(certificate)
        public = certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        enc_shares.append({"enc_key": jwe_to_public_key(public, share, thumbprint), "x5t_256": thumbprint})
    return json.dumps({
        "EncData": {"data": [{"compact_jwe": datum, "tag": DOMAIN_TAG}], "kdf": "sp108_kdf"},
        "SharedKeys": {"enc_shares": enc_shares, "key_algorithm": "shamir_share", "required": required},
        "version": "1.0.0",
    })


def _restore_domain(transfer_key: rsa.RSAPrivateKey, enc_key: str, data: list) -> SecurityDomain:
    """The domain in a restore blob; ValueError (a sentence) when it does not decrypt to one."""
    try:
        header, encrypted_key, *_ = jwe_parts(enc_key)
        if header.get("alg") != "RSA-OAEP-256":
            raise ValueError(f"the wrapped key uses {header.get('alg')!r}, not RSA-OAEP-256")
        cek = transfer_key.decrypt(encrypted_key, OAEP_256)
        master = jwe_decrypt(cek, enc_key)
    except ValueError as exc:
        raise ValueError(f"the wrapped key does not open with this HSM's transfer key ({exc}).") from exc
    for item in data:
        if not isinstance(item, dict) or item.get("tag") != DOMAIN_TAG:
            continue
        try:
            document = json.loads(jwe_decrypt(sp800_108(master, DOMAIN_TAG), item["compact_jwe"]))
            if document.get("format") != DOMAIN_FORMAT:
                raise ValueError("unknown format")
            key = base64.b64decode(document["key"])
            if len(key) != 32:
                raise ValueError("bad key length")
            return SecurityDomain(str(document["id"]), key)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError("the security domain data does not decrypt to a security domain (were the shares "
                             "of at least the quorum of this domain's custodians combined?).") from exc
    raise ValueError(f"the blob holds no '{DOMAIN_TAG}' data.")


def _new_transfer_key(hsm_name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{hsm_name} security domain transfer key")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate
