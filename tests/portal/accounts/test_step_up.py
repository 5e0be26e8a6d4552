"""Step-up: dangerous operations need a sign-in within PORTAL_STEP_UP_SECONDS."""
import time

import pytest
from django.test import RequestFactory

from portal.accounts.middleware import SIGNED_IN_AT
from portal.accounts.stepup import StepUpRequired, ensure_recent_sign_in
from portal.audit.models import AuditEvent
from tests.factories import PASSWORD
from tests.support.sessions import signed_in


def _request(client, method="get", path_="/keys/", **headers):
    request = getattr(RequestFactory(), method)(path_, **headers)
    request.session = client.session
    from django.contrib.auth import get_user
    request.user = get_user(request)
    return request


def test_a_recent_sign_in_passes(client, admin, settings):
    signed_in(client, admin, settings.PORTAL_STEP_UP_SECONDS - 30)
    ensure_recent_sign_in(_request(client), operation="key.purge")


def test_an_old_sign_in_is_refused_with_a_way_back(client, admin, settings):
    signed_in(client, admin, settings.PORTAL_STEP_UP_SECONDS + 1)
    with pytest.raises(StepUpRequired) as refused:
        ensure_recent_sign_in(_request(client, path_="/keys/x/?tab=1"), operation="key.purge")
    assert refused.value.status == 401 and refused.value.code == "step_up_required"
    assert "within the last 15 minutes" in refused.value.message
    assert refused.value.reauth_url.startswith("/accounts/reauthenticate/?next=%2Fkeys%2Fx%2F%3Ftab%3D1")


def test_a_post_comes_back_to_the_page_of_its_form_never_to_another_host(client, admin):
    signed_in(client, admin, 3600)
    with pytest.raises(StepUpRequired) as same:
        ensure_recent_sign_in(_request(client, "post", "/purge/",
                                       HTTP_REFERER="http://testserver/keys/k/"),
                              operation="key.purge")
    assert "next=http%3A%2F%2Ftestserver%2Fkeys%2Fk%2F" in same.value.reauth_url
    with pytest.raises(StepUpRequired) as other:
        ensure_recent_sign_in(_request(client, "post", "/purge/",
                                       HTTP_REFERER="https://evil.example/"),
                              operation="key.purge")
    assert "evil" not in other.value.reauth_url


def test_the_page_flow_re_authenticates_and_returns(client, admin, settings):
    """A page raising StepUpRequired redirects to the password page (break-glass), and a
    right password signs in again (new session id, audited) and returns to next."""
    signed_in(client, admin, settings.PORTAL_STEP_UP_SECONDS + 60)
    old_key = client.session.session_key
    page = client.get("/accounts/reauthenticate/?next=/jobs/&operation=key.purge")
    assert page.status_code == 200 and b"Confirm it" in page.content
    wrong = client.post("/accounts/reauthenticate/", {"password": "nope", "next": "/jobs/"})
    assert wrong.status_code == 400
    right = client.post("/accounts/reauthenticate/", {"password": PASSWORD, "next": "/jobs/"})
    assert right.status_code == 302 and right["Location"] == "/jobs/"
    assert client.session.session_key != old_key
    assert time.time() - client.session[SIGNED_IN_AT] < 5
    events = list(AuditEvent.objects.filter(action="auth.sign_in").order_by("seq")
                  .values_list("outcome", "detail"))
    assert [e[0] for e in events] == [AuditEvent.Outcome.DENIED, AuditEvent.Outcome.SUCCEEDED]
    assert all(e[1]["step_up"] and e[1]["method"] == "break_glass" for e in events)


def test_a_token_call_has_no_sign_in_to_step_up(api_client, admin):
    from rest_framework.test import APIRequestFactory, force_authenticate  # noqa: F401
    request = RequestFactory().post("/api/v1/x/")
    request.user = admin
    request.session = {}
    ensure_recent_sign_in(request, operation="key.purge")


def test_purging_a_key_needs_a_recent_sign_in(client, settings, admin, hsm, key_name):
    """The purge page and the purge API (a browser session) refuse an old sign-in: the page
    goes to re-authenticate and comes back, the key is still there, nothing is audited."""
    from keys_app import services
    from tests.keys_app.test_object_pages import make_key
    from tests.support.approvals import run_approved

    make_key(hsm, admin, key_name)
    run_approved(services.key_delete, hsm=hsm, name=key_name, actor=admin, request_id="r",
                 confirm_name=key_name)
    signed_in(client, admin, settings.PORTAL_STEP_UP_SECONDS + 5)
    deleted = f"/hsms/{hsm.name}/deleted-keys/"
    response = client.post(f"{deleted}{key_name}/purge/", {"confirm_name": key_name},
                           HTTP_REFERER=f"http://testserver{deleted}")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/?next=")
    assert "deleted-keys" in response["Location"]
    api = client.post(f"/api/v1/hsms/{hsm.name}/deleted-keys/{key_name}/purge/",
                      {"confirm_name": key_name}, content_type="application/json")
    assert api.status_code == 401 and api.json()["error"]["code"] == "step_up_required"
    asked = AuditEvent.objects.filter(action="approval.request", detail__operation="key.purge")
    assert not asked.exists() and not AuditEvent.objects.filter(action="key.purge").exists()
    # Signed in again: the same purge goes through (to its approvers: maker-checker).
    client.post("/accounts/reauthenticate/", {"password": PASSWORD, "next": deleted})
    done = client.post(f"{deleted}{key_name}/purge/", {"confirm_name": key_name})
    assert done.status_code == 302 and "reauthenticate" not in done["Location"]
    assert asked.exists()
