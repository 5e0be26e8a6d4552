"""Bring Your Own Key: the ``.byok`` key transfer blob, packed and opened.

The format is the one of Microsoft's "Bring your own key specification" (Key Vault /
Managed HSM, section "Key transfer blob"); the Azure CLI's ``az keyvault key import
--byok-file`` reads the ``.byok`` file's bytes unchanged into the JWK member
``key_hsm`` (``JsonWebKey.t`` in azure-keyvault-keys), with ``kty`` = ``<type>-HSM``.

A ``.byok`` file is UTF-8 JSON::

    {"schema_version": "1.0.0",
     "header": {"kid": "<KEK kid, with version>", "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
     "ciphertext": "<base64url>",
     "generator": "<tool name and version; source HSM>"}

``ciphertext`` is CKM_RSA_AES_KEY_WRAP of the target key under the KEK (an ``RSA-HSM``
key whose only key_op is ``import``, in the same HSM):

- an ephemeral AES key (256 bits here) encrypted with the KEK's public key using
  RSA-OAEP with SHA-1 (MGF1-SHA-1, no label): as many bytes as the KEK modulus;
- followed by AES Key Wrap with Padding (RFC 5649) of the target key under that AES key.

The target key's plaintext is PKCS#8 DER for RSA (RFC 3447 key inside RFC 5208) and EC
(RFC 5915 key inside RFC 5208), and the raw key bytes for oct (AES) keys.

``enc`` values ``RSA_AES_KEY_WRAP_256`` / ``RSA_AES_KEY_WRAP_384`` (the service's names
for the same construction with SHA-256 / SHA-384 OAEP, used by key *release*) are
accepted here too; that the real import accepts them is not verified.

``pack_byok`` is the reference packer for tests: other suites may import it to build
blobs for the emulator (or for a real Managed HSM).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any, Union

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding, aes_key_wrap_with_padding

SCHEMA_VERSION = "1.0.0"
DEFAULT_ENC = "CKM_RSA_AES_KEY_WRAP"
# enc -> OAEP hash (also the MGF1 hash) protecting the ephemeral AES key.
ENC_HASHES = {
    "CKM_RSA_AES_KEY_WRAP": hashes.SHA1,
    "RSA_AES_KEY_WRAP_256": hashes.SHA256,
    "RSA_AES_KEY_WRAP_384": hashes.SHA384,
}
GENERATOR = "hsm_emulator.byok.pack_byok 1.0"

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, bytes]


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _oaep(enc: str) -> padding.OAEP:
    algorithm = ENC_HASHES[enc]
    return padding.OAEP(padding.MGF1(algorithm()), algorithm(), None)


def _as_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = _b64d(value)
    return int.from_bytes(value, "big")


def _kek_public_key(kek: Any) -> rsa.RSAPublicKey:
    """An RSA public key from a ``cryptography`` key, a PEM, a KeyVaultKey, a JsonWebKey or a JWK dict."""
    if isinstance(kek, rsa.RSAPublicKey):
        return kek
    if isinstance(kek, rsa.RSAPrivateKey):
        return kek.public_key()
    if isinstance(kek, (bytes, str)) and "BEGIN" in (kek.decode("ascii", "replace") if isinstance(kek, bytes) else kek):
        key = serialization.load_pem_public_key(kek.encode() if isinstance(kek, str) else kek)
        if not isinstance(key, rsa.RSAPublicKey):
            raise TypeError("the KEK must be an RSA key")
        return key
    jwk = getattr(kek, "key", kek)  # azure.keyvault.keys.KeyVaultKey -> its JsonWebKey
    if isinstance(jwk, dict):
        n, e = jwk.get("n"), jwk.get("e")
    else:
        n, e = getattr(jwk, "n", None), getattr(jwk, "e", None)
    if n is None or e is None:
        raise TypeError("the KEK must be an RSA public key (n and e)")
    return rsa.RSAPublicNumbers(_as_int(e), _as_int(n)).public_key()


def target_plaintext(target: PrivateKey) -> bytes:
    """The bytes the spec wraps: PKCS#8 DER for RSA and EC, raw bytes for AES."""
    if isinstance(target, (bytes, bytearray)):
        return bytes(target)
    if isinstance(target, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return target.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    raise TypeError("the target key must be an RSA or EC private key, or AES key bytes")


def rsa_aes_key_wrap(kek_public: rsa.RSAPublicKey, plaintext: bytes, enc: str = DEFAULT_ENC,
                     aes_key: bytes = b"") -> bytes:
    """CKM_RSA_AES_KEY_WRAP: RSA-OAEP(ephemeral AES key) || AES-KWP(ephemeral key, plaintext)."""
    aes_key = aes_key or os.urandom(32)
    return kek_public.encrypt(aes_key, _oaep(enc)) + aes_key_wrap_with_padding(aes_key, plaintext)


def pack_byok(kek_kid: str, kek_public: Any, target_private_key: PrivateKey, *, enc: str = DEFAULT_ENC,
              generator: str = GENERATOR) -> bytes:
    """The bytes of a ``.byok`` file carrying ``target_private_key`` for the KEK ``kek_kid``.

    ``kek_public``: the KEK's public key as returned by ``KeyClient.get_key`` (a
    KeyVaultKey), its ``.key`` (JsonWebKey), a JWK dict, a ``cryptography`` RSA key or a
    PEM. ``target_private_key``: a ``cryptography`` RSA or EC private key, or AES key
    bytes (16, 24 or 32). Pass the result as ``JsonWebKey(kty=..., t=blob)`` to
    ``KeyClient.import_key``.
    """
    if enc not in ENC_HASHES:
        raise ValueError(f"unknown enc {enc!r}; use one of {sorted(ENC_HASHES)}")
    ciphertext = rsa_aes_key_wrap(_kek_public_key(kek_public), target_plaintext(target_private_key), enc)
    document = {
        "schema_version": SCHEMA_VERSION,
        "header": {"kid": kek_kid, "alg": "dir", "enc": enc},
        "ciphertext": _b64e(ciphertext),
        "generator": generator,
    }
    return json.dumps(document, indent=2).encode("utf-8")


# ---------------------------------------------------------------------------
# the HSM's side


class ByokError(ValueError):
    """The transfer blob is malformed or does not open; ``str()`` is the service message."""


@dataclass
class TransferBlob:
    """A parsed ``.byok`` document."""

    kid: str
    enc: str
    ciphertext: bytes


def parse_blob(blob: bytes) -> TransferBlob:
    """Parse the ``.byok`` JSON (the decoded ``key_hsm``), checking its header."""
    try:
        document = json.loads(blob.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ByokError("The key transfer blob (key_hsm) is not a valid BYOK JSON document.") from exc
    if not isinstance(document, dict):
        raise ByokError("The key transfer blob (key_hsm) is not a valid BYOK JSON document.")
    header = document.get("header")
    if not isinstance(header, dict):
        raise ByokError("The key transfer blob has no 'header'.")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ByokError(f"The key transfer blob schema_version '{version}' is not supported; expected "
                        f"'{SCHEMA_VERSION}'.")
    kid, alg, enc = header.get("kid"), header.get("alg"), header.get("enc")
    if not isinstance(kid, str) or not kid:
        raise ByokError("The key transfer blob header has no 'kid' (the key exchange key identifier).")
    if alg != "dir":
        raise ByokError(f"The key transfer blob header 'alg' '{alg}' is not supported; expected 'dir'.")
    if enc not in ENC_HASHES:
        raise ByokError(f"The key transfer blob header 'enc' '{enc}' is not supported; expected "
                        "'CKM_RSA_AES_KEY_WRAP'.")
    ciphertext = document.get("ciphertext")
    try:
        if not isinstance(ciphertext, str) or not ciphertext:
            raise ValueError("missing")
        raw = _b64d(ciphertext)
    except (ValueError, TypeError) as exc:
        raise ByokError("The key transfer blob 'ciphertext' is missing or not base64url.") from exc
    return TransferBlob(kid, enc, raw)


def rsa_aes_key_unwrap(kek_private: rsa.RSAPrivateKey, enc: str, ciphertext: bytes) -> bytes:
    """Inverse of ``rsa_aes_key_wrap``; ByokError if the blob was not made for this KEK or was altered."""
    width = (kek_private.key_size + 7) // 8
    if len(ciphertext) <= width:
        raise ByokError("The key transfer blob ciphertext is too short for the key exchange key.")
    try:
        aes_key = kek_private.decrypt(ciphertext[:width], _oaep(enc))
    except ValueError as exc:
        raise ByokError("The key transfer blob could not be decrypted with the key exchange key.") from exc
    if len(aes_key) not in (16, 24, 32):
        raise ByokError("The key transfer blob's wrapping key is not an AES key.")
    try:
        return aes_key_unwrap_with_padding(aes_key, ciphertext[width:])
    except (InvalidUnwrap, ValueError) as exc:
        raise ByokError("The key transfer blob failed its integrity check (AES key unwrap).") from exc
