"""Bring Your Own Key through the official SDK: KEK, ``.byok`` blob in ``key_hsm``, import, use.

Blobs are built with the reference packer ``hsm_emulator.byok.pack_byok`` from the KEK's
public key as ``KeyClient.get_key`` returns it. In azure-keyvault-keys the ``key_hsm``
member is the ``JsonWebKey`` keyword ``t`` (what ``az keyvault key import --byok-file``
sets to the file's bytes).
"""

import base64
import hashlib
import json
import os

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsm_emulator.byok import pack_byok


@pytest.fixture(scope="module")
def kek(key_client):
    """A key exchange key as the spec prescribes: RSA-HSM, key_ops import only."""
    created = key_client.create_rsa_key("byok-kek", size=3072, hardware_protected=True, key_operations=["import"])
    assert created.key_type == "RSA-HSM" and created.key_operations == ["import"]
    return key_client.get_key("byok-kek")  # download the public key, as a user would


@pytest.fixture(scope="module")
def remote_user(emulator, access_client, principal_with):
    """CryptographyClient factory for a principal that may use keys but not read them."""
    from azure.keyvault.administration import KeyVaultPermission

    actions = [f"Microsoft.KeyVault/managedHsm/keys/{op}/action" for op in ("encrypt", "decrypt", "sign")]
    definition = access_client.set_role_definition(
        "/", role_name="byok remote crypto", permissions=[KeyVaultPermission(data_actions=actions)])
    credential = emulator.credential(principal_with(definition.name))
    return lambda key: CryptographyClient(key.id, credential, **emulator.client_options())


@pytest.fixture(scope="module")
def crypto_client_for_admin(emulator, admin_credential):
    return lambda key: CryptographyClient(key, admin_credential, **emulator.client_options())


def _status(excinfo) -> tuple[int, str, str]:
    error = excinfo.value
    return error.status_code, error.error.code, error.error.message


def test_kek_is_usable_only_for_import(emulator, admin_credential, kek):
    client = CryptographyClient(kek.id, admin_credential, **emulator.client_options())
    with pytest.raises(HttpResponseError) as info:
        client.decrypt(EncryptionAlgorithm.rsa_oaep, b"\0" * 384)
    assert _status(info)[:2] == (403, "Forbidden")
    with pytest.raises(HttpResponseError) as info:
        client.sign(SignatureAlgorithm.rs256, hashlib.sha256(b"x").digest())
    assert info.value.status_code == 403


@pytest.mark.parametrize("size", [2048, 3072, 4096])
def test_kek_sizes(key_client, name, size):
    key = key_client.create_rsa_key(name, size=size, hardware_protected=True, key_operations=["import"])
    assert len(key.key.n) * 8 == size and key.key_operations == ["import"]


def test_byok_blob_shape(kek):
    blob = json.loads(pack_byok(kek.id, kek, os.urandom(32)))
    assert blob["schema_version"] == "1.0.0"
    assert blob["header"] == {"kid": kek.id, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}
    # RSA-OAEP of the AES-256 key (modulus bytes) then RFC 5649 wrap of 32 bytes (40 bytes).
    ciphertext = blob["ciphertext"]
    assert "=" not in ciphertext and "+" not in ciphertext and "/" not in ciphertext
    assert len(base64.urlsafe_b64decode(ciphertext + "=" * (-len(ciphertext) % 4))) == 384 + 40


def test_import_rsa_then_sign_in_hsm_and_verify_locally(key_client, crypto_client_for_admin, kek, name):
    target = rsa.generate_private_key(65537, 2048)
    jwk = JsonWebKey(kty="RSA-HSM", t=pack_byok(kek.id, kek, target), key_ops=["sign", "verify"])
    key = key_client.import_key(name, jwk, hardware_protected=True)
    public = target.public_key().public_numbers()
    assert key.key_type == "RSA-HSM" and int.from_bytes(key.key.n, "big") == public.n
    assert key.key.d is None and key.key.p is None and key.key.t is None
    assert set(key.key_operations) == {"sign", "verify"}
    digest = hashlib.sha256(b"brought my own key").digest()
    signature = crypto_client_for_admin(key).sign(SignatureAlgorithm.rs256, digest).signature
    target.public_key().verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


@pytest.mark.parametrize("curve,crv,alg,bits", [(ec.SECP256R1, "P-256", "ES256", 256),
                                                 (ec.SECP384R1, "P-384", "ES384", 384),
                                                 (ec.SECP256K1, "P-256K", "ES256K", 256)])
def test_import_ec_then_sign_in_hsm_and_verify_locally(key_client, crypto_client_for_admin, kek, name,
                                                       curve, crv, alg, bits):
    target = ec.generate_private_key(curve())
    key = key_client.import_key(name, JsonWebKey(kty="EC-HSM", crv=crv, t=pack_byok(kek.id, kek, target)),
                                hardware_protected=True)
    assert key.key_type == "EC-HSM" and key.key.crv == crv and key.key.d is None
    assert set(key.key_operations) == {"sign", "verify", "deriveKey"}  # the EC defaults
    algorithm = {256: hashes.SHA256, 384: hashes.SHA384}[bits]
    digest = hashlib.new(f"sha{bits}", b"brought my own key").digest()
    raw = crypto_client_for_admin(key).sign(SignatureAlgorithm(alg), digest).signature
    width = len(raw) // 2
    der = encode_dss_signature(int.from_bytes(raw[:width], "big"), int.from_bytes(raw[width:], "big"))
    target.public_key().verify(der, digest, ec.ECDSA(Prehashed(algorithm())))


@pytest.mark.parametrize("size", [128, 256])
def test_import_aes_then_encrypt_in_hsm_and_decrypt_locally(key_client, remote_user, kek, name, size):
    secret = os.urandom(size // 8)
    key = key_client.import_key(name, JsonWebKey(kty="oct-HSM", t=pack_byok(kek.id, kek, secret),
                                                 key_ops=["encrypt", "decrypt"]), hardware_protected=True)
    assert key.key_type == "oct-HSM" and key.key.k is None
    result = remote_user(key).encrypt(EncryptionAlgorithm(f"A{size}GCM"), b"plaintext", additional_authenticated_data=b"a")
    assert AESGCM(secret).decrypt(result.iv, result.ciphertext + result.tag, b"a") == b"plaintext"


@pytest.mark.parametrize("enc", ["RSA_AES_KEY_WRAP_256", "RSA_AES_KEY_WRAP_384"])
def test_sha2_variants_are_accepted(key_client, remote_user, kek, name, enc):
    secret = os.urandom(32)
    key = key_client.import_key(name, JsonWebKey(kty="oct-HSM", t=pack_byok(kek.id, kek, secret, enc=enc)))
    result = remote_user(key).encrypt(EncryptionAlgorithm.a256_gcm, b"x")
    assert AESGCM(secret).decrypt(result.iv, result.ciphertext + result.tag, None) == b"x"


def test_kek_without_import_op_is_refused(key_client, name):
    other = key_client.create_rsa_key(name + "-kek", size=2048, key_operations=["encrypt", "decrypt"])
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="oct-HSM", t=pack_byok(other.id, other, os.urandom(32))))
    status, code, message = _status(info)
    assert (status, code) == (403, "Forbidden") and "import" in message
    assert info.value.error.innererror["code"] == "KeyOperationForbidden"


def test_unknown_kek_is_refused(key_client, kek, name):
    unknown = kek.id.replace("/keys/byok-kek/", "/keys/no-such-kek/")
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="oct-HSM", t=pack_byok(unknown, kek, os.urandom(32))))
    status, code, message = _status(info)
    assert (status, code) == (400, "BadParameter") and "no-such-kek" in message and "not found" in message
    foreign = "https://elsewhere.managedhsm.azure.net/keys/byok-kek/" + kek.properties.version
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="oct-HSM", t=pack_byok(foreign, kek, os.urandom(32))))
    assert _status(info)[:2] == (400, "BadParameter") and "not a key of this managed HSM" in _status(info)[2]


def test_blob_for_another_kek_is_refused(key_client, kek, name):
    stranger = rsa.generate_private_key(65537, 3072)  # right kid, wrong public key
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="oct-HSM", t=pack_byok(kek.id, stranger, os.urandom(32))))
    assert _status(info)[:2] == (400, "BadParameter")


@pytest.mark.parametrize("offset", [10, -5])  # inside the RSA part, inside the AES-KWP part
def test_tampered_ciphertext_is_refused(key_client, kek, name, offset):
    blob = json.loads(pack_byok(kek.id, kek, rsa.generate_private_key(65537, 2048)))
    ciphertext = blob["ciphertext"]
    flipped = "A" if ciphertext[offset] != "A" else "B"
    blob["ciphertext"] = ciphertext[:offset] + flipped + ciphertext[offset + 1:]
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="RSA-HSM", t=json.dumps(blob).encode()))
    status, code, message = _status(info)
    assert (status, code) == (400, "BadParameter") and "key transfer blob" in message
    with pytest.raises(HttpResponseError):  # nothing was created
        key_client.get_key(name)


@pytest.mark.parametrize("mutate", [
    lambda blob: b"not json",
    lambda blob: json.dumps({**json.loads(blob), "schema_version": "2.0.0"}).encode(),
    lambda blob: json.dumps({**json.loads(blob), "header": {**json.loads(blob)["header"], "enc": "A256KW"}}).encode(),
    lambda blob: json.dumps({k: v for k, v in json.loads(blob).items() if k != "ciphertext"}).encode(),
])
def test_malformed_blobs_are_refused(key_client, kek, name, mutate):
    blob = mutate(pack_byok(kek.id, kek, os.urandom(32)))
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="oct-HSM", t=blob))
    assert _status(info)[:2] == (400, "BadParameter")


@pytest.mark.parametrize("kty,target", [
    ("RSA-HSM", lambda: ec.generate_private_key(ec.SECP256R1())),
    ("EC-HSM", lambda: rsa.generate_private_key(65537, 2048)),
    ("oct-HSM", lambda: os.urandom(20)),
    ("RSA-HSM", lambda: os.urandom(32)),
    ("RSA-HSM", lambda: rsa.generate_private_key(65537, 1024)),
])
def test_wrong_key_type_or_size_is_refused(key_client, kek, name, kty, target):
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty=kty, t=pack_byok(kek.id, kek, target())))
    assert _status(info)[:2] == (400, "BadParameter")


def test_ec_curve_must_match_request(key_client, kek, name):
    blob = pack_byok(kek.id, kek, ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="EC-HSM", crv="P-256", t=blob))
    assert _status(info)[:2] == (400, "BadParameter") and "P-384" in _status(info)[2]
