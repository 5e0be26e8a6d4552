"""Updating a key audits (and sends) only what changes compared with the key in the HSM;
enabling and disabling are their own audited actions; what the HSM cannot do is refused."""
import pytest

from keys_app import services
from keys_app.spec import spec_build
from portal import gateway
from portal.audit.models import AuditEvent

OWNER = {"owner": "payments"}


@pytest.fixture
def key(hsm, admin, key_name):
    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="setup")
    return key_name


def _trail(*actions):
    return list(AuditEvent.objects.filter(action__in=actions).order_by("seq")
                .values_list("action", "outcome"))


def _form(hsm, name, **overrides):
    """What the page's attributes form posts for the key as it is (every field)."""
    props = gateway.keys(hsm).get_key(name)
    data = {"enabled": "on" if props.properties.enabled else "",
            "not_before": "", "expires": props.properties.expires_on.strftime("%Y-%m-%dT%H:%M"),
            "key_ops": [op.value if hasattr(op, "value") else op for op in props.key.key_ops],
            "tags": "\n".join(f"{k}={v}" for k, v in sorted(props.properties.tags.items())),
            "confirm_name": ""}
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_api_removing_the_expiry_is_refused_not_audited_as_done(api_as, admin, hsm, key):
    before = gateway.keys(hsm).get_key(key).properties.expires_on
    response = api_as(admin).patch(f"/api/v1/hsms/{hsm.name}/keys/{key}/", {"expires": None},
                                   format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert "cannot remove" in error["message"] and "expires" in error["fields"]
    assert gateway.keys(hsm).get_key(key).properties.expires_on == before
    assert _trail("key.update") == []


def test_api_a_patch_that_changes_nothing_says_so_and_writes_no_intent(api_as, admin, hsm, key):
    props = gateway.keys(hsm).get_key(key).properties
    response = api_as(admin).patch(f"/api/v1/hsms/{hsm.name}/keys/{key}/", {
        "tags": OWNER, "enabled": True, "expires": props.expires_on.isoformat()}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_change"
    assert "Nothing changed" in response.json()["error"]["message"]
    assert _trail("key.update", "key.enable", "key.disable") == []


def test_api_audits_only_the_fields_that_change(api_as, admin, hsm, key):
    props = gateway.keys(hsm).get_key(key).properties
    response = api_as(admin).patch(f"/api/v1/hsms/{hsm.name}/keys/{key}/", {
        "tags": {**OWNER, "app": "ledger"}, "expires": props.expires_on.isoformat(),
        "enabled": True}, format="json")
    assert response.status_code == 200, response.content
    intent = AuditEvent.objects.get(action="key.update", outcome="intent")
    assert intent.detail["changes"] == {"tags": {**OWNER, "app": "ledger"}}
    assert intent.detail["before"] == {"tags": OWNER}
    assert _trail("key.update", "key.enable") == [("key.update", "intent"),
                                                  ("key.update", "succeeded")]
    assert gateway.keys(hsm).get_key(key).properties.expires_on == props.expires_on


def test_api_disable_with_an_attribute_change_is_two_audited_actions(api_as, admin, hsm, key):
    response = api_as(admin).patch(f"/api/v1/hsms/{hsm.name}/keys/{key}/", {
        "tags": {**OWNER, "app": "ledger"}, "enabled": False, "confirm_name": key}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["enabled"] is False
    assert _trail("key.update", "key.disable") == [
        ("key.update", "intent"), ("key.disable", "intent"),
        ("key.update", "succeeded"), ("key.disable", "succeeded")]
    assert "enabled" not in AuditEvent.objects.get(action="key.update", outcome="intent") \
        .detail["changes"]
    props = gateway.keys(hsm).get_key(key).properties
    assert props.enabled is False and props.tags["app"] == "ledger"
    again = api_as(admin).patch(f"/api/v1/hsms/{hsm.name}/keys/{key}/", {"enabled": True},
                                format="json")
    assert again.status_code == 200
    assert _trail("key.enable") == [("key.enable", "intent"), ("key.enable", "succeeded")]


def test_page_save_of_an_unchanged_form_says_so_and_writes_no_intent(client, admin, hsm, key):
    client.force_login(admin)
    before = gateway.keys(hsm).get_key(key).properties
    response = client.post(f"/hsms/{hsm.name}/keys/{key}/update/", _form(hsm, key), follow=True)
    assert b"Nothing changed" in response.content
    after = gateway.keys(hsm).get_key(key).properties
    assert (after.expires_on, after.updated_on) == (before.expires_on, before.updated_on)
    assert _trail("key.update", "key.enable", "key.disable") == []


def test_page_tag_edit_sends_and_audits_the_tags_only(client, admin, hsm, key):
    client.force_login(admin)
    before = gateway.keys(hsm).get_key(key).properties.expires_on
    client.post(f"/hsms/{hsm.name}/keys/{key}/update/",
                _form(hsm, key, tags="owner=payments\napp=ledger"))
    # The form shows minutes; the key's expiry keeps its seconds.
    assert gateway.keys(hsm).get_key(key).properties.expires_on == before
    intent = AuditEvent.objects.get(action="key.update", outcome="intent")
    assert set(intent.detail["changes"]) == {"tags"}


def test_page_disable_is_its_own_action_and_clearing_the_expiry_is_refused(client, admin, hsm,
                                                                          key):
    client.force_login(admin)
    # The attributes form leaves enabled alone; disabling is the danger zone's own form.
    client.post(f"/hsms/{hsm.name}/keys/{key}/update/", _form(hsm, key, enabled="",
                                                              tags="owner=payments\nx=1"))
    assert gateway.keys(hsm).get_key(key).properties.enabled is True
    client.post(f"/hsms/{hsm.name}/keys/{key}/disable/", {"confirm_name": key})
    assert gateway.keys(hsm).get_key(key).properties.enabled is False
    assert _trail("key.update", "key.disable") == [
        ("key.update", "intent"), ("key.update", "succeeded"),
        ("key.disable", "intent"), ("key.disable", "succeeded")]
    response = client.post(f"/hsms/{hsm.name}/keys/{key}/update/",
                           _form(hsm, key, expires=""), follow=True)
    assert b"cannot remove" in response.content
    assert gateway.keys(hsm).get_key(key).properties.expires_on is not None
    assert _trail("key.update") == [("key.update", "intent"), ("key.update", "succeeded")]
