"""Import applies the rules of create: default expiry, operations, standards, one name once."""
import base64
import json
import os
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from keys_app.models import KeyRecord
from portal import gateway
from portal.audit.models import AuditEvent

OWNER = {"owner": "payments"}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def aes_jwk(**extra) -> dict:
    return {"kty": "oct", "k": b64(os.urandom(32)), **extra}


def rsa_jwk(size: int = 2048, **extra) -> dict:
    private = rsa.generate_private_key(public_exponent=65537, key_size=size).private_numbers()

    def n(number):
        return b64(number.to_bytes((number.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "n": n(private.public_numbers.n), "e": n(private.public_numbers.e),
            "d": n(private.d), "p": n(private.p), "q": n(private.q), "dp": n(private.dmp1),
            "dq": n(private.dmq1), "qi": n(private.iqmp), **extra}


def _import(client, hsm, name, jwk, **extra):
    return client.post(f"/api/v1/hsms/{hsm.name}/keys/",
                       {"name": name, "key": jwk, "tags": OWNER, **extra}, format="json")


def test_api_import_gets_the_standards_default_expiry(api_as, admin, hsm, key_name):
    response = _import(api_as(admin), hsm, key_name, aes_jwk())
    assert response.status_code == 201, response.content
    expires = gateway.keys(hsm).get_key(key_name).properties.expires_on
    assert expires is not None
    assert abs(expires - (timezone.now() + timedelta(days=730))) < timedelta(minutes=1)
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).expires == expires


def test_page_import_gets_the_standards_default_expiry(client, admin, hsm, key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/import/", {
        "name": key_name, "tags": "owner=payments",
        "key_file": SimpleUploadedFile("k.json", json.dumps(aes_jwk()).encode())})
    assert response.status_code == 302, response.content
    assert gateway.keys(hsm).get_key(key_name).properties.expires_on is not None


@pytest.mark.parametrize("jwk,needle", [
    (rsa_jwk(key_ops=["import"]), "created in the HSM, never imported"),
    (rsa_jwk(key_ops=["import", "sign"]), "no other operation"),
    (aes_jwk(key_ops=["sign"]), "do not support sign"),
    (rsa_jwk(size=1024), "this key has 1024"),
    (aes_jwk(k=b64(os.urandom(64))), "this key has 512"),
], ids=["kek-imported", "kek-gains-ops", "aes-sign", "rsa-1024", "aes-512"])
def test_api_import_refuses_what_create_refuses(api_as, admin, hsm, key_name, jwk, needle):
    response = _import(api_as(admin), hsm, key_name, jwk)
    assert response.status_code == 400, response.content
    assert needle in response.json()["error"]["message"]
    assert not AuditEvent.objects.filter(action="key.import").exists()
    assert not gateway.key_exists(hsm, key_name)


def test_api_import_key_ops_reach_the_hsm_as_validated(api_as, admin, hsm, key_name):
    response = _import(api_as(admin), hsm, key_name, aes_jwk(key_ops=["encrypt", "encrypt"]))
    assert response.status_code == 201, response.content
    ops = gateway.keys(hsm).get_key(key_name).key.key_ops
    assert [getattr(op, "value", op) for op in ops] == ["encrypt"]


def test_import_onto_an_existing_name_is_a_409_through_both_doors(api_as, client, admin, hsm,
                                                                  key_name):
    api = api_as(admin)
    assert _import(api, hsm, key_name, aes_jwk()).status_code == 201
    again = _import(api, hsm, key_name, aes_jwk())
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]["message"]
    client.force_login(admin)
    page = client.post(f"/hsms/{hsm.name}/keys/import/", {
        "name": key_name, "tags": "owner=payments",
        "key_file": SimpleUploadedFile("k.json", json.dumps(aes_jwk()).encode())}, follow=True)
    assert b"already exists" in page.content
    assert len(list(gateway.keys(hsm).list_properties_of_key_versions(key_name))) == 1
    assert list(AuditEvent.objects.filter(action="key.import").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "succeeded"]


def test_a_key_exchange_key_cannot_gain_operations(api_as, admin, hsm, key_name):
    client = api_as(admin)
    created = client.post(f"/api/v1/hsms/{hsm.name}/keys/",
                          {"name": key_name, "preset": "byok-kek", "tags": OWNER}, format="json")
    assert created.status_code == 201, created.content
    response = client.patch(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/", {"key_ops": ["sign"]},
                            format="json")
    assert response.status_code == 400 and "operations cannot change" in \
        response.json()["error"]["message"]
    ops = gateway.keys(hsm).get_key(key_name).key.key_ops
    assert [getattr(op, "value", op) for op in ops] == ["import"]
