"""The keys API through KeyClient: lifecycle, paging, soft delete, backup, rotation."""

import datetime
import json

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import (
    KeyCurveName,
    KeyReleasePolicy,
    KeyRotationLifetimeAction,
    KeyRotationPolicyAction,
    KeyType,
)
from cryptography.hazmat.primitives.asymmetric import ec, rsa

RSA_OPS = {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}


def test_create_rsa_defaults_match_the_service(key_client, emulator, name):
    key = key_client.create_key(name, "RSA-HSM")
    assert key.key_type == KeyType.rsa_hsm
    assert len(key.key.n) == 256 and key.key.e == b"\x01\x00\x01"
    assert set(key.key_operations) == RSA_OPS
    assert key.id.startswith(f"{emulator.hsm_url()}/keys/{name}/") and len(key.properties.version) == 32
    props = key.properties
    assert props.enabled and not props.exportable
    assert props.recovery_level == "CustomizedRecoverable+Purgeable" and props.recoverable_days == 7
    assert props.created_on == props.updated_on
    assert key.key.d is None and key.key.p is None and key.key.q is None


@pytest.mark.parametrize("kty", ["RSA", "EC", "oct"])
def test_software_key_types_map_to_hsm_types(key_client, name, kty):
    assert key_client.create_key(name, kty).key_type == f"{kty}-HSM"


def test_rsa_sizes_and_public_exponent(key_client, name):
    assert len(key_client.create_rsa_key(name + "a", size=3072).key.n) == 384
    assert key_client.create_rsa_key(name + "b", public_exponent=17).key.e == b"\x11"


def test_ec_defaults_and_curves(key_client, name):
    key = key_client.create_key(name, "EC-HSM")
    assert key.key.crv == KeyCurveName.p_256
    assert set(key.key_operations) == {"verify", "deriveKey", "sign"}
    for curve, width in (("P-384", 48), ("P-521", 66), ("P-256K", 32)):
        key = key_client.create_ec_key(f"{name}-{curve}", curve=curve)
        assert key.key.crv == curve and len(key.key.x) == width and len(key.key.y) == width


def test_oct_key_reports_size_in_attributes_and_hides_k(key_client, raw, name):
    key = key_client.create_oct_key(name, size=128, hardware_protected=True)
    assert key.key_type == KeyType.oct_hsm and key.key.k is None
    bundle = raw("GET", f"/keys/{name}/?api-version=2025-07-01", token=True).json()
    assert bundle["attributes"]["key_size"] == 128 and "k" not in bundle["key"]


@pytest.mark.parametrize("kwargs", [
    {"key_type": "RSA-HSM", "size": 1024},
    {"key_type": "EC-HSM", "curve": "P-192"},
    {"key_type": "oct-HSM", "size": 512},
    {"key_type": "DSA"},
    {"key_type": "RSA-HSM", "key_operations": ["encrypt", "teleport"]},
    {"key_type": "RSA-HSM", "exportable": True},
])
def test_invalid_create_parameters_are_bad_parameter(key_client, name, kwargs):
    with pytest.raises(HttpResponseError) as info:
        key_client.create_key(name, kwargs.pop("key_type"), **kwargs)
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"


def test_invalid_key_name_is_bad_parameter(key_client):
    with pytest.raises(HttpResponseError) as info:
        key_client.create_rsa_key("bad_name")
    assert info.value.status_code == 400


def test_import_rsa_and_ec_keys_never_returns_private_parts(key_client, name):
    from azure.keyvault.keys import JsonWebKey

    private = rsa.generate_private_key(65537, 2048)
    n = private.private_numbers()
    jwk = JsonWebKey(kty="RSA-HSM", key_ops=["sign", "verify"], n=n.public_numbers.n.to_bytes(256, "big"),
                     e=b"\x01\x00\x01", d=n.d.to_bytes(256, "big"), p=n.p.to_bytes(128, "big"),
                     q=n.q.to_bytes(128, "big"), dp=n.dmp1.to_bytes(128, "big"), dq=n.dmq1.to_bytes(128, "big"),
                     qi=n.iqmp.to_bytes(128, "big"))
    key = key_client.import_key(name, jwk, hardware_protected=True, tags={"source": "byok"})
    assert key.key.n == jwk.n and key.key.d is None and set(key.key_operations) == {"sign", "verify"}
    assert key.properties.tags == {"source": "byok"}

    ec_private = ec.generate_private_key(ec.SECP384R1())
    numbers = ec_private.private_numbers()
    ec_jwk = JsonWebKey(kty="EC", crv="P-384", d=numbers.private_value.to_bytes(48, "big"),
                        x=numbers.public_numbers.x.to_bytes(48, "big"), y=numbers.public_numbers.y.to_bytes(48, "big"))
    ec_key = key_client.import_key(name + "-ec", ec_jwk)
    assert ec_key.key_type == "EC-HSM" and ec_key.key.x == ec_jwk.x and ec_key.key.d is None


def test_import_without_private_material_is_refused(key_client, name):
    from azure.keyvault.keys import JsonWebKey

    public = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(name, JsonWebKey(kty="RSA", n=public.n.to_bytes(256, "big"), e=b"\x01\x00\x01"))
    assert info.value.status_code == 400


def test_get_latest_and_specific_versions(key_client, name):
    first = key_client.create_ec_key(name)
    second = key_client.create_ec_key(name)
    assert key_client.get_key(name).id == second.id
    assert key_client.get_key(name, first.properties.version).key.x == first.key.x
    versions = [v.version for v in key_client.list_properties_of_key_versions(name)]
    assert versions == [first.properties.version, second.properties.version]
    with pytest.raises(ResourceNotFoundError) as info:
        key_client.get_key(name, "0" * 32)
    assert info.value.error.code == "KeyNotFound"
    assert f"/keys/{name}/{'0' * 32}" in info.value.error.message and "Activity ID" in info.value.error.message


def test_list_pages_in_creation_order_with_service_next_links(emulator, key_client, raw, name):
    names = [f"{name}-{i}" for i in (3, 1, 2)]
    for key_name in names:
        key_client.create_oct_key(key_name)
    pages = key_client.list_properties_of_keys(max_page_size=2).by_page()
    listed = [item.name for page in pages for item in page]
    assert [n for n in listed if n.startswith(name)] == names
    first = raw("GET", "/keys?api-version=2025-07-01&maxresults=2", token=True).json()
    assert len(first["value"]) == 2 and all("/keys/" in item["kid"] for item in first["value"])
    assert first["nextLink"].startswith(f"{emulator.hsm_url()}/keys?maxresults=2&$skiptoken=")
    assert "api-version" not in first["nextLink"]


def test_maxresults_above_25_is_refused(key_client):
    with pytest.raises(HttpResponseError) as info:
        next(iter(key_client.list_properties_of_keys(max_page_size=26)))
    assert info.value.status_code == 400


def test_update_properties_on_latest_and_on_a_version(key_client, name):
    first = key_client.create_rsa_key(name)
    key_client.create_rsa_key(name)
    expires = datetime.datetime(2050, 1, 1, tzinfo=datetime.timezone.utc)
    updated = key_client.update_key_properties(name, key_operations=["decrypt", "encrypt"], expires_on=expires,
                                               tags={"foo": "updated tag"})
    assert set(updated.key_operations) == {"encrypt", "decrypt"}
    assert updated.properties.expires_on == expires and updated.properties.tags == {"foo": "updated tag"}
    assert updated.properties.updated_on >= updated.properties.created_on
    old = key_client.update_key_properties(name, first.properties.version, enabled=False)
    assert not old.properties.enabled and old.id == first.id
    assert key_client.get_key(name).properties.enabled


def test_release_policy_round_trips(key_client, name):
    policy = KeyReleasePolicy(json.dumps({"anyOf": [{"allOf": [{"claim": "x-ms-attestation-type",
                                                                 "equals": "sevsnpvm"}],
                                                     "authority": "https://attest.example"}],
                                          "version": "1.0.0"}).encode())
    key = key_client.create_rsa_key(name, exportable=True, release_policy=policy)
    assert key.properties.exportable and json.loads(key.properties.release_policy.encoded_policy)["version"] == "1.0.0"
    with pytest.raises(HttpResponseError) as info:
        key_client.release_key(name, "eyJhbGciOiJub25lIn0.e30.")
    assert info.value.status_code == 403


def test_soft_delete_recover_and_purge(key_client, name):
    key_client.create_rsa_key(name, tags={"a": "b"})
    poller = key_client.begin_delete_key(name)
    deleted = poller.result()
    assert deleted.recovery_id.endswith(f"/deletedkeys/{name}")
    retention = datetime.timedelta(days=7)
    assert deleted.scheduled_purge_date - deleted.deleted_date == retention
    poller.wait()
    assert key_client.get_deleted_key(name).properties.tags == {"a": "b"}
    assert name in [k.name for k in key_client.list_deleted_keys()]
    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name)

    with pytest.raises(ResourceExistsError) as info:
        key_client.create_rsa_key(name)
    assert info.value.error.code == "Conflict"
    assert info.value.error.innererror["code"] == "ObjectIsDeletedButRecoverable"

    recovered = key_client.begin_recover_deleted_key(name).result()
    assert recovered.name == name and key_client.get_key(name).properties.tags == {"a": "b"}

    key_client.begin_delete_key(name).wait()
    key_client.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError) as info:
        key_client.get_deleted_key(name)
    assert info.value.error.message.startswith("Key not found: ")
    key_client.create_rsa_key(name)  # the name is free again


def test_purge_of_a_live_key_is_not_found(key_client, name):
    key_client.create_ec_key(name)
    with pytest.raises(ResourceNotFoundError):
        key_client.purge_deleted_key(name)
    assert key_client.get_key(name).name == name


def test_backup_restores_into_the_same_security_domain(key_client, secondary_key_client, name):
    first = key_client.create_rsa_key(name)
    second = key_client.create_rsa_key(name)
    blob = key_client.backup_key(name)
    header = json.loads(_b64url(blob.decode().split(".")[0]))
    assert header == {"alg": "dir", "enc": "A256CBC-HS512", "kid": "backup-protection-key"}

    with pytest.raises(ResourceExistsError):
        key_client.restore_key_backup(blob)

    restored = secondary_key_client.restore_key_backup(blob)
    assert restored.properties.version == second.properties.version
    assert restored.key.n == second.key.n and restored.properties.created_on == second.properties.created_on
    assert secondary_key_client.get_key(name, first.properties.version).key.n == first.key.n

    key_client.begin_delete_key(name).wait()
    with pytest.raises(ResourceExistsError):
        key_client.restore_key_backup(blob)
    key_client.purge_deleted_key(name)
    assert key_client.restore_key_backup(blob).id == second.id


def test_tampered_backup_is_refused(key_client, name):
    key_client.create_ec_key(name)
    blob = bytearray(key_client.backup_key(name))
    blob[-40] ^= 1
    key_client.begin_delete_key(name).wait()
    key_client.purge_deleted_key(name)
    with pytest.raises(HttpResponseError) as info:
        key_client.restore_key_backup(bytes(blob))
    assert info.value.status_code == 400


def test_rotation_policy_default_set_and_rotate(key_client, name):
    key = key_client.create_rsa_key(name, size=2048, key_operations=["sign", "verify"], tags={"t": "1"})
    default = key_client.get_key_rotation_policy(name)
    assert default.id.endswith(f"/keys/{name}/rotationpolicy")
    policy = key_client.update_key_rotation_policy(
        name,
        key_client.get_key_rotation_policy(name),
        lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P90D"),
                          KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P30D")],
        expires_in="P2Y",
    )
    assert policy.expires_in == "P2Y" and policy.created_on is not None
    actions = {a.action: (a.time_after_create, a.time_before_expiry) for a in policy.lifetime_actions}
    assert actions == {"Rotate": ("P90D", None), "Notify": (None, "P30D")}
    assert key_client.get_key_rotation_policy(name).expires_in == "P2Y"

    rotated = key_client.rotate_key(name)
    assert rotated.properties.version != key.properties.version
    assert set(rotated.key_operations) == {"sign", "verify"} and rotated.properties.tags == {"t": "1"}
    assert len(rotated.key.n) == 256 and rotated.key.n != key.key.n
    expected_exp = rotated.properties.created_on + datetime.timedelta(days=730)
    assert abs((rotated.properties.expires_on - expected_exp).total_seconds()) <= 2
    assert key_client.get_key(name).id == rotated.id


@pytest.mark.parametrize("actions, expires_in", [
    ([KeyRotationLifetimeAction("Rotate", time_after_create="P90D", time_before_expiry="P30D")], "P1Y"),
    ([KeyRotationLifetimeAction("Rotate")], "P1Y"),
    ([KeyRotationLifetimeAction("Explode", time_after_create="P90D")], "P1Y"),
    ([KeyRotationLifetimeAction("Rotate", time_after_create="90 days")], "P1Y"),
    ([KeyRotationLifetimeAction("Rotate", time_after_create="P90D")], "P27D"),
    ([KeyRotationLifetimeAction("Rotate", time_after_create="P1D")], "P1Y"),
    ([KeyRotationLifetimeAction("Notify", time_before_expiry="P30D")], None),
    ([KeyRotationLifetimeAction("Rotate", time_after_create="P2Y")], "P1Y"),
])
def test_invalid_rotation_policies_are_bad_parameter(key_client, name, actions, expires_in):
    from azure.keyvault.keys import KeyRotationPolicy

    key_client.create_ec_key(name)
    with pytest.raises(HttpResponseError) as info:
        key_client.update_key_rotation_policy(name, KeyRotationPolicy(), lifetime_actions=actions,
                                              expires_in=expires_in)
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"


def test_rotation_action_type_is_case_insensitive(key_client, name):
    from azure.keyvault.keys import KeyRotationPolicy

    key_client.create_ec_key(name)
    policy = key_client.update_key_rotation_policy(
        name, KeyRotationPolicy(), lifetime_actions=[KeyRotationLifetimeAction("rotate", time_after_create="P30D")])
    assert policy.lifetime_actions[0].action == "Rotate"


def test_random_bytes(key_client):
    assert len(key_client.get_random_bytes(32)) == 32
    assert key_client.get_random_bytes(16) != key_client.get_random_bytes(16)
    with pytest.raises(HttpResponseError) as info:
        key_client.get_random_bytes(129)
    assert info.value.status_code == 400


def test_key_attestation(key_client, name):
    key_client.create_rsa_key(name)
    attested = key_client.get_key_attestation(name)
    assert attested.properties.attestation.version == "1.0"
    assert attested.properties.attestation.public_key_attestation


def _b64url(data) -> bytes:
    import base64

    if isinstance(data, bytes):
        data = data.decode()
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
