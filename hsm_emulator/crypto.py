"""Key material and the cryptographic operations of Managed HSM keys, on ``cryptography``.

``KeyMaterial`` holds a loaded private key (RSA, EC) or raw AES bytes, created once and
reused for every operation. Its public JWK members are computed once too. Private parts
(d, p, q, k, ...) never leave this module except sealed for storage or for a backup blob.

Operations follow the service's wire contract: values are raw bytes (callers do the
base64url), sign/verify take a precomputed digest whose length must match the algorithm,
ECDSA signatures are raw ``r || s``, PSS salt length equals the digest length, A*GCM
encrypt generates a 12-byte IV and returns a 16-byte tag, A*CBC zero-pads to the block
size (the recorded quirk) and A*CBCPAD uses PKCS#7. Every refusal is an ``HsmError``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Optional, Union

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap,
    aes_key_wrap_with_padding,
)

from .errors import HsmError, bad_parameter

RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
    "P-256K": ec.SECP256K1(),
}
_CURVE_BY_OID = {type(curve).name: name for name, curve in CURVES.items()}
_COORD_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66, "P-256K": 32}

_HASHES = {256: hashes.SHA256, 384: hashes.SHA384, 512: hashes.SHA512}
RSA_SIGN_ALGS = {f"{p}{bits}": (p, bits) for p in ("RS", "PS") for bits in (256, 384, 512)}
EC_SIGN_ALGS = {"ES256": ("P-256", 256), "ES256K": ("P-256K", 256), "ES384": ("P-384", 384), "ES512": ("P-521", 512)}
RSA_ENC_ALGS = ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
AES_ENC_MODES = ("GCM", "CBC", "CBCPAD")
AES_WRAP_ALGS = {"A128KW": 128, "A192KW": 192, "A256KW": 256}
CKM_WRAP_ALGS = ("CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD")


def b64e(data: bytes) -> str:
    """base64url without padding, the encoding of every binary field on the wire."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str, field: str = "value") -> bytes:
    """Decode base64url (padding optional, standard alphabet tolerated) or raise 400."""
    if not isinstance(text, str):
        raise bad_parameter(f"The parameter '{field}' must be a base64url string.")
    try:
        cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (ValueError, TypeError) as exc:
        raise bad_parameter(f"The parameter '{field}' is not valid base64url.") from exc


def int_b64(value: int) -> str:
    """An unsigned big-endian integer as base64url (JWK ``n``, ``e``, ...)."""
    return b64e(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _jwk_int(jwk: dict, member: str) -> int:
    if member not in jwk:
        raise bad_parameter(f"The JSON web key is missing '{member}'.")
    return int.from_bytes(b64d(jwk[member], member), "big")


@dataclass
class KeyMaterial:
    """One key version's cryptographic material, loaded once and reused.

    ``family`` is ``RSA``, ``EC`` or ``oct``; ``private`` the ``cryptography`` private
    key, or the AES key bytes for ``oct``.
    """

    family: str
    private: Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, bytes]
    size: int
    crv: Optional[str] = None
    public_jwk: Optional[dict] = None

    def __post_init__(self) -> None:
        if self.public_jwk is None:
            self.public_jwk = self._public_members()

    def _public_members(self) -> dict:
        if self.family == "RSA":
            numbers = self.private.public_key().public_numbers()
            return {"n": int_b64(numbers.n), "e": int_b64(numbers.e)}
        if self.family == "EC":
            numbers = self.private.public_key().public_numbers()
            width = _COORD_BYTES[self.crv]
            return {"crv": self.crv, "x": b64e(numbers.x.to_bytes(width, "big")), "y": b64e(numbers.y.to_bytes(width, "big"))}
        return {}

    @property
    def public_exponent(self) -> Optional[int]:
        """RSA public exponent, else None."""
        return self.private.public_key().public_numbers().e if self.family == "RSA" else None

    def to_bytes(self) -> bytes:
        """Serialized private material (PKCS#8 DER, or raw AES bytes) for sealing."""
        if self.family == "oct":
            return self.private
        return self.private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_bytes(cls, family: str, data: bytes) -> "KeyMaterial":
        """Inverse of ``to_bytes``.

        Only for material this emulator serialized itself and authenticated since (sealed
        in the store, or in a key or full backup under the security domain's keys): it was
        validated when generated or imported, so the RSA consistency check, which costs
        tens of milliseconds per key (minutes for a full restore of thousands of RSA keys),
        is skipped.
        """
        if family == "oct":
            return cls("oct", data, len(data) * 8)
        key = serialization.load_der_private_key(data, None, unsafe_skip_rsa_key_validation=True)
        if family == "RSA":
            return cls("RSA", key, key.key_size)
        crv = _CURVE_BY_OID[key.curve.name]
        return cls("EC", key, key.curve.key_size, crv)


def generate(family: str, size: Optional[int], exponent: Optional[int], crv: Optional[str]) -> KeyMaterial:
    """New key material; parameters must already be validated. CPU-heavy for RSA."""
    if family == "RSA":
        exponent = exponent or 65537
        if exponent in (3, 65537):
            return KeyMaterial("RSA", rsa.generate_private_key(exponent, size), size)
        return KeyMaterial("RSA", _rsa_with_exponent(exponent, size), size)
    if family == "EC":
        return KeyMaterial("EC", ec.generate_private_key(CURVES[crv]), CURVES[crv].key_size, crv)
    return KeyMaterial("oct", os.urandom(size // 8), size)


def import_jwk(family: str, jwk: dict) -> KeyMaterial:
    """Key material from a JWK with its private members, or 400 BadParameter."""
    try:
        if family == "RSA":
            n, e, d = _jwk_int(jwk, "n"), _jwk_int(jwk, "e"), _jwk_int(jwk, "d")
            p, q = _jwk_int(jwk, "p"), _jwk_int(jwk, "q")
            dp = _jwk_int(jwk, "dp") if "dp" in jwk else d % (p - 1)
            dq = _jwk_int(jwk, "dq") if "dq" in jwk else d % (q - 1)
            qi = _jwk_int(jwk, "qi") if "qi" in jwk else pow(q, -1, p)
            key = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
            if key.key_size not in RSA_SIZES:
                raise bad_parameter(f"RSA key size {key.key_size} is not supported; use 2048, 3072 or 4096.")
            return KeyMaterial("RSA", key, key.key_size)
        if family == "EC":
            crv = jwk.get("crv")
            if crv not in CURVES:
                raise bad_parameter(f"The curve '{crv}' is not supported; use P-256, P-256K, P-384 or P-521.")
            key = ec.derive_private_key(_jwk_int(jwk, "d"), CURVES[crv])
            return KeyMaterial("EC", key, CURVES[crv].key_size, crv)
        raw = b64d(jwk.get("k", ""), "k")
        if len(raw) * 8 not in OCT_SIZES:
            raise bad_parameter(f"AES key size {len(raw) * 8} is not supported; use 128, 192 or 256.")
        return KeyMaterial("oct", raw, len(raw) * 8)
    except HsmError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise bad_parameter(f"The JSON web key is not a valid {family} private key.") from exc


def import_unwrapped(family: str, plaintext: bytes, crv: Optional[str] = None) -> KeyMaterial:
    """Key material from an unwrapped BYOK target key, checked against the requested type.

    RSA and EC arrive as PKCS#8 DER (the BYOK specification; traditional PKCS#1/SEC1 DER
    is tolerated), oct as the raw key bytes. 400 BadParameter if the bytes are not a key
    of ``family`` with a size or curve the HSM supports, or the curve differs from ``crv``.
    """
    if family == "oct":
        if len(plaintext) * 8 not in OCT_SIZES:
            raise bad_parameter(f"The imported key is not a valid oct-HSM key: AES key size {len(plaintext) * 8} "
                                "is not supported; use 128, 192 or 256.")
        return KeyMaterial("oct", plaintext, len(plaintext) * 8)
    try:
        key = serialization.load_der_private_key(plaintext, None)
    except (ValueError, TypeError) as exc:
        raise bad_parameter(f"The imported key is not a valid {family}-HSM key: the unwrapped key material is "
                            "not a DER-encoded private key.") from exc
    if family == "RSA":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise bad_parameter("The imported key type does not match the requested key type RSA-HSM.")
        if key.key_size not in RSA_SIZES:
            raise bad_parameter(f"RSA key size {key.key_size} is not supported; use 2048, 3072 or 4096.")
        return KeyMaterial("RSA", key, key.key_size)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise bad_parameter("The imported key type does not match the requested key type EC-HSM.")
    name = _CURVE_BY_OID.get(key.curve.name)
    if name is None:
        raise bad_parameter(f"The curve '{key.curve.name}' is not supported; use P-256, P-256K, P-384 or P-521.")
    if crv is not None and crv != name:
        raise bad_parameter(f"The imported key's curve {name} does not match the requested curve '{crv}'.")
    return KeyMaterial("EC", key, key.curve.key_size, name)


def _rsa_with_exponent(exponent: int, bits: int) -> rsa.RSAPrivateKey:
    """RSA key with an exponent OpenSSL's generator refuses (the service accepts e.g. 17)."""
    while True:
        p = _random_prime(bits // 2, exponent)
        q = _random_prime(bits - bits // 2, exponent)
        n = p * q
        if p == q or n.bit_length() != bits:
            continue
        d = pow(exponent, -1, (p - 1) * (q - 1) // _gcd(p - 1, q - 1))
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(exponent, n)
        )
        return numbers.private_key()


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


def _random_prime(bits: int, exponent: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if any(candidate % p == 0 for p in _SMALL_PRIMES) or _gcd(candidate - 1, exponent) != 1:
            continue
        if _probably_prime(candidate):
            return candidate


def _probably_prime(n: int, rounds: int = 40) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


# ---------------------------------------------------------------------------
# operations

def _oaep(alg: str) -> padding.AsymmetricPadding:
    if alg == "RSA-OAEP":
        return padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    if alg == "RSA-OAEP-256":
        return padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    return padding.PKCS1v15()


def _unsupported(alg: str, material: KeyMaterial) -> HsmError:
    return bad_parameter(f"Algorithm '{alg}' is not supported for this {material.family} key.")


def _aes_mode(alg: str, material: KeyMaterial) -> str:
    """The AES mode of an A<bits><MODE> algorithm, checking the bits match the key."""
    if material.family != "oct" or len(alg) < 5 or not alg.startswith("A") or not alg[1:4].isdigit():
        raise _unsupported(alg, material)
    mode = alg[4:]
    if mode not in AES_ENC_MODES:
        raise _unsupported(alg, material)
    if int(alg[1:4]) != material.size:
        raise bad_parameter(f"Algorithm '{alg}' requires a {alg[1:4]}-bit key; this key has {material.size} bits.")
    return mode


def encrypt(material: KeyMaterial, alg: str, plaintext: bytes, iv: Optional[bytes], aad: Optional[bytes]) -> dict:
    """Encrypt; returns the result members (``value`` and, for AES, ``iv``/``tag``/``aad``)."""
    if material.family == "RSA":
        if alg not in RSA_ENC_ALGS:
            raise _unsupported(alg, material)
        try:
            return {"value": material.private.public_key().encrypt(plaintext, _oaep(alg))}
        except ValueError as exc:
            raise bad_parameter("The plaintext is too long for this key and algorithm.") from exc
    mode = _aes_mode(alg, material)
    if mode == "GCM":
        nonce = os.urandom(12)
        sealed = AESGCM(material.private).encrypt(nonce, plaintext, aad)
        result = {"value": sealed[:-16], "iv": nonce, "tag": sealed[-16:]}
        if aad is not None:
            result["aad"] = aad
        return result
    iv = iv if iv is not None else os.urandom(16)
    if len(iv) != 16:
        raise bad_parameter("The parameter 'iv' must be 16 bytes for AES-CBC.")
    if mode == "CBCPAD":
        padder = sym_padding.PKCS7(128).padder()
        data = padder.update(plaintext) + padder.finalize()
    else:
        # The service zero-pads A*CBC input that is not block aligned instead of refusing it.
        data = plaintext + b"\0" * (-len(plaintext) % 16)
    encryptor = Cipher(algorithms.AES(material.private), modes.CBC(iv)).encryptor()
    return {"value": encryptor.update(data) + encryptor.finalize(), "iv": iv}


def decrypt(
    material: KeyMaterial, alg: str, ciphertext: bytes, iv: Optional[bytes], aad: Optional[bytes], tag: Optional[bytes]
) -> bytes:
    """Decrypt; authentication or padding failures are 400 BadParameter."""
    if material.family == "RSA":
        if alg not in RSA_ENC_ALGS:
            raise _unsupported(alg, material)
        try:
            return material.private.decrypt(ciphertext, _oaep(alg))
        except ValueError as exc:
            raise bad_parameter("Decryption failed: the ciphertext is not valid for this key.") from exc
    mode = _aes_mode(alg, material)
    if iv is None:
        raise bad_parameter(f"The parameter 'iv' is required for {alg}.")
    if mode == "GCM":
        if tag is None:
            raise bad_parameter(f"The parameter 'tag' is required for {alg}.")
        try:
            return AESGCM(material.private).decrypt(iv, ciphertext + tag, aad)
        except (InvalidTag, ValueError) as exc:
            raise bad_parameter("Decryption failed: authentication tag mismatch.") from exc
    if len(iv) != 16 or len(ciphertext) % 16:
        raise bad_parameter("The ciphertext or iv has an invalid length for AES-CBC.")
    decryptor = Cipher(algorithms.AES(material.private), modes.CBC(iv)).decryptor()
    data = decryptor.update(ciphertext) + decryptor.finalize()
    if mode == "CBC":
        return data
    try:
        unpadder = sym_padding.PKCS7(128).unpadder()
        return unpadder.update(data) + unpadder.finalize()
    except ValueError as exc:
        raise bad_parameter("Decryption failed: invalid padding.") from exc


def _check_wrap_alg(material: KeyMaterial, alg: str) -> None:
    if material.family == "RSA":
        if alg not in RSA_ENC_ALGS:
            raise _unsupported(alg, material)
        return
    if material.family != "oct" or (alg not in AES_WRAP_ALGS and alg not in CKM_WRAP_ALGS):
        raise _unsupported(alg, material)
    if alg in AES_WRAP_ALGS and AES_WRAP_ALGS[alg] != material.size:
        raise bad_parameter(f"Algorithm '{alg}' requires a {AES_WRAP_ALGS[alg]}-bit key; this key has {material.size} bits.")


def wrap(material: KeyMaterial, alg: str, key: bytes) -> bytes:
    """Wrap ``key`` (RSA encryption, RFC 3394 AES-KW, or RFC 5649 with CKM_AES_KEY_WRAP_PAD)."""
    _check_wrap_alg(material, alg)
    if material.family == "RSA":
        return encrypt(material, alg, key, None, None)["value"]
    try:
        if alg == "CKM_AES_KEY_WRAP_PAD":
            return aes_key_wrap_with_padding(material.private, key)
        return aes_key_wrap(material.private, key)
    except ValueError as exc:
        raise bad_parameter("The key to wrap must be at least 16 bytes and a multiple of 8 bytes.") from exc


def unwrap(material: KeyMaterial, alg: str, wrapped: bytes) -> bytes:
    """Inverse of ``wrap``; integrity failures are 400 BadParameter."""
    _check_wrap_alg(material, alg)
    if material.family == "RSA":
        return decrypt(material, alg, wrapped, None, None, None)
    try:
        if alg == "CKM_AES_KEY_WRAP_PAD":
            return aes_key_unwrap_with_padding(material.private, wrapped)
        return aes_key_unwrap(material.private, wrapped)
    except (InvalidUnwrap, ValueError) as exc:
        raise bad_parameter("Unwrap failed: the wrapped key is not valid for this key.") from exc


def _sign_params(material: KeyMaterial, alg: str, digest: bytes):
    if material.family == "RSA" and alg in RSA_SIGN_ALGS:
        scheme, bits = RSA_SIGN_ALGS[alg]
    elif material.family == "EC" and alg in EC_SIGN_ALGS:
        crv, bits = EC_SIGN_ALGS[alg]
        if crv != material.crv:
            raise bad_parameter(f"Algorithm '{alg}' does not match the key's curve {material.crv}.")
        scheme = "ES"
    else:
        raise _unsupported(alg, material)
    if len(digest) != bits // 8:
        raise bad_parameter(f"Invalid digest length {len(digest)} for {alg}; expected {bits // 8} bytes.")
    prehashed = Prehashed(_HASHES[bits]())
    if scheme == "RS":
        return prehashed, padding.PKCS1v15()
    if scheme == "PS":
        return prehashed, padding.PSS(padding.MGF1(_HASHES[bits]()), bits // 8)
    return prehashed, None


def sign(material: KeyMaterial, alg: str, digest: bytes) -> bytes:
    """Signature over a precomputed digest; ECDSA output is raw r||s."""
    prehashed, pad = _sign_params(material, alg, digest)
    if material.family == "RSA":
        return material.private.sign(digest, pad, prehashed)
    r, s = decode_dss_signature(material.private.sign(digest, ec.ECDSA(prehashed)))
    width = _COORD_BYTES[material.crv]
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def verify(material: KeyMaterial, alg: str, digest: bytes, signature: bytes) -> bool:
    """True if ``signature`` is valid for ``digest``; a malformed signature is False."""
    prehashed, pad = _sign_params(material, alg, digest)
    public = material.private.public_key()
    try:
        if material.family == "RSA":
            public.verify(signature, digest, pad, prehashed)
        else:
            width = _COORD_BYTES[material.crv]
            if len(signature) != 2 * width:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:width], "big"), int.from_bytes(signature[width:], "big"))
            public.verify(der, digest, ec.ECDSA(prehashed))
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------------------
# sealed blobs for single-key backups

_JWE_HEADER = b64e(b'{"alg":"dir","enc":"A256CBC-HS512","kid":"backup-protection-key"}')


def jwe_seal(key: bytes, plaintext: bytes) -> str:
    """Compact JWE (dir, A256CBC-HS512, RFC 7518 5.2.5) of ``plaintext`` under a 64-byte key."""
    mac_key, enc_key = key[:32], key[32:]
    iv = os.urandom(16)
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    tag = _jwe_tag(mac_key, iv, ciphertext)
    return ".".join((_JWE_HEADER, "", b64e(iv), b64e(ciphertext), b64e(tag)))


def jwe_open(key: bytes, token: str) -> bytes:
    """Inverse of ``jwe_seal``; raises ValueError if the blob is foreign or tampered."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != _JWE_HEADER or parts[1]:
        raise ValueError("not a backup blob")
    iv, ciphertext, tag = (base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in parts[2:])
    if not hmac.compare_digest(tag, _jwe_tag(key[:32], iv, ciphertext)):
        raise ValueError("backup blob integrity check failed")
    decryptor = Cipher(algorithms.AES(key[32:]), modes.CBC(iv)).decryptor()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()


def _jwe_tag(mac_key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    aad = _JWE_HEADER.encode("ascii")
    al = (len(aad) * 8).to_bytes(8, "big")
    return hmac.new(mac_key, aad + iv + ciphertext + al, hashlib.sha512).digest()[:32]
