"""Every date and duration a key request carries is bounded: out of range is a 400 sentence
in the error format (never an OverflowError's 500), through both doors, with nothing sent.

Bounds: dates between 1970-01-01 and 2099-12-31 (UTC); durations at most P100Y (36500 days).
"""
import base64
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from keys_app import rotation, services
from keys_app.spec import spec_build
from portal.audit.models import AuditEvent
from portal.errors import BadInput

OWNER = {"owner": "payments"}
FAR = "9999-12-31T00:00:00Z"
HUGE = "P9999999999D"


def _policy(expires_after="P1Y", **trigger):
    return {"expires_after": expires_after, "lifetime_actions": [
        {"action": "Rotate", **(trigger or {"time_before_expiry": "P30D"})}]}


@pytest.fixture
def key(hsm, admin, key_name):
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="setup")
    return key_name


def _intents(action: str) -> int:
    return AuditEvent.objects.filter(action=action, outcome="intent").count()


def _assert_bounded_400(response, field: str, needle: str):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert needle in error["message"] and error["request_id"]
    assert field in error["fields"]


@pytest.mark.parametrize("body,field,needle", [
    ({"rotation_policy": _policy(HUGE)}, "expires_after", "P100Y"),
    ({"rotation_policy": _policy("P101Y")}, "expires_after", "P100Y"),
    ({"rotation_policy": _policy("P2Y", time_after_create=HUGE)},
     "lifetime_actions[0].time_after_create", "P100Y"),
    ({"not_before": FAR}, "not_before", "2099-12-31"),
    ({"expires": FAR}, "expires", "2099-12-31"),
    ({"not_before": "1969-12-31T00:00:00Z"}, "not_before", "1970-01-01"),
], ids=["policy-expiry-overflow", "policy-expiry-101y", "trigger-overflow", "activation-9999",
        "expiry-9999", "activation-1969"])
def test_api_create_refuses_out_of_range_dates_and_durations(api_as, admin, hsm, key_name,
                                                             body, field, needle):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                                  {"name": key_name, "preset": "aes", "tags": OWNER, **body},
                                  format="json")
    _assert_bounded_400(response, field, needle)
    assert _intents("key.create") == 0


def test_api_rotation_policy_put_refuses_an_overflowing_duration(api_as, admin, hsm, key):
    response = api_as(admin).put(f"/api/v1/hsms/{hsm.name}/keys/{key}/rotation-policy/",
                                 _policy(HUGE), format="json")
    _assert_bounded_400(response, "expires_after", "P100Y")
    assert _intents("key.rotation_policy.set") == 0


@pytest.mark.parametrize("body,field", [({"expires": FAR}, "expires"),
                                        ({"not_before": FAR}, "not_before")])
def test_api_patch_refuses_out_of_range_dates(api_as, admin, hsm, key, body, field):
    response = api_as(admin).patch(f"/api/v1/hsms/{hsm.name}/keys/{key}/", body, format="json")
    _assert_bounded_400(response, field, "2099-12-31")
    assert _intents("key.update") == 0


def test_api_import_refuses_an_out_of_range_expiry(api_as, admin, hsm, key_name):
    jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/", {
        "name": key_name, "key": jwk, "tags": OWNER, "expires": FAR}, format="json")
    _assert_bounded_400(response, "expires", "2099-12-31")
    assert _intents("key.import") == 0


def test_page_create_refuses_a_far_activation_date(client, admin, hsm, key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "aes", "name": key_name, "tags": "owner=payments",
        "not_before": "9999-12-31T00:00"})
    assert response.status_code == 400
    assert "2099-12-31" in str(response.context["form"].errors)
    assert _intents("key.create") == 0


def test_page_create_refuses_an_overflowing_policy_duration(client, admin, hsm, key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "aes", "name": key_name, "tags": "owner=payments",
        "expires_after": HUGE, "rotate_before_expiry": "P30D"})
    assert response.status_code == 400
    assert b"P100Y" in response.content
    assert _intents("key.create") == 0


def test_page_rotation_policy_and_update_refuse_out_of_range_values(client, admin, hsm, key):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/{key}/rotation-policy/", {
        "expires_after": HUGE, "rotate_before_expiry": "P30D"}, follow=True)
    assert b"P100Y" in response.content
    response = client.post(f"/hsms/{hsm.name}/keys/{key}/update/", {
        "enabled": "on", "expires": "9999-12-31T00:00", "tags": "owner=payments"}, follow=True)
    assert b"2099-12-31" in response.content
    assert _intents("key.rotation_policy.set") == 0 and _intents("key.update") == 0


def test_page_import_refuses_an_out_of_range_expiry(client, admin, hsm, key_name):
    import json

    client.force_login(admin)
    jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
    response = client.post(f"/hsms/{hsm.name}/keys/import/", {
        "name": key_name, "tags": "owner=payments", "expires": "9999-12-31T00:00",
        "key_file": SimpleUploadedFile("k.json", json.dumps(jwk).encode())}, follow=True)
    assert b"2099-12-31" in response.content
    assert _intents("key.import") == 0


def test_the_bounds_themselves_are_accepted():
    assert rotation.duration_days("P100Y", field="x").days == 36500
    assert rotation.duration_days("P36500D", field="x").days == 36500
    with pytest.raises(BadInput, match="P100Y"):
        rotation.duration_days("P36501D", field="x")




def test_api_backdated_activation_without_expiry_is_refused_not_created_expired(
        api_as, admin, hsm, key_name):
    from datetime import timedelta

    from django.utils import timezone

    from portal import gateway

    long_ago = (timezone.now() - timedelta(days=800)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/", {
        "name": key_name, "preset": "aes", "tags": OWNER, "not_before": long_ago}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert "choose a later activation date" in error["message"]
    assert "not_before" in error["fields"]
    assert not gateway.key_exists(hsm, key_name) and _intents("key.create") == 0
    # A backdated activation whose default expiry is still ahead is fine, and expires on it.
    recent = timezone.now() - timedelta(days=100)
    created = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/", {
        "name": key_name, "preset": "aes", "tags": OWNER,
        "not_before": recent.strftime("%Y-%m-%dT%H:%M:%SZ")}, format="json")
    assert created.status_code == 201, created.content
    expires = gateway.keys(hsm).get_key(key_name).properties.expires_on
    assert abs((expires - recent) - timedelta(days=730)) < timedelta(seconds=2)


def test_page_backdated_activation_without_expiry_is_refused(client, admin, hsm, key_name):
    from datetime import timedelta

    from django.utils import timezone

    client.force_login(admin)
    long_ago = (timezone.now() - timedelta(days=800)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "aes", "name": key_name, "tags": "owner=payments", "not_before": long_ago})
    assert response.status_code == 400
    assert "choose a later activation date" in str(response.context["form"].errors)
    assert _intents("key.create") == 0
