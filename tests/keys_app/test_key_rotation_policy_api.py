"""Stopping a key's automatic rotation needs the key's name typed again through the API too,
as on the page: a notify-only policy on a rotating key is refused without confirm_name."""
import pytest

from keys_app import services
from keys_app.models import KeyRecord
from keys_app.spec import spec_build
from portal import gateway
from portal.audit.models import AuditEvent

ROTATE = {"expires_after": "P1Y", "lifetime_actions": [
    {"action": "Rotate", "time_before_expiry": "P30D"}]}
NOTIFY = {"expires_after": "P1Y", "lifetime_actions": [
    {"action": "Notify", "time_before_expiry": "P30D"}]}


@pytest.fixture
def rotating_key(hsm, admin, key_name):
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM",
                                                 tags={"owner": "payments"},
                                                 rotation_policy=ROTATE),
                        actor=admin, request_id="setup")
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).has_rotation_policy
    return key_name


def _hsm_rotates(hsm, name) -> bool:
    policy = gateway.keys(hsm).get_key_rotation_policy(name)
    return any(str(action.action).lower().endswith("rotate") for action in policy.lifetime_actions)


def test_a_notify_only_policy_on_a_rotating_key_needs_the_typed_name(api_as, admin, hsm,
                                                                     rotating_key):
    url = f"/api/v1/hsms/{hsm.name}/keys/{rotating_key}/rotation-policy/"
    sets = AuditEvent.objects.filter(action="key.rotation_policy.set").count()

    refused = api_as(admin).put(url, NOTIFY, format="json")

    assert refused.status_code == 400, refused.content
    assert refused.json()["error"]["code"] == "confirmation_required"
    assert "confirm_name" in refused.json()["error"]["fields"]
    assert AuditEvent.objects.filter(action="key.rotation_policy.set").count() == sets
    assert _hsm_rotates(hsm, rotating_key)

    done = api_as(admin).put(url, {**NOTIFY, "confirm_name": rotating_key}, format="json")

    assert done.status_code == 200, done.content
    assert not _hsm_rotates(hsm, rotating_key)
    assert not KeyRecord.objects.get(hsm=hsm, name=rotating_key).has_rotation_policy


def test_a_policy_that_keeps_rotating_needs_no_typed_name(api_as, admin, hsm, rotating_key):
    url = f"/api/v1/hsms/{hsm.name}/keys/{rotating_key}/rotation-policy/"
    longer = {"expires_after": "P2Y", "lifetime_actions": [
        {"action": "Rotate", "time_before_expiry": "P60D"}]}

    response = api_as(admin).put(url, longer, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["expires_after"] == "P2Y"
