"""The custodians' side of the security domain, as the Azure CLI does it (for tests only).

A custodian holds one RSA key pair and a self-signed certificate. The HSM never sees the
private keys: ``certificate_info`` builds the download request the CLI builds
(``az keyvault security-domain download --sd-wrapping-keys *.cer --sd-quorum M``), and
``restore_blob`` does offline what ``az keyvault security-domain restore-blob`` (and
``upload --sd-exchange-key``) does: decrypt ``required`` shares with the custodians'
private keys, recombine the secret (Shamir over GF(257)), decrypt the domain data with
keys derived from it (SP 800-108), re-encrypt it under a fresh key and wrap that key to
the new HSM's transfer (exchange) key. Written from the CLI's algorithm
(``azure/cli/command_modules/keyvault/security_domain``), independently of the
emulator's code, so that the emulator is checked against the format and not against itself;
``tests/hsm_emulator/test_security_domain_cli.py`` runs the CLI itself.

    custodians = make_custodians(3)
    poller = sd_client.begin_download(certificate_info(custodians, required=2))
    security_domain = poller.result().value                      # JSON text
    transfer_key = sd_client_of_new_hsm.get_transfer_key()      # or its ["transfer_key"] text
    blob = restore_blob(security_domain, transfer_key, custodians[:2])
    new_hsm_client.begin_upload({"value": blob}).result()
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

_OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _b64url(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").strip("=").replace("+", "-").replace("/", "_")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "===")


@dataclass
class Custodian:
    """One holder of a wrapping key pair."""

    name: str
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        """``x5t#S256``: base64url SHA-256 of the DER certificate (what the shares are named by)."""
        return _b64url(hashlib.sha256(self.der).digest())

    def jwk(self) -> dict:
        """The certificate as the CLI sends it in a download request."""
        numbers = self.certificate.public_key().public_numbers()
        return {
            "kid": self.certificate.subject.rfc4514_string(), "kty": "RSA", "alg": "RSA-OAEP-256",
            "key_ops": ["verify", "encrypt", "wrapKey"],
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(self.der).decode("ascii")],
            "x5t": _b64url(hashlib.sha1(self.der).digest()),  # noqa: S324 - JWK member
            "x5t#S256": self.fingerprint,
        }

    def write(self, folder: Path, password: Optional[bytes] = None) -> tuple[Path, Path]:
        """``<name>.cer`` and ``<name>.key`` (PEM) side by side, as the CLI expects them."""
        cer, key = folder / f"{self.name}.cer", folder / f"{self.name}.key"
        cer.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        encryption = (serialization.BestAvailableEncryption(password) if password
                      else serialization.NoEncryption())
        key.write_bytes(self.private_key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8, encryption))
        key.chmod(0o600)
        return cer, key


def make_custodians(count: int, prefix: str = "custodian", bits: int = 2048) -> list[Custodian]:
    """``count`` custodians with fresh RSA keys and self-signed certificates."""
    custodians = []
    now = datetime.now(timezone.utc)
    for index in range(count):
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix}{index}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
        custodians.append(Custodian(f"{prefix}{index}", key, cert))
    return custodians


def certificate_info(custodians: Sequence[Custodian], required: int) -> dict:
    """The body of ``begin_download`` (a JSON mapping the SDK accepts as ``certificate_info``)."""
    return {"certificates": [c.jwk() for c in custodians], "required": required}


# -- the CLI's primitives ------------------------------------------------------------

def _kdf(key: bytes, label: str) -> bytes:
    """SP 800-108 (HMAC-SHA512, counter mode), 512 bits, empty context: one HMAC block."""
    data = struct.pack(">I", 1) + label.encode() + b"\x00" + struct.pack(">I", 512)
    return hmac.new(key, data, hashlib.sha512).digest()


def _mac(hk: bytes, header: str, iv: bytes, ciphertext: bytes) -> bytes:
    aad = header.encode("ascii")
    return hmac.new(hk, aad + iv + ciphertext + struct.pack(">Q", len(aad) * 8), hashlib.sha512).digest()[:32]


def _jwe_open(cek: bytes, compact: str, verify: bool = True) -> bytes:
    header, _, iv, ciphertext, tag = compact.split(".")
    iv_b, ct_b = _unb64url(iv), _unb64url(ciphertext)
    if verify and not hmac.compare_digest(_unb64url(tag), _mac(cek[:32], header, iv_b, ct_b)):
        raise ValueError("JWE tag mismatch")
    decryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv_b)).decryptor()
    plaintext = decryptor.update(ct_b) + decryptor.finalize()
    if not verify:
        return plaintext  # what a wrong key yields: garbage, not unpadded
    unpadder = sym_padding.PKCS7(128).unpadder()
    return unpadder.update(plaintext) + unpadder.finalize()


def _jwe_seal(cek: bytes, plaintext: bytes, header: dict, encrypted_key: bytes = b"") -> str:
    encoded = _b64url(json.dumps(header).replace('": ', '":').replace('", ', '",').encode("ascii"))
    iv = os.urandom(16)
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(cek[32:]), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    return ".".join((encoded, _b64url(encrypted_key) if encrypted_key else "", _b64url(iv), _b64url(ciphertext),
                     _b64url(_mac(cek[:32], encoded, iv, ciphertext))))


def _gf_inverse(value: int) -> int:
    return pow(value, 255, 257)


def _combine(share_words: list[list[int]], required: int) -> bytes:
    """Lagrange interpolation at 0 over GF(257); a share word is ``x << 9 | y``."""
    points = share_words[:required]
    secret = bytearray()
    for j in range(len(points[0])):
        total = 0
        for i, shares_i in enumerate(points):
            xi, yi = shares_i[j] >> 9, shares_i[j] & 0x1FF
            numerator = denominator = 1
            for k, shares_k in enumerate(points):
                if k != i:
                    xk = shares_k[j] >> 9
                    numerator = numerator * xk % 257
                    denominator = denominator * (xk - xi) % 257
            total = (total + yi * numerator * _gf_inverse(denominator)) % 257
        secret.append(total & 0xFF)
    return bytes(secret)


def _exchange_certificate(transfer_key: Any) -> x509.Certificate:
    """The transfer key as the SDK returns it (model, JSON text, JWK dict) or a PEM certificate."""
    if isinstance(transfer_key, x509.Certificate):
        return transfer_key
    if isinstance(transfer_key, (bytes, str)) and "BEGIN CERTIFICATE" in str(transfer_key):
        return x509.load_pem_x509_certificate(transfer_key.encode() if isinstance(transfer_key, str) else transfer_key)
    if hasattr(transfer_key, "get") and "transfer_key" in transfer_key:  # TransferKey model or body
        transfer_key = transfer_key["transfer_key"]
    jwk = json.loads(transfer_key) if isinstance(transfer_key, str) else dict(transfer_key)
    return x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))


def restore_blob(security_domain: Union[str, dict], transfer_key: Any, custodians: Sequence[Custodian],
                 insufficient: bool = False) -> str:
    """The upload blob for the HSM whose ``transfer_key`` is given, from ``custodians``' keys.

    Raises ValueError('Insufficient shares available.') as the CLI does when fewer than
    the quorum of matching keys are given. ``insufficient=True`` makes the blob anyway
    from one share too few (what a broken tool would send) so the HSM's refusal can be tested.
    """
    document = json.loads(security_domain) if isinstance(security_domain, str) else security_domain
    shared, enc_data = document["SharedKeys"], document["EncData"]
    required = shared["required"]
    wanted = required - 1 if insufficient else required
    words: list[list[int]] = []
    for custodian in custodians:
        for item in shared["enc_shares"]:
            if item["x5t_256"] == custodian.fingerprint and len(words) < wanted:
                encrypted_key = _unb64url(item["enc_key"].split(".")[1])
                share = _jwe_open(custodian.private_key.decrypt(encrypted_key, _OAEP_256), item["enc_key"])
                words.append(list(struct.unpack(f"<{len(share) // 2}H", share)))
    if len(words) < wanted:
        raise ValueError("Insufficient shares available.")
    master = _combine(words, wanted)
    plaintexts = [(_jwe_open(_kdf(master, item["tag"]), item["compact_jwe"], verify=not insufficient), item["tag"])
                  for item in enc_data["data"]]
    new_master = os.urandom(32)
    data = [{"compact_jwe": _jwe_seal(_kdf(new_master, tag), plaintext,
                                      {"alg": "dir", "enc": "A256CBC-HS512", "kid": tag}), "tag": tag}
            for plaintext, tag in plaintexts]
    exchange = _exchange_certificate(transfer_key)
    cek = os.urandom(64)
    wrapped = _jwe_seal(cek, new_master, {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": "not used"},
                        exchange.public_key().encrypt(cek, _OAEP_256))
    thumbprint = _b64url(hashlib.sha256(exchange.public_bytes(serialization.Encoding.DER)).digest())
    return json.dumps({"EncData": {"data": data, "kdf": "sp108_kdf"},
                       "WrappedKey": {"enc_key": wrapped, "x5t_256": thumbprint}})
