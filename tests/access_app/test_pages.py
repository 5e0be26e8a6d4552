"""The local RBAC pages in the console shell, for each role; a directory failure never breaks
them; the request form carries bounds and step-up; approvers see the change in context."""
import uuid

import pytest
from django.urls import reverse

from access_app import services
from access_app.models import AccessRequest
from portal.gateway import directory
from tests.access_app.conftest import DEFINITION_PREFIX, ROLE_IDS
from tests.support.sessions import signed_in


@pytest.fixture
def key(hsm, admin, key_name):
    from keys_app import services as key_services
    from keys_app.spec import spec_from_request

    return key_services.key_create(hsm=hsm, spec=spec_from_request(
        {"name": key_name, "preset": "cmk-wrapping", "tags": {"owner": "payments"}}),
        actor=admin, request_id="k")


def test_hsm_access_tab_shows_assignments_and_drift(client, admin, synced, sdk_access, principal):
    made = sdk_access.create_role_assignment("/keys", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                             principal["object_id"])
    services.rbac_sync(hsm=synced)
    page = signed_in(client, admin).get(reverse("access:hsm-access", kwargs={"hsm_id": synced.name}))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'aria-current="page">Access</a>' in html
    drift = html[html.index('id="drift"'):html.index("<h3>Role assignments</h3>")]
    assert principal["object_id"] in drift
    assert 'title="Made outside the portal">Drift</span>' in drift
    assert principal["display_name"] in html  # the directory names it
    detail = client.get(reverse("access:assignment-detail",
                                kwargs={"hsm_id": synced.name, "assignment": made.name}))
    assert detail.status_code == 200 and b"Adopt into a request" in detail.content
    assert b"Revoke (needs approval)" in detail.content


def test_key_access_tab_answers_who_can_unwrap(client, admin, approver, hsm, key, sdk_access,
                                               principal):
    sdk_access.create_role_assignment(f"/keys/{key.name}", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                      principal["object_id"])
    services.rbac_sync(hsm=hsm)
    page = signed_in(client, approver).get(reverse("access:key-access",
                                                    kwargs={"hsm_id": hsm.name, "name": key.name}))
    assert page.status_code == 200
    html = page.content.decode()
    unwrappers = html[html.index('id="unwrappers"'):html.index('id="effective-access"')]
    assert principal["object_id"] in unwrappers and f"/keys/{key.name}" in unwrappers


def test_directory_failure_shows_object_ids(client, admin, synced, settings):
    from portal import gateway

    settings.AZURE_GRAPH_URL = "https://127.0.0.1:9/"
    gateway.reset_clients()
    directory.clear_cache()
    page = signed_in(client, admin).get(reverse("access:hsm-access", kwargs={"hsm_id": synced.name}))
    assert page.status_code == 200 and b"Unknown in the directory" in page.content
    directory.clear_cache()


def test_role_pages(client, admin, auditor, synced):
    signed_in(client, admin)
    listing = client.get(reverse("access:role-list", kwargs={"hsm_id": synced.name}))
    assert listing.status_code == 200 and b"Managed HSM Crypto User" in listing.content
    builtin = client.get(reverse("access:role-detail", kwargs={"hsm_id": synced.name,
                                                               "role": ROLE_IDS["Crypto User"]}))
    assert builtin.status_code == 200 and b"Built-in (read-only)" in builtin.content
    assert b'id="role-form"' not in builtin.content
    created = client.post(reverse("access:role-create", kwargs={"hsm_id": synced.name}), {
        "role_name": f"page role {uuid.uuid4().hex[:6]}",
        "data_actions": ["Microsoft.KeyVault/managedHsm/keys/unwrap/action"]})
    assert created.status_code == 302
    refused = client.post(reverse("access:role-create", kwargs={"hsm_id": synced.name}),
                          {"role_name": "nothing picked"})
    assert refused.status_code == 400 and b"This field is required" in refused.content
    # The custom role's page updates it, and shows its form again (400) when input is wrong.
    renamed = f"page role {uuid.uuid4().hex[:6]}"
    updated = client.post(created.url, {"role_name": renamed, "data_actions": [
        "Microsoft.KeyVault/managedHsm/keys/unwrap/action"]}, follow=True)
    assert updated.status_code == 200 and f"Updated role {renamed}.".encode() in updated.content
    kept = client.post(created.url, {"role_name": "nothing picked"})
    assert kept.status_code == 400 and b"This field is required" in kept.content
    assert renamed.encode() in kept.content
    client.force_login(auditor)
    assert client.get(reverse("access:role-create", kwargs={"hsm_id": synced.name})).status_code == 403


def test_request_form_grants_through_approval(client, admin, synced, principal):
    signed_in(client, admin)
    url = reverse("access:request-create")
    form = client.get(url, {"hsm": synced.name, "scope": "/keys/k-form"})
    assert form.status_code == 200 and b'value="/keys/k-form"' in form.content
    too_long = client.post(url, {"hsm": synced.name, "role": ROLE_IDS["Crypto User"],
                                 "scope": "/keys/k-form", "principal_id": principal["object_id"],
                                 "duration_hours": "9999", "justification": "A good reason here."})
    assert too_long.status_code == 400 and b"less than or equal to 72" in too_long.content
    sent = client.post(url, {"hsm": synced.name, "role": ROLE_IDS["Crypto User"],
                             "scope": "/keys/k-form", "principal_id": principal["object_id"],
                             "duration_hours": "4", "justification": "A good reason here."})
    access_request = AccessRequest.objects.get()
    assert sent.status_code == 302 and sent["Location"] == access_request.get_absolute_url()
    detail = client.get(sent["Location"])
    assert detail.status_code == 200 and b"Waiting for approval" in detail.content
    approval = client.get(reverse("approvals:request-detail",
                                  kwargs={"approval_id": access_request.approval_request_id}))
    assert approval.status_code == 200
    html = approval.content.decode()
    assert "Grant Managed HSM Crypto User at /keys/k-form" in html and principal["object_id"] in html


def test_stale_sign_in_is_sent_to_reauthenticate_for_root(client, admin, synced, principal,
                                                          settings):
    signed_in(client, admin, seconds_ago=settings.PORTAL_STEP_UP_SECONDS + 60)
    response = client.post(reverse("access:request-create"), {
        "hsm": synced.name, "role": ROLE_IDS["Crypto User"], "scope": "/",
        "principal_id": principal["object_id"], "duration_hours": "4",
        "justification": "A good reason here."})
    assert response.status_code == 302 and "reauthenticate" in response["Location"]
    assert not AccessRequest.objects.exists()


def test_request_list_and_review_pages_for_each_role(client, personas, synced):
    for role in ("admin", "approver", "auditor"):
        client.force_login(personas[role])
        assert client.get(reverse("access:request-list")).status_code == 200
        assert client.get(reverse("access:campaign-list")).status_code == 200
    client.force_login(personas["outsider"])
    assert client.get(reverse("access:request-list")).status_code == 403


def test_campaign_pages_and_evidence(client, admin, synced):
    signed_in(client, admin)
    started = client.post(reverse("access:campaign-list"),
                          {"hsm": synced.name, "name": "Page review", "days": "3"})
    assert started.status_code == 302
    page = client.get(started["Location"])
    assert page.status_code == 200 and b"Keep" in page.content
    campaign_id = int(started["Location"].rstrip("/").rsplit("/", 1)[-1])
    evidence = client.get(reverse("access:campaign-evidence", kwargs={"campaign_id": campaign_id}))
    assert evidence.status_code == 200 and evidence.json()["campaign"]["name"] == "Page review"
    bad = client.post(reverse("access:campaign-list"), {"hsm": synced.name, "name": "x", "days": "0"})
    assert bad.status_code == 400


def test_the_request_form_finds_principals_in_the_directory(client, admin, synced, principal):
    signed_in(client, admin)
    page = client.get(reverse("access:request-create"),
                      {"hsm": synced.name, "scope": "/keys/k-find", "q": principal["display_name"]})
    assert page.status_code == 200
    html = page.content.decode()
    results = html[html.index('id="principal-results"'):]
    assert principal["object_id"] in results and f"principal_id={principal['object_id']}" in results
    picked = client.get(reverse("access:request-create"),
                        {"hsm": synced.name, "scope": "/keys/k-find",
                         "principal_id": principal["object_id"]})
    assert f'value="{principal["object_id"]}"' in picked.content.decode()
    unsafe = client.get(reverse("access:request-create"), {"q": "<script>"})
    assert unsafe.status_code == 200 and b"A directory search may use" in unsafe.content
