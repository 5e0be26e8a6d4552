"""Sync from the HSM: drift made directly with the SDK, adopt and revoke (with approval);
custom role definitions through the portal, checked with the SDK; effective access."""
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError

from access_app import selectors, services
from access_app.models import AccessRequest, RoleAssignmentRecord, RoleDefinitionRecord
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.errors import BadInput, Conflict
from portal.gateway import directory
from tests.access_app.conftest import DEFINITION_PREFIX, ROLE_IDS, approve_and_run, \
    hsm_assignments

UNWRAP = "Microsoft.KeyVault/managedHsm/keys/unwrap/action"


def test_a_grant_made_with_the_sdk_is_drift(hsm, sdk_access, principal):
    made = sdk_access.create_role_assignment("/keys/k-drift", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                             principal["object_id"])
    counts = services.rbac_sync(hsm=hsm)
    assert counts["drift_new"] >= 1
    row = RoleAssignmentRecord.objects.get(hsm=hsm, name=made.name)
    assert row.drift and row.role_name == "Managed HSM Crypto User" and row.scope == "/keys/k-drift"
    event = AuditEvent.objects.get(action="role_assignment.drift", detail__assignment=made.name)
    assert event.outcome == "recorded" and event.detail["finding"] == "made outside the portal"
    # A second sync finds nothing new.
    assert services.rbac_sync(hsm=hsm)["drift_new"] == 0
    # Removed outside the portal: the next sync notices and says so.
    sdk_access.delete_role_assignment("/keys/k-drift", made.name)
    assert services.rbac_sync(hsm=hsm)["removed_outside"] >= 1
    row.refresh_from_db()
    assert row.removed_at is not None
    assert AuditEvent.objects.filter(action="role_assignment.drift", detail__assignment=made.name,
                                     detail__finding="removed outside the portal").count() == 1


def test_the_portals_own_access_is_not_drift_and_cannot_be_revoked(hsm, emulator, admin):
    services._self_ids.clear()
    services.rbac_sync(hsm=hsm)
    own = emulator.endpoints["principals"]["bootstrap-admin"]["object_id"]
    rows = list(selectors.role_assignments(hsm=hsm, principal_id=own))
    assert len(rows) >= 3 and {r.origin for r in rows} == {"self"}
    assert not selectors.role_assignments(hsm=hsm, principal_id=own, drift_only=True).exists()
    with pytest.raises(Conflict) as info:
        services.role_assignment_revoke_request(hsm=hsm, name=rows[0].name, actor=admin,
                                                request_id="self")
    assert info.value.code == "portal_identity"
    assert not ApprovalRequest.objects.exists()
    campaign = services.campaign_start(hsm=hsm, name="No self", days=1, actor=admin,
                                       request_id="c")
    assert not campaign.items.filter(principal_id=own).exists()


def test_when_the_directory_cannot_say_the_portals_access_shows_as_drift(hsm, settings):
    from portal import gateway

    services._self_ids.clear()
    settings.AZURE_GRAPH_URL = "https://127.0.0.1:9/"
    gateway.reset_clients()
    services.rbac_sync(hsm=hsm)
    assert selectors.role_assignments(hsm=hsm, scope="/", drift_only=True).count() >= 3
    services._self_ids.clear()


def test_revoke_drift_needs_approval(hsm, admin, approver, sdk_access, principal):
    made = sdk_access.create_role_assignment("/", DEFINITION_PREFIX + ROLE_IDS["Crypto Auditor"],
                                             principal["object_id"])
    services.rbac_sync(hsm=hsm)
    pending = services.role_assignment_revoke_request(hsm=hsm, name=made.name, actor=admin,
                                                      request_id="rv-1")
    assert isinstance(pending, ApprovalRequest) and pending.operation == "role_assignment.delete"
    assert len(hsm_assignments(sdk_access, principal["object_id"])) == 1  # still there
    approval = approve_and_run(pending, approver)
    assert approval.status == "executed", approval.failure_reason
    assert hsm_assignments(sdk_access, principal["object_id"]) == []
    assert RoleAssignmentRecord.objects.get(name=made.name).removed_at is not None


def test_adopt_drift_into_a_request(hsm, admin, approver, sdk_access, principal):
    made = sdk_access.create_role_assignment("/keys/k-adopt", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                             principal["object_id"])
    services.rbac_sync(hsm=hsm)
    access_request, pending = services.drift_adopt(
        hsm=hsm, name=made.name, justification="Owned by the payments team since 2024.",
        duration_hours=8, actor=admin, request_id="adopt-1")
    assert access_request.kind == "adopt" and access_request.assignment_name == made.name
    with pytest.raises(Conflict):
        services.drift_adopt(hsm=hsm, name=made.name, justification="Again, the same one.",
                             duration_hours=8, actor=admin, request_id="adopt-2")
    approve_and_run(pending, approver)
    access_request.refresh_from_db()
    assert access_request.status == "active" and access_request.expires_at is not None
    row = RoleAssignmentRecord.objects.get(name=made.name)
    assert row.origin == "adopted" and not row.drift and row.access_request_id == access_request.pk
    assert [a.name for a in hsm_assignments(sdk_access, principal["object_id"])] == [made.name]


def test_custom_role_definition_lifecycle(synced, admin, sdk_access):
    record = services.role_definition_save(
        hsm=synced, name=None, role_name=f"Unwrap only {uuid.uuid4().hex[:6]}",
        description="Unwrap and read", data_actions=[UNWRAP, "Microsoft.KeyVault/managedHsm/keys/read/action"],
        actor=admin, request_id="rd-1")
    on_hsm = sdk_access.get_role_definition("/", record.name)
    assert on_hsm.role_type == "CustomRole" and UNWRAP in on_hsm.permissions[0].data_actions
    updated = services.role_definition_save(
        hsm=synced, name=record.name, role_name=record.role_name, description="",
        data_actions=[UNWRAP], actor=admin, request_id="rd-2")
    assert updated.data_actions == [UNWRAP]
    assert list(sdk_access.get_role_definition("/", record.name).permissions[0].data_actions) == [UNWRAP]
    with pytest.raises(BadInput):
        services.role_definition_delete(hsm=synced, name=record.name, confirm_name="nope",
                                        actor=admin, request_id="rd-3")
    services.role_definition_delete(hsm=synced, name=record.name, confirm_name=record.role_name,
                                    actor=admin, request_id="rd-4")
    with pytest.raises(ResourceNotFoundError):
        sdk_access.get_role_definition("/", record.name)
    assert not RoleDefinitionRecord.objects.filter(name=record.name).exists()
    actions = list(AuditEvent.objects.filter(target=f"hsm:{synced.name}/role:{record.name}").order_by("seq")
                   .values_list("action", "outcome"))
    assert actions == [("role_definition.create", "intent"), ("role_definition.create", "succeeded"),
                       ("role_definition.update", "intent"), ("role_definition.update", "succeeded"),
                       ("role_definition.delete", "intent"), ("role_definition.delete", "succeeded")]


@pytest.mark.parametrize("kwargs,code", [
    ({"data_actions": ["Microsoft.KeyVault/managedHsm/keys/fly/action"]}, "bad_data_action"),
    ({"data_actions": []}, "no_data_actions"),
    ({"role_name": ""}, "bad_role_name"),
])
def test_role_definition_input_is_checked(synced, admin, kwargs, code):
    base = {"role_name": "x", "data_actions": [UNWRAP]}
    with pytest.raises(BadInput) as info:
        services.role_definition_save(hsm=synced, name=None, actor=admin, request_id="r",
                                      **{**base, **kwargs})
    assert info.value.code == code


def test_built_in_roles_cannot_be_changed(synced, admin):
    with pytest.raises(BadInput) as info:
        services.role_definition_save(hsm=synced, name=ROLE_IDS["Crypto User"], role_name="x",
                                      data_actions=[UNWRAP], actor=admin, request_id="r")
    assert info.value.code == "builtin_role"


def test_effective_access_merges_three_scopes(hsm, sdk_access, emulator):
    a, b, c, other = (emulator.create_principal(f"eff-{i}-{uuid.uuid4().hex[:4]}") for i in range(4))
    sdk_access.create_role_assignment("/keys", DEFINITION_PREFIX + ROLE_IDS["Crypto User"], a["object_id"])
    sdk_access.create_role_assignment("/keys/k-eff", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                      b["object_id"])
    sdk_access.create_role_assignment("/", DEFINITION_PREFIX + ROLE_IDS["Crypto Auditor"], c["object_id"])
    sdk_access.create_role_assignment("/keys/k-other", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                      other["object_id"])
    services.rbac_sync(hsm=hsm)
    rows = {r.assignment.principal_id: r for r in selectors.effective_access(hsm=hsm, key_name="k-eff")}
    assert rows[a["object_id"]].can_unwrap and rows[b["object_id"]].can_unwrap
    assert not rows[c["object_id"]].can_unwrap  # an auditor reads, never unwraps
    assert other["object_id"] not in rows
    assert rows[b["object_id"]].since is not None


def test_directory_names_principals_and_failure_shows_ids(hsm, sdk_access, principal, settings):
    sdk_access.create_role_assignment("/keys/k-named", DEFINITION_PREFIX + ROLE_IDS["Crypto User"],
                                      principal["object_id"])
    services.rbac_sync(hsm=hsm)
    directory.clear_cache()
    names = selectors.principal_names([principal["object_id"]])
    assert names.get(principal["object_id"].lower()) == principal["display_name"]
    directory.clear_cache()
    settings.AZURE_GRAPH_URL = "https://127.0.0.1:9/"  # nothing listens: the page still works
    from portal import gateway

    gateway.reset_clients()
    assert selectors.principal_names([principal["object_id"]]) == {}
    directory.clear_cache()


def test_unknown_role_assignment_refused(synced, admin):
    from portal.errors import NotFound

    with pytest.raises(NotFound):
        services.role_assignment_revoke_request(hsm=synced, name=str(uuid.uuid4()), actor=admin,
                                                request_id="x")
    assert not AccessRequest.objects.exists()
