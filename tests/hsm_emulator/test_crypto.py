"""Cryptographic operations through CryptographyClient, checked against ``cryptography``."""

import datetime
import hashlib
import os

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

HASHES = {256: (hashlib.sha256, hashes.SHA256), 384: (hashlib.sha384, hashes.SHA384),
          512: (hashlib.sha512, hashes.SHA512)}


@pytest.fixture(scope="module")
def crypto_for(emulator, admin_credential):
    def make(key):
        return CryptographyClient(key, admin_credential, **emulator.client_options())
    return make


@pytest.fixture(scope="module")
def remote_crypto(emulator, access_client, principal_with):
    """Clients for a principal that may use keys but not read them: the SDK's initial GET
    is refused, so every operation goes to the HSM (for oct keys the SDK would otherwise
    run CBCPAD and key wrap locally with a key it made up, as the key has no ``k``)."""
    from azure.keyvault.administration import KeyVaultPermission

    actions = [f"Microsoft.KeyVault/managedHsm/keys/{op}/action"
               for op in ("encrypt", "decrypt", "wrap", "unwrap", "sign", "verify")]
    definition = access_client.set_role_definition(
        "/", role_name="remote crypto", permissions=[KeyVaultPermission(data_actions=actions)])
    credential = emulator.credential(principal_with(definition.name))

    def make(key):
        return CryptographyClient(key.id, credential, **emulator.client_options())
    return make


@pytest.fixture(scope="module")
def rsa_key(key_client):
    return key_client.create_rsa_key("crypto-rsa-2048", size=2048)


def _public_rsa(key) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(int.from_bytes(key.key.e, "big"), int.from_bytes(key.key.n, "big")).public_key()


@pytest.mark.parametrize("alg", ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"])
def test_rsa_encrypt_decrypt_and_wrap_unwrap_interoperate(crypto_for, remote_crypto, rsa_key, alg):
    client = crypto_for(rsa_key)
    plaintext = os.urandom(32)
    local_pad = {"RSA-OAEP": padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),
                 "RSA-OAEP-256": padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
                 "RSA1_5": padding.PKCS1v15()}[alg]
    # Ciphertext made with plain `cryptography` must decrypt on the HSM (the SDK encrypts locally).
    ciphertext = _public_rsa(rsa_key).encrypt(plaintext, local_pad)
    result = client.decrypt(EncryptionAlgorithm(alg), ciphertext)
    assert result.plaintext == plaintext and result.key_id == rsa_key.id and result.algorithm == alg
    wrapped = client.wrap_key(KeyWrapAlgorithm(alg), plaintext)
    assert client.unwrap_key(KeyWrapAlgorithm(alg), wrapped.encrypted_key).key == plaintext
    remote = remote_crypto(rsa_key)
    encrypted = remote.encrypt(EncryptionAlgorithm(alg), plaintext)
    assert encrypted.key_id == rsa_key.id
    assert client.decrypt(EncryptionAlgorithm(alg), encrypted.ciphertext).plaintext == plaintext
    wrapped = remote.wrap_key(KeyWrapAlgorithm(alg), plaintext)
    assert remote.unwrap_key(KeyWrapAlgorithm(alg), wrapped.encrypted_key).key == plaintext


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_rsa_signatures_verify_locally_and_remotely(crypto_for, rsa_key, alg):
    bits = int(alg[2:])
    digest = HASHES[bits][0](b"message").digest()
    client = crypto_for(rsa_key)
    signature = client.sign(SignatureAlgorithm(alg), digest).signature
    pad = padding.PKCS1v15() if alg.startswith("RS") else padding.PSS(padding.MGF1(HASHES[bits][1]()), bits // 8)
    _public_rsa(rsa_key).verify(signature, digest, pad, Prehashed(HASHES[bits][1]()))
    assert client.verify(SignatureAlgorithm(alg), digest, signature).is_valid


@pytest.mark.parametrize("curve, alg", [("P-256", "ES256"), ("P-256K", "ES256K"), ("P-384", "ES384"),
                                        ("P-521", "ES512")])
def test_ecdsa_raw_signatures(key_client, crypto_for, name, curve, alg):
    key = key_client.create_ec_key(name, curve=curve)
    bits = {"ES256": 256, "ES256K": 256, "ES384": 384, "ES512": 512}[alg]
    digest = HASHES[bits][0](b"message").digest()
    signature = crypto_for(key).sign(SignatureAlgorithm(alg), digest).signature
    width = len(key.key.x)
    assert len(signature) == 2 * width
    curve_obj = {"P-256": ec.SECP256R1(), "P-256K": ec.SECP256K1(), "P-384": ec.SECP384R1(),
                 "P-521": ec.SECP521R1()}[curve]
    public = ec.EllipticCurvePublicNumbers(int.from_bytes(key.key.x, "big"), int.from_bytes(key.key.y, "big"),
                                           curve_obj).public_key()
    der = encode_dss_signature(int.from_bytes(signature[:width], "big"), int.from_bytes(signature[width:], "big"))
    public.verify(der, digest, ec.ECDSA(Prehashed(HASHES[bits][1]())))
    assert crypto_for(key).verify(SignatureAlgorithm(alg), digest, signature).is_valid


def test_remote_verify_reports_bad_signature_as_false(key_client, remote_crypto, name):
    key = key_client.create_rsa_key(name)
    digest = hashlib.sha256(b"x").digest()
    client = remote_crypto(key)
    signature = client.sign(SignatureAlgorithm.rs256, digest).signature
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not client.verify(SignatureAlgorithm.rs256, digest, tampered).is_valid
    assert client.verify(SignatureAlgorithm.rs256, digest, signature).is_valid


def test_rsa_3072_private_operations_run_off_the_event_loop(key_client, crypto_for, name):
    key = key_client.create_rsa_key(name, size=3072)
    client = crypto_for(key)
    digest = hashlib.sha384(b"big").digest()
    signature = client.sign(SignatureAlgorithm.ps384, digest).signature
    assert len(signature) == 384 and client.verify(SignatureAlgorithm.ps384, digest, signature).is_valid
    wrapped = client.wrap_key(KeyWrapAlgorithm.rsa_oaep, b"k" * 16)
    assert client.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped.encrypted_key).key == b"k" * 16


def test_wrong_digest_length_is_bad_parameter(crypto_for, rsa_key):
    with pytest.raises(HttpResponseError) as info:
        crypto_for(rsa_key).sign(SignatureAlgorithm.rs256, b"short")
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"


def test_algorithm_for_another_curve_is_bad_parameter(key_client, crypto_for, name):
    key = key_client.create_ec_key(name, curve="P-256")
    with pytest.raises(HttpResponseError) as info:
        crypto_for(key).sign(SignatureAlgorithm.es384, hashlib.sha384(b"x").digest())
    assert info.value.status_code == 400


@pytest.fixture(scope="module")
def aes_keys(key_client):
    return {size: key_client.create_oct_key(f"crypto-aes-{size}", size=size, hardware_protected=True)
            for size in (128, 192, 256)}


@pytest.mark.parametrize("size", [128, 192, 256])
def test_aes_gcm_generates_iv_and_tag_and_echoes_aad(remote_crypto, aes_keys, size):
    client = remote_crypto(aes_keys[size])
    alg = EncryptionAlgorithm(f"A{size}GCM")
    result = client.encrypt(alg, b"plaintext bytes", additional_authenticated_data=b"test")
    assert len(result.iv) == 12 and len(result.tag) == 16 and result.aad == b"test"
    plain = client.decrypt(alg, result.ciphertext, iv=result.iv, authentication_tag=result.tag,
                           additional_authenticated_data=b"test")
    assert plain.plaintext == b"plaintext bytes"
    with pytest.raises(HttpResponseError):
        client.decrypt(alg, result.ciphertext, iv=result.iv, authentication_tag=result.tag,
                       additional_authenticated_data=b"other")


def test_aes_cbc_zero_pads_and_cbcpad_pads(remote_crypto, aes_keys):
    client = remote_crypto(aes_keys[256])
    iv = os.urandom(16)
    plaintext = b"x" * 20
    cbc = client.encrypt(EncryptionAlgorithm.a256_cbc, plaintext, iv=iv)
    assert cbc.iv == iv and len(cbc.ciphertext) == 32
    assert client.decrypt(EncryptionAlgorithm.a256_cbc, cbc.ciphertext, iv=iv).plaintext == plaintext + b"\0" * 12
    pad = client.encrypt(EncryptionAlgorithm.a256_cbcpad, plaintext, iv=iv)
    assert pad.ciphertext[:16] == cbc.ciphertext[:16]
    assert client.decrypt(EncryptionAlgorithm.a256_cbcpad, pad.ciphertext, iv=iv).plaintext == plaintext


@pytest.mark.parametrize("alg", ["A256KW", "CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD"])
def test_aes_key_wrap(remote_crypto, aes_keys, alg):
    client = remote_crypto(aes_keys[256])
    secret = os.urandom(32)
    wrapped = client.wrap_key(KeyWrapAlgorithm(alg), secret)
    assert len(wrapped.encrypted_key) == 40
    assert client.unwrap_key(KeyWrapAlgorithm(alg), wrapped.encrypted_key).key == secret


def test_aes_algorithm_must_match_key_size(remote_crypto, aes_keys):
    with pytest.raises(HttpResponseError) as info:
        remote_crypto(aes_keys[128]).encrypt(EncryptionAlgorithm.a256_gcm, b"x")
    assert info.value.status_code == 400


def test_operation_not_in_key_ops_is_forbidden(key_client, crypto_for, name):
    key = key_client.create_rsa_key(name, key_operations=["encrypt", "verify"])
    with pytest.raises(HttpResponseError) as info:
        crypto_for(key).decrypt(EncryptionAlgorithm.rsa_oaep_256, b"\0" * 256)
    assert info.value.status_code == 403
    assert info.value.error.code == "Forbidden" and info.value.error.innererror["code"] == "KeyOperationForbidden"
    assert info.value.error.message == "Operation decrypt is not permitted on this key."


# Every operation each key type can do, with arguments valid for it, so that only the
# disabled flag can refuse them.
_DIGEST = hashlib.sha256(b"x").digest()
_OPERATIONS = {
    "RSA": {"encrypt": lambda c: c.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"data"),
            "decrypt": lambda c: c.decrypt(EncryptionAlgorithm.rsa_oaep_256, b"\0" * 256),
            "wrapKey": lambda c: c.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32),
            "unwrapKey": lambda c: c.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"\0" * 256),
            "sign": lambda c: c.sign(SignatureAlgorithm.rs256, _DIGEST),
            "verify": lambda c: c.verify(SignatureAlgorithm.rs256, _DIGEST, b"\0" * 256)},
    "EC": {"sign": lambda c: c.sign(SignatureAlgorithm.es256, _DIGEST),
           "verify": lambda c: c.verify(SignatureAlgorithm.es256, _DIGEST, b"\0" * 64)},
    "oct": {"encrypt": lambda c: c.encrypt(EncryptionAlgorithm.a256_gcm, b"data"),
            "decrypt": lambda c: c.decrypt(EncryptionAlgorithm.a256_gcm, b"\0" * 16, iv=b"\0" * 12,
                                           authentication_tag=b"\0" * 16),
            "wrapKey": lambda c: c.wrap_key(KeyWrapAlgorithm.aes_256, b"k" * 32),
            "unwrapKey": lambda c: c.unwrap_key(KeyWrapAlgorithm.aes_256, b"\0" * 40)},
}
# The same operations as raw REST bodies (base64url of the arguments above).
_REST_BODIES = {
    "RSA": {"encrypt": {"alg": "RSA-OAEP-256", "value": "ZGF0YQ"},
            "decrypt": {"alg": "RSA-OAEP-256", "value": "A" * 342},
            "wrapkey": {"alg": "RSA-OAEP-256", "value": "a" * 43},
            "unwrapkey": {"alg": "RSA-OAEP-256", "value": "A" * 342},
            "sign": {"alg": "RS256", "value": "A" * 43},
            "verify": {"alg": "RS256", "digest": "A" * 43, "value": "A" * 342}},
    "EC": {"sign": {"alg": "ES256", "value": "A" * 43},
           "verify": {"alg": "ES256", "digest": "A" * 43, "value": "A" * 86},
           "encrypt": {"alg": "RSA-OAEP-256", "value": "ZGF0YQ"}},
    "oct": {"encrypt": {"alg": "A256GCM", "value": "ZGF0YQ"},
            "decrypt": {"alg": "A256GCM", "value": "A" * 22, "iv": "A" * 16, "tag": "A" * 22},
            "wrapkey": {"alg": "A256KW", "value": "a" * 43},
            "unwrapkey": {"alg": "A256KW", "value": "A" * 54},
            "sign": {"alg": "RS256", "value": "A" * 43}},
}


def _create_disabled(key_client, kty: str, name: str):
    if kty == "RSA":
        return key_client.create_rsa_key(name, hardware_protected=True, enabled=False)
    if kty == "EC":
        return key_client.create_ec_key(name, curve="P-256", hardware_protected=True, enabled=False)
    return key_client.create_oct_key(name, size=256, hardware_protected=True, enabled=False)


@pytest.mark.parametrize("kty", ["RSA", "EC", "oct"])
def test_disabled_key_refuses_every_operation_through_the_sdk(key_client, remote_crypto, kty, name):
    key = _create_disabled(key_client, kty, name)
    # remote_crypto cannot read the key, so every operation, public ones included, reaches the HSM.
    client = remote_crypto(key)
    for op, operation in _OPERATIONS[kty].items():
        with pytest.raises(HttpResponseError) as info:
            operation(client)
        error = info.value.error
        assert (info.value.status_code, error.code, error.innererror["code"]) == (403, "Forbidden", "KeyDisabled"), op
        assert error.message == f"Operation {op} is not allowed on a disabled key.", op


@pytest.mark.parametrize("kty", ["RSA", "EC", "oct"])
def test_disabled_key_refuses_every_operation_over_rest(key_client, raw, kty, name):
    key = _create_disabled(key_client, kty, name)
    for op, body in _REST_BODIES[kty].items():
        for path in (f"/keys/{name}//{op}", f"/keys/{name}/{key.properties.version}/{op}"):
            response = raw("POST", f"{path}?api-version=7.6", token=True, json=body)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["error"]["innererror"] == {"code": "KeyDisabled"}, path


def test_enabling_a_disabled_key_restores_its_operations(key_client, remote_crypto, name):
    key = key_client.create_oct_key(name, size=256, hardware_protected=True, enabled=False)
    key_client.update_key_properties(name, enabled=True)
    client = remote_crypto(key)
    wrapped = client.wrap_key(KeyWrapAlgorithm.aes_256, b"k" * 32)
    assert client.unwrap_key(KeyWrapAlgorithm.aes_256, wrapped.encrypted_key).key == b"k" * 32


def test_expired_and_not_yet_valid_keys_refuse_signing(key_client, crypto_for, name):
    now = datetime.datetime.now(datetime.timezone.utc)
    digest = hashlib.sha256(b"x").digest()
    expired = key_client.create_rsa_key(name + "-old", expires_on=now - datetime.timedelta(hours=1))
    future = key_client.create_rsa_key(name + "-new", not_before=now + datetime.timedelta(hours=1))
    for key, inner in ((expired, "KeyExpired"), (future, "KeyNotYetValid")):
        # A key id string (not the KeyVaultKey) so the SDK cannot refuse locally first.
        client = crypto_for(key.id)
        with pytest.raises(HttpResponseError) as info:
            client.sign(SignatureAlgorithm.rs256, digest)
        assert info.value.status_code == 403 and info.value.error.innererror["code"] == inner
    # Date-time controls do not block recovering data: decrypt still works on an expired key.
    ciphertext = _public_rsa(expired).encrypt(b"old data", padding.OAEP(padding.MGF1(hashes.SHA256()),
                                                                         hashes.SHA256(), None))
    assert crypto_for(expired.id).decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext).plaintext == b"old data"


def test_encryption_user_at_key_scope_wraps_with_the_latest_version(emulator, key_client, principal_with, name):
    key = key_client.create_rsa_key(name)
    signer = principal_with("Crypto Service Encryption User", scope=f"/keys/{name}")
    client = CryptographyClient(f"{emulator.hsm_url()}/keys/{name}", emulator.credential(signer),
                                **emulator.client_options())
    wrapped = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
    assert client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == b"k" * 32
    assert key.id.startswith(wrapped.key_id)
