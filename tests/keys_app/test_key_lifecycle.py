"""Every key action through the emulator, through both doors, with its audit trail."""
import base64
import json

from cryptography.hazmat.primitives.asymmetric import rsa

from keys_app.models import KeyRecord
from portal import gateway
from portal.audit.models import AuditEvent
from portal.approvals.models import ApprovalRequest
from tests.support.approvals import approve_and_run

OWNER = {"owner": "payments"}


def create(client, hsm, name, **extra):
    body = {"name": name, "preset": "cmk-wrapping", "tags": OWNER, **extra}
    response = client.post(f"/api/v1/hsms/{hsm.name}/keys/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def audit_of(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq")
                .values_list("outcome", flat=True))


def test_create_puts_the_key_in_the_hsm_and_the_cache(api_as, admin, hsm, key_name):
    data = create(api_as(admin), hsm, key_name)
    assert data["kty"] == "RSA-HSM" and data["key_size"] == 3072
    assert set(data["key_ops"]) == {"wrapKey", "unwrapKey"}
    assert data["rotation_policy"]["lifetime_actions"] == [
        {"action": "Rotate", "time_before_expiry": "P30D"}]
    assert data["expires"] is not None  # standards' maximum lifetime applied
    in_hsm = gateway.keys(hsm).get_key(key_name)
    assert in_hsm.properties.version == data["version"]
    assert in_hsm.properties.tags == OWNER
    assert audit_of("key.create") == ["intent", "succeeded"]


def test_create_through_the_page(client, admin, hsm, key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "signing", "name": key_name, "tags": "owner=payments\nenv=prod"})
    assert response.status_code == 302
    assert response["Location"] == f"/hsms/{hsm.name}/keys/{key_name}/"
    record = KeyRecord.objects.get(hsm=hsm, name=key_name)
    assert (record.kty, record.curve, record.tags) == ("EC-HSM", "P-256",
                                                       {"owner": "payments", "env": "prod"})
    page = client.get(response["Location"])
    assert page.status_code == 200 and key_name.encode() in page.content


def test_existing_name_is_a_409_not_a_new_version(api_as, admin, hsm, key_name):
    client = api_as(admin)
    create(client, hsm, key_name)
    response = client.post(f"/api/v1/hsms/{hsm.name}/keys/",
                           {"name": key_name, "preset": "aes", "tags": OWNER}, format="json")
    assert response.status_code == 409
    assert "rotate it" in response.json()["error"]["message"]
    assert len(list(gateway.keys(hsm).list_properties_of_key_versions(key_name))) == 1


def test_rotate_makes_a_new_current_version(api_as, client, admin, hsm, key_name):
    first = create(api_as(admin), hsm, key_name)
    rotated = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/rotate/").json()
    assert rotated["version"] != first["version"]
    assert rotated["version_count"] == 2
    versions = api_as(admin).get(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/versions/").json()
    assert {v["version"] for v in versions} == {first["version"], rotated["version"]}
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/{key_name}/rotate/")
    assert response.status_code == 302
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).version_count == 3
    assert gateway.keys(hsm).get_key(key_name).properties.version == \
        KeyRecord.objects.get(hsm=hsm, name=key_name).version
    assert audit_of("key.rotate") == ["intent", "succeeded", "intent", "succeeded"]


def test_hsm_failure_is_translated_and_audited(api_as, admin, hsm, key_name, emulator):
    create(api_as(admin), hsm, key_name)
    emulator.fail("POST", f"/keys/{key_name}/rotate", status=503)
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/rotate/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "hsm_unavailable"
    assert audit_of("key.rotate") == ["intent", "failed"]
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).version_count == 1


def test_update_tags_ops_and_disable_with_confirmation(api_as, admin, hsm, key_name):
    client = api_as(admin)
    create(client, hsm, key_name)
    url = f"/api/v1/hsms/{hsm.name}/keys/{key_name}/"
    response = client.patch(url, {"tags": {"owner": "payments", "app": "ledger"},
                                   "key_ops": ["unwrapKey"]}, format="json")
    assert response.status_code == 200
    assert response.json()["key_ops"] == ["unwrapKey"]
    assert gateway.keys(hsm).get_key(key_name).properties.tags["app"] == "ledger"
    refused = client.patch(url, {"enabled": False}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "confirmation_required"
    assert gateway.keys(hsm).get_key(key_name).properties.enabled is True
    done = client.patch(url, {"enabled": False, "confirm_name": key_name}, format="json")
    assert done.status_code == 200 and done.json()["enabled"] is False
    assert gateway.keys(hsm).get_key(key_name).properties.enabled is False
    assert audit_of("key.disable") == ["intent", "succeeded"]
    no_owner = client.patch(url, {"tags": {"app": "ledger"}}, format="json")
    assert no_owner.status_code == 400 and "owner" in no_owner.json()["error"]["message"]


def test_rotation_policy_set_read_and_clear(api_as, admin, hsm, key_name):
    client = api_as(admin)
    create(client, hsm, key_name, rotation_policy=None)
    url = f"/api/v1/hsms/{hsm.name}/keys/{key_name}/rotation-policy/"
    assert client.get(url).json() == {"expires_after": None, "lifetime_actions": []}
    policy = {"expires_after": "P1Y", "lifetime_actions": [
        {"action": "Rotate", "time_after_create": "P90D"}]}
    response = client.put(url, policy, format="json")
    assert response.status_code == 200
    stored = gateway.keys(hsm).get_key_rotation_policy(key_name)
    assert stored.expires_in == "P1Y"
    assert stored.lifetime_actions[0].time_after_create == "P90D"
    assert client.delete(url, {"confirm_name": "wrong"}, format="json").status_code == 400
    cleared = client.delete(url, {"confirm_name": key_name}, format="json")
    assert cleared.status_code == 202 and client.get(url).json()["lifetime_actions"]
    approve_and_run(cleared)
    assert client.get(url).json()["lifetime_actions"] == []
    assert not gateway.keys(hsm).get_key_rotation_policy(key_name).lifetime_actions


def test_backup_downloads_and_restores_into_the_other_hsm(api_as, admin, hsm, secondary_hsm,
                                                        key_name):
    client = api_as(admin)
    create(client, hsm, key_name)
    blob = client.post(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/backup/").json()["value"]
    assert base64.b64decode(blob)
    restored = client.post(f"/api/v1/hsms/{secondary_hsm.name}/keys/restore/", {"value": blob},
                           format="json")
    assert restored.status_code == 201, restored.content
    assert restored.json()["name"] == key_name
    assert gateway.keys(secondary_hsm).get_key(key_name).properties.version
    again = client.post(f"/api/v1/hsms/{secondary_hsm.name}/keys/restore/", {"value": blob},
                        format="json")
    assert again.status_code == 409
    assert client.post(f"/api/v1/hsms/{hsm.name}/keys/restore/", {"value": "%%%"},
                       format="json").status_code == 400


def test_delete_recover_purge_and_the_name_held_by_a_deleted_key(api_as, admin, hsm, key_name):
    client = api_as(admin)
    create(client, hsm, key_name)
    url = f"/api/v1/hsms/{hsm.name}/keys/{key_name}/"
    assert client.delete(url, {"confirm_name": "nope"}, format="json").status_code == 400
    deleted = client.delete(url, {"confirm_name": key_name, "justification": "retired"},
                            format="json")
    # Deleting needs another person's approval: 202 with the pending request, nothing done.
    assert deleted.status_code == 202
    pending = deleted.json()["approval_request"]
    assert (pending["operation"], pending["status"], pending["justification"]) == (
        "key.delete", "pending", "retired")
    assert gateway.key_exists(hsm, key_name)
    approve_and_run(deleted)
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "deleted"
    listed = client.get(f"/api/v1/hsms/{hsm.name}/deleted-keys/").json()["results"]
    assert key_name in [k["name"] for k in listed]
    taken = client.post(f"/api/v1/hsms/{hsm.name}/keys/",
                        {"name": key_name, "preset": "aes", "tags": OWNER}, format="json")
    assert taken.status_code == 409
    assert "recover it or purge it first" in taken.json()["error"]["message"]
    recovered = client.post(f"/api/v1/hsms/{hsm.name}/deleted-keys/{key_name}/recover/")
    assert recovered.status_code == 200 and recovered.json()["state"] == "active"
    assert gateway.keys(hsm).get_key(key_name).properties.enabled
    live_purge = client.post(f"/api/v1/hsms/{hsm.name}/deleted-keys/{key_name}/purge/",
                             {"confirm_name": key_name}, format="json")
    assert live_purge.status_code == 409
    approve_and_run(client.delete(url, {"confirm_name": key_name}, format="json"))
    purged = client.post(f"/api/v1/hsms/{hsm.name}/deleted-keys/{key_name}/purge/",
                         {"confirm_name": key_name}, format="json")
    assert purged.status_code == 202
    assert KeyRecord.objects.filter(hsm=hsm, name=key_name).exists()  # not yet: pending
    approve_and_run(purged)
    assert not KeyRecord.objects.filter(hsm=hsm, name=key_name).exists()
    assert key_name not in [k.name for k in gateway.keys(hsm).list_deleted_keys()]
    assert audit_of("key.purge") == ["intent", "succeeded"]


def test_import_a_jwk_keeps_private_material_out_of_the_trail(api_as, admin, hsm, key_name):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()

    def b64(number):
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    jwk = {"kty": "RSA", "n": b64(private.public_numbers.n), "e": b64(private.public_numbers.e),
           "d": b64(private.d), "p": b64(private.p), "q": b64(private.q),
           "dp": b64(private.dmp1), "dq": b64(private.dmq1), "qi": b64(private.iqmp)}
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                                  {"name": key_name, "key": jwk, "tags": OWNER}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["kty"] == "RSA-HSM" and response.json()["key_size"] == 2048
    trail = json.dumps(list(AuditEvent.objects.values("detail", "target")), default=str)
    assert jwk["d"] not in trail and jwk["p"] not in trail


def test_public_key_downloads(api_as, client, admin, hsm, key_name):
    create(api_as(admin), hsm, key_name)
    jwk = api_as(admin).get(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/public-key/?fmt=jwk")
    assert jwk.status_code == 200
    body = json.loads(jwk.content)
    assert body["kty"] == "RSA-HSM" and "n" in body and "d" not in body
    client.force_login(admin)
    pem = client.get(f"/hsms/{hsm.name}/keys/{key_name}/public.pem")
    assert pem.content.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_page_delete_needs_the_typed_name_then_recover(client, api_as, admin, hsm, key_name):
    create(api_as(admin), hsm, key_name)
    client.force_login(admin)
    client.post(f"/hsms/{hsm.name}/keys/{key_name}/delete/", {"confirm_name": "x"})
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "active"
    response = client.post(f"/hsms/{hsm.name}/keys/{key_name}/delete/", {"confirm_name": key_name})
    # The page sends the requester to the pending request's page: approvers decide it.
    pending = ApprovalRequest.objects.get(operation="key.delete")
    assert response["Location"] == f"/approvals/{pending.pk}/"
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "active"
    approve_and_run(pending)
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "deleted"
    client.post(f"/hsms/{hsm.name}/deleted-keys/{key_name}/recover/")
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "active"


def test_a_byok_key_exchange_key_allows_import_only(api_as, admin, hsm, key_name):
    client = api_as(admin)
    data = create(client, hsm, key_name, preset="byok-kek")
    assert data["key_ops"] == ["import"] and data["key_size"] == 4096
    mixed = client.post(f"/api/v1/hsms/{hsm.name}/keys/", {
        "name": f"{key_name}-x", "kty": "RSA-HSM", "key_ops": ["import", "sign"], "tags": OWNER},
        format="json")
    assert mixed.status_code == 400 and "no other operation" in mixed.json()["error"]["message"]


def test_byok_import_through_both_doors(api_as, client, admin, hsm, key_name):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    from hsm_emulator.byok import pack_byok  # the on-premises HSM tool's part, in tests only

    api = api_as(admin)
    create(api, hsm, f"{key_name}-kek", preset="byok-kek")
    kek_key = gateway.keys(hsm).get_key(f"{key_name}-kek")
    target = ec.generate_private_key(ec.SECP256R1())
    blob = pack_byok(kek_key.id, kek_key, target)

    # The page: upload the .byok file and name the type of the key inside it.
    client.force_login(admin)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(f"/hsms/{hsm.name}/keys/import/", {
        "name": f"{key_name}-ec", "target_kty": "EC-HSM", "tags": "owner=payments",
        "key_file": SimpleUploadedFile("target.byok", blob)})
    assert response.status_code == 302, response.content
    imported = gateway.keys(hsm).get_key(f"{key_name}-ec")
    assert imported.key.x == target.public_key().public_numbers().x.to_bytes(32, "big")

    # The API: the same blob as key_hsm in a JWK; the HSM signs, the original public key verifies.
    jwk = {"kty": "EC-HSM", "key_hsm": base64.urlsafe_b64encode(blob).rstrip(b"=").decode()}
    response = api.post(f"/api/v1/hsms/{hsm.name}/keys/",
                        {"name": f"{key_name}-ec2", "key": jwk, "tags": OWNER}, format="json")
    assert response.status_code == 201, response.content
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"ledger close 2026-11-28")
    value = digest.finalize()
    signature = gateway.crypto(hsm, gateway.keys(hsm).get_key(f"{key_name}-ec2").id).sign(
        "ES256", value).signature
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    target.public_key().verify(utils.encode_dss_signature(r, s), value,
                               ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    # A BYOK file without the type of the key inside is a clear 400 on the page.
    response = client.post(f"/hsms/{hsm.name}/keys/import/", {
        "name": f"{key_name}-ec3", "tags": "owner=payments",
        "key_file": SimpleUploadedFile("target.byok", blob)}, follow=True)
    assert b"Choose the type of the key inside the BYOK file" in response.content
