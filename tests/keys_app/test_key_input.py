"""Bad input through both doors: a clear 400, never a 500, and nothing sent to the HSM.

No audit intent means no HSM call: every service records its intent before the call.
"""
import pytest

from portal.audit.models import AuditEvent

OWNER = {"owner": "payments"}
BAD_CREATES = [
    ({"name": "../x", "preset": "aes", "tags": OWNER}, "name"),
    ({"name": "a" * 128, "preset": "aes", "tags": OWNER}, "name"),
    ({"name": "k\u0435y-homoglyph", "preset": "aes", "tags": OWNER}, "name"),  # Cyrillic е
    ({"name": "", "preset": "aes", "tags": OWNER}, "name"),
    ({"name": "rsa-small", "kty": "RSA-HSM", "key_size": 1024, "tags": OWNER}, "key_size"),
    ({"name": "aes-big", "kty": "oct-HSM", "key_size": 512, "tags": OWNER}, "key_size"),
    ({"name": "ec-size", "kty": "EC-HSM", "key_size": 256, "tags": OWNER}, "key_size"),
    ({"name": "ec-curve", "kty": "EC-HSM", "curve": "P-192", "tags": OWNER}, "curve"),
    ({"name": "bad-type", "kty": "DES", "tags": OWNER}, "kty"),
    ({"name": "ec-encrypt", "kty": "EC-HSM", "key_ops": ["encrypt"], "tags": OWNER}, "key_ops"),
    ({"name": "old-key", "preset": "aes", "expires": "2020-01-01T00:00:00Z", "tags": OWNER},
     "expires"),
    ({"name": "no-owner", "preset": "aes"}, "standards"),
    ({"name": "Bad_Name", "preset": "aes", "tags": OWNER}, "name"),
]
BAD_DURATIONS = ["P1X", "90D", "P", "PT5M", "P-1D", "P1Y2", "forever"]


def _assert_nothing_sent():
    assert not AuditEvent.objects.filter(action__startswith="key.").exists()


@pytest.mark.parametrize("body,field", BAD_CREATES, ids=[f for _, f in BAD_CREATES])
def test_api_refuses_bad_create_with_400(api_as, admin, hsm, body, field):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["message"] and error["request_id"]
    assert field in error.get("fields", {}) or field in error["message"].lower()
    _assert_nothing_sent()


@pytest.mark.parametrize("duration", BAD_DURATIONS)
def test_api_refuses_malformed_durations(api_as, admin, hsm, duration):
    body = {"name": "dur-key", "preset": "aes", "tags": OWNER, "rotation_policy": {
        "expires_after": "P1Y", "lifetime_actions": [{"action": "Rotate",
                                                       "time_after_create": duration}]}}
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/", body, format="json")
    assert response.status_code == 400
    assert "ISO-8601" in response.json()["error"]["message"] or "at least" in \
        response.json()["error"]["message"]
    _assert_nothing_sent()


@pytest.mark.parametrize("policy,needle", [
    ({"expires_after": "P10D", "lifetime_actions": [{"action": "Rotate", "time_after_create": "P7D"}]}, "28 days"),
    ({"expires_after": "P1Y", "lifetime_actions": [{"action": "Rotate"}]}, "exactly one"),
    ({"expires_after": "P1Y", "lifetime_actions": [{"action": "Explode", "time_after_create": "P30D"}]}, "Rotate or Notify"),
    ({"lifetime_actions": [{"action": "Rotate", "time_before_expiry": "P30D"}]}, "needs expires_after"),
    ({"expires_after": "P1Y", "lifetime_actions": [{"action": "Rotate", "time_after_create": "P1D"}]}, "7 days"),
])
def test_rotation_policy_rules_read_like_sentences(api_as, admin, hsm, policy, needle):
    body = {"name": "pol-key", "preset": "aes", "tags": OWNER, "rotation_policy": policy}
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/", body, format="json")
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]
    _assert_nothing_sent()


@pytest.mark.parametrize("body,field", BAD_CREATES[:4] + BAD_CREATES[10:11],
                         ids=[f for _, f in BAD_CREATES[:4] + BAD_CREATES[10:11]])
def test_page_refuses_bad_create_with_400(client, admin, hsm, body, field):
    client.force_login(admin)
    form = {k: v for k, v in body.items() if k != "tags"}
    form["tags"] = "owner=payments"
    if "expires" in form:
        form["expires"] = "2020-01-01 00:00"
    response = client.post(f"/hsms/{hsm.name}/keys/new/", form)
    assert response.status_code == 400
    assert response.context["form"].errors
    _assert_nothing_sent()


def test_malformed_json_is_a_400(api_as, admin, hsm):
    response = api_as(admin).generic("POST", f"/api/v1/hsms/{hsm.name}/keys/", "{not json",
                                     content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_unknown_hsm_is_a_404(api_as, admin, db):
    response = api_as(admin).get("/api/v1/hsms/nowhere/keys/")
    assert response.status_code == 404
    assert "nowhere" in response.json()["error"]["message"]
