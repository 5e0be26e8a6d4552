"""The REST doors of local RBAC: every CLI verb, 202 for grants and revocations, bounded
input as error envelopes, permissions per role, step-up at scope /, and the OpenAPI schema."""
import uuid

import pytest

from access_app.models import AccessRequest, RoleAssignmentRecord
from tests.access_app.conftest import DEFINITION_PREFIX, ROLE_IDS, approve_and_run, \
    hsm_assignments
from tests.support.sessions import signed_in

UNWRAP = "Microsoft.KeyVault/managedHsm/keys/unwrap/action"


def _grant_body(principal, scope="/keys/k-api", **more):
    return {"principal_id": principal["object_id"], "role": "Managed HSM Crypto User",
            "scope": scope, "justification": "Batch job unwraps the data key.",
            "ticket": "INC-42", "duration_hours": 4, **more}


def test_role_definition_verbs(api_as, admin, synced, sdk_access):
    api = api_as(admin)
    listed = api.get(f"/api/v1/hsms/{synced.name}/role-definitions/")
    assert listed.status_code == 200
    assert "Managed HSM Crypto User" in {d["role_name"] for d in listed.json()}
    created = api.post(f"/api/v1/hsms/{synced.name}/role-definitions/", {
        "role_name": f"api role {uuid.uuid4().hex[:6]}", "data_actions": [UNWRAP]}, format="json")
    assert created.status_code == 201, created.json()
    name = created.json()["name"]
    assert sdk_access.get_role_definition("/", name).role_name == created.json()["role_name"]
    shown = api.get(f"/api/v1/hsms/{synced.name}/role-definitions/{name}/")
    assert shown.json()["permissions"][0]["data_actions"] == [UNWRAP]
    updated = api.put(f"/api/v1/hsms/{synced.name}/role-definitions/{name}/", {
        "role_name": created.json()["role_name"], "description": "now described",
        "data_actions": [UNWRAP]}, format="json")
    assert updated.status_code == 200 and updated.json()["description"] == "now described"
    refused = api.delete(f"/api/v1/hsms/{synced.name}/role-definitions/{name}/",
                         {"confirm_name": "wrong"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "confirmation_required"
    deleted = api.delete(f"/api/v1/hsms/{synced.name}/role-definitions/{name}/",
                         {"confirm_name": created.json()["role_name"]}, format="json")
    assert deleted.status_code == 204


def test_unknown_data_action_is_a_field_error(api_as, admin, synced):
    response = api_as(admin).post(f"/api/v1/hsms/{synced.name}/role-definitions/", {
        "role_name": "x", "data_actions": ["Microsoft.KeyVault/managedHsm/keys/fly/action"]},
        format="json")
    assert response.status_code == 400
    assert "data_actions.0" in response.json()["error"]["fields"]


def test_role_assignment_create_is_a_request_that_waits(api_as, admin, approver, synced,
                                                        principal, sdk_access):
    response = api_as(admin).post(f"/api/v1/hsms/{synced.name}/role-assignments/",
                                  _grant_body(principal), format="json")
    assert response.status_code == 202, response.json()
    approval = response.json()["approval_request"]
    assert approval["operation"] == "role_assignment.create" and approval["status"] == "pending"
    assert hsm_assignments(sdk_access, principal["object_id"]) == []
    from portal.approvals.models import ApprovalRequest

    approve_and_run(ApprovalRequest.objects.get(pk=approval["id"]), approver)
    access_request = AccessRequest.objects.get(approval_request_id=approval["id"])
    shown = api_as(approver).get(f"/api/v1/access-requests/{access_request.pk}/")
    assert shown.json()["status"] == "active" and shown.json()["expires_at"]
    listed = api_as(approver).get(f"/api/v1/hsms/{synced.name}/role-assignments/",
                                  {"scope": "/keys/k-api", "principal_id": principal["object_id"]})
    assert [a["name"] for a in listed.json()] == [access_request.assignment_name]
    assert listed.json()[0]["drift"] is False and listed.json()[0]["expires_at"]
    one = api_as(approver).get(f"/api/v1/hsms/{synced.name}/role-assignments/"
                               f"{access_request.assignment_name}/")
    assert one.json()["role_name"] == "Managed HSM Crypto User"
    effective = api_as(approver).get(f"/api/v1/hsms/{synced.name}/keys/k-api/effective-access/")
    assert effective.status_code in (200, 404)  # 404: the key is not in the inventory


def test_role_assignment_delete_waits_for_approval(api_as, admin, hsm, sdk_access, principal):
    made = sdk_access.create_role_assignment("/", DEFINITION_PREFIX + ROLE_IDS["Crypto Auditor"],
                                             principal["object_id"])
    api = api_as(admin)
    synced = api.post(f"/api/v1/hsms/{hsm.name}/role-assignments/sync/")
    assert synced.status_code == 200 and synced.json()["drift_new"] >= 1
    from portal.audit.models import AuditEvent

    assert AuditEvent.objects.get(action="rbac.sync").detail["assignments"] == \
        synced.json()["assignments"]
    drift = api.get(f"/api/v1/hsms/{hsm.name}/role-assignments/", {"drift": "true"}).json()
    assert made.name in {a["name"] for a in drift}
    response = api.delete(f"/api/v1/hsms/{hsm.name}/role-assignments/{made.name}/",
                          {"justification": "Nobody asked for this."}, format="json")
    assert response.status_code == 202
    assert response.json()["approval_request"]["operation"] == "role_assignment.delete"
    assert len(hsm_assignments(sdk_access, principal["object_id"])) == 1


@pytest.mark.parametrize("change,field", [
    ({"duration_hours": 100000}, "duration_hours"), ({"duration_hours": 0}, "duration_hours"),
    ({"duration_hours": 73}, "duration_hours"), ({"scope": "/certificates"}, "scope"),
    ({"principal_id": "x" * 65}, "principal_id"), ({"justification": ""}, "justification"),
])
def test_bounded_input_answers_400_sentences(api_as, admin, synced, principal, change, field):
    response = api_as(admin).post(f"/api/v1/hsms/{synced.name}/role-assignments/",
                                  _grant_body(principal, **change), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"] and error["message"] and error["request_id"]
    assert not AccessRequest.objects.exists()


def test_roles_may_read_but_only_admins_grant(api_as, approver, auditor, outsider, synced,
                                              principal):
    for person in (approver, auditor):
        api = api_as(person)
        assert api.get(f"/api/v1/hsms/{synced.name}/role-assignments/").status_code == 200
        assert api.get("/api/v1/access-requests/").status_code == 200
        assert api.post(f"/api/v1/hsms/{synced.name}/role-assignments/", _grant_body(principal),
                        format="json").status_code == 403
        assert api.post(f"/api/v1/hsms/{synced.name}/role-definitions/",
                        {"role_name": "x", "data_actions": [UNWRAP]},
                        format="json").status_code == 403
    assert api_as(outsider).get("/api/v1/access-requests/").status_code == 403


def test_a_grant_at_root_needs_a_recent_sign_in(client, admin, synced, principal, settings):
    signed_in(client, admin, seconds_ago=settings.PORTAL_STEP_UP_SECONDS + 60)
    url = f"/api/v1/hsms/{synced.name}/role-assignments/"
    stale = client.post(url, _grant_body(principal, scope="/"), content_type="application/json")
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "step_up_required"
    assert not AccessRequest.objects.exists()
    key_scope = client.post(url, _grant_body(principal), content_type="application/json")
    assert key_scope.status_code == 202  # only scope / needs the step-up
    signed_in(client)
    fresh = client.post(url, _grant_body(principal, scope="/"), content_type="application/json")
    assert fresh.status_code == 202


def test_access_requests_endpoint_and_adopt(api_as, admin, hsm, sdk_access, principal):
    made = sdk_access.create_role_assignment("/keys/k-adopt-api", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                             principal["object_id"])
    api = api_as(admin)
    api.post(f"/api/v1/hsms/{hsm.name}/role-assignments/sync/")
    adopted = api.post(f"/api/v1/hsms/{hsm.name}/role-assignments/{made.name}/adopt/", {
        "justification": "Existing batch access.", "duration_hours": 8}, format="json")
    assert adopted.status_code == 202
    created = api.post("/api/v1/access-requests/", {**_grant_body(principal), "hsm": hsm.name},
                       format="json")
    assert created.status_code == 202
    listed = api.get("/api/v1/access-requests/", {"status": "pending"}).json()
    assert {r["kind"] for r in listed} == {"adopt", "grant"}
    assert api.get("/api/v1/access-requests/", {"status": "bogus"}).status_code == 400
    assert RoleAssignmentRecord.objects.get(name=made.name).drift  # until approved


def test_access_review_api(api_as, admin, synced):
    api = api_as(admin)
    bad = api.post("/api/v1/access-reviews/", {"hsm": synced.name, "name": "Q", "days": 365},
                   format="json")
    assert bad.status_code == 400 and "days" in bad.json()["error"]["fields"]
    started = api.post("/api/v1/access-reviews/", {"hsm": synced.name, "name": "Q", "days": 7},
                       format="json")
    assert started.status_code == 201 and started.json()["items"]
    item = next(i for i in started.json()["items"] if i["owner"] == "HSM admins")
    answered = api.post(f"/api/v1/access-reviews/items/{item['id']}/answer/",
                        {"decision": "keep", "comment": "fine"}, format="json")
    assert answered.status_code == 200 and answered.json()["decision"] == "keep"
    again = api.post(f"/api/v1/access-reviews/items/{item['id']}/answer/",
                     {"decision": "keep"}, format="json")
    assert again.status_code == 409
    detail = api.get(f"/api/v1/access-reviews/{started.json()['id']}/").json()
    assert any(i["decision"] == "keep" for i in detail["items"])


def test_openapi_documents_the_local_rbac_paths(api_as, admin):
    schema = api_as(admin).get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    for path in ("/api/v1/hsms/{hsm_id}/role-definitions/", "/api/v1/hsms/{hsm_id}/role-assignments/",
                 "/api/v1/access-requests/", "/api/v1/hsms/{hsm_id}/role-assignments/{assignment}/"):
        assert path in paths, path
    post = paths["/api/v1/hsms/{hsm_id}/role-assignments/"]["post"]
    assert {"202", "400", "403"} <= set(post["responses"])
