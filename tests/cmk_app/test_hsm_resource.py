"""The HSM's Azure resource through the portal, verified with azure-mgmt-keyvault: a replica
added and removed, public network access toggled and a private endpoint connection approved
(both after another person's approval), each audited; detach and switch need approval."""

import pytest

from cmk_app import services
from cmk_app.models import CmkBinding
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.errors import BadInput
from tests.support.approvals import approve_and_run
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db


def outcomes(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq")
                .values_list("outcome", flat=True))


def test_replica_region_added_and_removed(hsm, admin, sdk, emulator, api_as):
    group = emulator.endpoints["resource_group"]
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/resource/replicas/",
                                  {"region": "northeurope"}, format="json")
    assert response.status_code == 202, response.content
    assert "northeurope" in [r["name"] for r in response.json()["regions"]]

    def states():
        return {r.name: r.provisioning_state for r in
                sdk["keyvault"].mhsm_regions.list_by_resource(group, hsm.name)}

    wait_for(lambda: states().get("northeurope") == "Succeeded", timeout=15)
    assert outcomes("hsm.replica_add") == ["intent", "succeeded"]
    with pytest.raises(BadInput, match="primary region"):
        services.hsm_replica_remove(hsm=hsm, region="westeurope", actor=admin, request_id="r")
    response = api_as(admin).delete(f"/api/v1/hsms/{hsm.name}/resource/replicas/northeurope/")
    assert response.status_code == 202, response.content
    wait_for(lambda: "northeurope" not in states(), timeout=15)
    assert outcomes("hsm.replica_remove") == ["intent", "succeeded"]


def test_public_network_access_toggled_with_approval(secondary_hsm, admin, sdk, emulator, api_as):
    group = emulator.endpoints["resource_group"]

    def now():
        return sdk["keyvault"].managed_hsms.get(group, "secondary").properties.public_network_access

    assert now() == "Enabled"
    response = api_as(admin).patch(f"/api/v1/hsms/{secondary_hsm.name}/resource/",
                                   {"public_network_access": "Disabled",
                                    "justification": "private endpoint only"}, format="json")
    assert response.status_code == 202 and now() == "Enabled"  # waits for approval
    approve_and_run(response)
    assert now() == "Disabled"
    event = AuditEvent.objects.filter(action="hsm.public_network_access").order_by("seq").last()
    assert event.outcome == "succeeded" and event.detail["now"] == "Disabled"
    approve_and_run(services.hsm_network_access_set(hsm=secondary_hsm, enabled=True, actor=admin,
                                                    request_id="r"))
    assert now() == "Enabled"


def test_private_endpoint_connection_approved_with_approval(hsm, admin, sdk, emulator, api_as):
    group = emulator.endpoints["resource_group"]
    pending = [c for c in sdk["keyvault"].mhsm_private_endpoint_connections.list_by_resource(
        group, hsm.name) if c.properties.private_link_service_connection_state.status == "Pending"]
    assert pending, "the emulator seeds one pending connection per HSM"
    name = pending[0].name
    response = api_as(admin).post(
        f"/api/v1/hsms/{hsm.name}/resource/private-endpoint-connections/{name}/",
        {"status": "Approved", "description": "payments VNet"}, format="json")
    assert response.status_code == 202
    approve_and_run(response)
    got = sdk["keyvault"].mhsm_private_endpoint_connections.get(group, hsm.name, name)
    assert got.properties.private_link_service_connection_state.status == "Approved"
    assert outcomes("hsm.private_endpoint")[-2:] == ["intent", "succeeded"]
    page = api_as(admin).get(f"/api/v1/hsms/{hsm.name}/resource/").json()
    assert {"name": name, "status": "Approved"}.items() <= next(
        c for c in page["private_endpoint_connections"] if c["name"] == name).items()


def test_resource_api_permissions(hsm, auditor, outsider, api_as):
    assert api_as(auditor).get(f"/api/v1/hsms/{hsm.name}/resource/").status_code == 200
    assert api_as(auditor).patch(f"/api/v1/hsms/{hsm.name}/resource/",
                                 {"public_network_access": "Disabled"},
                                 format="json").status_code == 403
    assert api_as(outsider).get("/api/v1/cmk-bindings/").status_code == 403
    bad = api_as(auditor).get("/api/v1/hsms/nope/resource/")
    assert bad.status_code == 404 and "error" in bad.json()


def test_detach_needs_approval_and_removes_what_the_wizard_made(
        hsm, admin, cmk_key, storage_account, sdk, django_capture_on_commit_callbacks, api_as):
    from tests.cmk_app.test_attach import attach, wizard_identity
    from tests.cmk_app.conftest import GROUP, assignments_for

    job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                 resource_id=storage_account.id, actor=admin)
    assert job.status == "succeeded", job.error
    binding = CmkBinding.objects.get(resource_id=storage_account.id)
    principal = binding.identity_principal_id
    response = api_as(admin).post(f"/api/v1/cmk-bindings/{binding.pk}/detach/",
                                  {"justification": "moving to another key"}, format="json")
    assert response.status_code == 202
    assert sdk["storage"].storage_accounts.get_properties(
        GROUP, storage_account.name).encryption.key_source == "Microsoft.Keyvault"
    approve_and_run(response)
    after = sdk["storage"].storage_accounts.get_properties(GROUP, storage_account.name)
    assert after.encryption.key_source == "Microsoft.Storage"
    assert wizard_identity(sdk, storage_account.name) is None
    assert assignments_for(sdk, principal) == []
    binding.refresh_from_db()
    assert binding.status == "detached"
    assert outcomes("cmk.detach")[-2:] == ["intent", "succeeded"]


def test_switching_a_resource_to_another_key_needs_approval(
        hsm, admin, cmk_key, key_name, storage_account, sdk, django_capture_on_commit_callbacks):
    from keys_app import services as key_services
    from keys_app.spec import spec_build
    from tests.cmk_app.test_attach import attach

    assert attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                  resource_id=storage_account.id, actor=admin).status == "succeeded"
    other = key_services.key_create(hsm=hsm, spec=spec_build(
        name=key_name + "n", kty="RSA-HSM", key_size=2048, tags={"owner": "payments"},
        key_ops=["wrapKey", "unwrapKey"]), actor=admin, request_id="r")
    pending = services.cmk_attach_start(hsm=hsm, key_name=other.name,
                                        resource_id=storage_account.id, actor=admin,
                                        request_id="r")
    assert isinstance(pending, ApprovalRequest) and pending.operation == "cmk.switch"
    assert pending.context["from_key"] == cmk_key.name
    # Approved: the same wizard runs for the new key (its job, run here as a worker would).
    from cmk_app import tasks
    from portal.jobs.models import Job
    from tests.cmk_app.conftest import GROUP

    with django_capture_on_commit_callbacks(execute=False):
        approve_and_run(pending)
    job = Job.objects.filter(kind="cmk.attach", params__key_name=other.name).get()
    tasks.cmk_attach_run.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    kv = sdk["storage"].storage_accounts.get_properties(
        GROUP, storage_account.name).encryption.key_vault_properties
    assert kv.key_name == other.name
    assert CmkBinding.objects.get(resource_id=storage_account.id).key_name == other.name


def test_purge_protection_turned_on_with_approval(db, admin, sdk, emulator, azure_settings, api_as):
    from portal.gateway.models import HsmInstance

    spare = HsmInstance.objects.create(name="spare", uri=emulator.endpoints["hsms"]["spare"],
                                       arm_resource_id=emulator.endpoints["hsm_resource_ids"]["spare"])
    group = emulator.endpoints["resource_group"]
    response = api_as(admin).post(f"/api/v1/hsms/{spare.name}/resource/purge-protection/",
                                  {"justification": "CMK for payments"}, format="json")
    assert response.status_code == 202
    assert not sdk["keyvault"].managed_hsms.get(group, "spare").properties.enable_purge_protection
    approve_and_run(response)
    assert sdk["keyvault"].managed_hsms.get(group, "spare").properties.enable_purge_protection
    assert outcomes("hsm.purge_protection") == ["intent", "succeeded"]
    again = api_as(admin).post(f"/api/v1/hsms/{spare.name}/resource/purge-protection/", {},
                               format="json")
    assert again.status_code == 400 and "already on" in again.json()["error"]["message"]
