"""Key usage: the beat scan finds which resources use which key and version; a key in use is
not disabled, deleted or purged without a pre-flight warning and approval; after a rotation
the old version stays enabled while a resource still uses it."""
import pytest

from cmk_app import services
from cmk_app.models import CmkBinding
from keys_app import services as key_services
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.errors import Conflict
from tests.cmk_app.conftest import GROUP, make_pg
from tests.support.approvals import approve_and_run

pytestmark = pytest.mark.django_db


def attach_outside_portal(sdk, hsm, account_name, key, version=""):
    """Point a storage account at the key with the SDK alone (as someone would by hand)."""
    from azure.mgmt.msi.models import Identity
    from azure.mgmt.storage import models

    identity = sdk["msi"].user_assigned_identities.create_or_update(
        GROUP, f"id-{account_name}", Identity(location="westeurope"))
    sdk["access"]["primary"].create_role_assignment(
        f"/keys/{key}", "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
        "33413926-3206-4cdd-b39a-83574fe37a17", identity.principal_id)
    sdk["storage"].storage_accounts.update(GROUP, account_name, models.StorageAccountUpdateParameters(
        identity=models.Identity(type="UserAssigned", user_assigned_identities={
            identity.id: models.UserAssignedIdentity()}),
        encryption=models.Encryption(
            key_source="Microsoft.Keyvault", key_vault_properties=models.KeyVaultProperties(
                key_name=key, key_vault_uri=hsm.uri.rstrip("/") + "/", key_version=version),
            encryption_identity=models.EncryptionIdentity(
                encryption_user_assigned_identity=identity.id))))
    return identity


def test_beat_scan_finds_usage_and_follows_rotation(hsm, admin, cmk_key, storage_account, sdk):
    attach_outside_portal(sdk, hsm, storage_account.name, cmk_key.name)
    counts = services.cmk_usage_scan()
    assert counts["found"] >= 1 and counts["errors"] == 0
    row = CmkBinding.objects.get(resource_id__iexact=storage_account.id)
    assert (row.origin, row.status, row.key_name, row.versionless, row.version_in_use) == (
        "scan", "active", cmk_key.name, True, cmk_key.version)
    found = AuditEvent.objects.get(action="cmk.usage_found", target__endswith=storage_account.name)
    assert found.outcome == "recorded"
    rotated = key_services.key_rotate(hsm=hsm, name=cmk_key.name, actor=admin, request_id="r")
    services.cmk_usage_scan()
    row.refresh_from_db()
    assert row.version_in_use == rotated.version != cmk_key.version
    # The old version may now be disabled: nothing uses it.
    key_services.key_version_enabled_set(hsm=hsm, name=cmk_key.name, version=cmk_key.version,
                                         enabled=False, actor=admin, request_id="r",
                                         confirm_name=cmk_key.name)


def test_beat_scan_notices_a_use_that_ended(hsm, admin, cmk_key, storage_account, sdk):
    from azure.mgmt.storage import models

    attach_outside_portal(sdk, hsm, storage_account.name, cmk_key.name)
    services.cmk_usage_scan()
    sdk["storage"].storage_accounts.update(GROUP, storage_account.name, models.StorageAccountUpdateParameters(
        encryption=models.Encryption(key_source="Microsoft.Storage")))
    assert services.cmk_usage_scan()["gone"] >= 1
    assert CmkBinding.objects.get(resource_id__iexact=storage_account.id).status == "detached"


def test_a_pinned_version_is_kept_enabled_after_rotation(hsm, admin, cmk_key, storage_account,
                                                          sdk):
    attach_outside_portal(sdk, hsm, storage_account.name, cmk_key.name, version=cmk_key.version)
    services.cmk_usage_scan()
    key_services.key_rotate(hsm=hsm, name=cmk_key.name, actor=admin, request_id="r")
    with pytest.raises(Conflict, match=f"{storage_account.name} is pinned to it"):
        key_services.key_version_enabled_set(hsm=hsm, name=cmk_key.name, version=cmk_key.version,
                                             enabled=False, actor=admin, request_id="r",
                                             confirm_name=cmk_key.name)
    assert sdk["keys"].get_key(cmk_key.name, cmk_key.version).properties.enabled is True


def test_deleting_a_key_in_use_warns_and_needs_approval(hsm, admin, cmk_key, sdk, api_as):
    server = make_pg(sdk)
    CmkBinding.objects.create(hsm=hsm, key_name=cmk_key.name, resource_id=server.id,
                              kind="postgresql", resource_name=server.name, status="active",
                              version_in_use=cmk_key.version)
    response = api_as(admin).delete(f"/api/v1/hsms/{hsm.name}/keys/{cmk_key.name}/",
                                    {"confirm_name": cmk_key.name, "justification": "retire"},
                                    format="json")
    assert response.status_code == 202, response.content
    request = response.json()["approval_request"]
    assert request["operation"] == "key.delete"
    assert request["context"]["dependents"][0]["name"] == server.name
    assert server.name in request["context"]["warning"]
    assert sdk["keys"].get_key(cmk_key.name).properties.enabled  # nothing done yet
    # The confirmation page shows the same warning.
    from django.test import Client

    client = Client()
    client.force_login(admin)
    page = client.get(f"/hsms/{hsm.name}/keys/{cmk_key.name}/").content.decode()
    assert 'id="preflight-warning"' in page and server.name in page
    # The approver sees who uses it beside the request.
    req = ApprovalRequest.objects.get(pk=request["id"])
    from portal.approvals import registry

    described = dict(registry.operation("key.delete").describe(req.payload)["context"])
    assert server.name in described["Used by"]


def test_disabling_a_key_in_use_needs_approval_and_one_not_in_use_does_not(
        hsm, admin, cmk_key, key_name, sdk):
    CmkBinding.objects.create(hsm=hsm, key_name=cmk_key.name, resource_id="/subscriptions/s/"
                              "resourceGroups/g/providers/Microsoft.Storage/storageAccounts/stx",
                              kind="storage", resource_name="stx", status="active")
    pending = key_services.key_update(hsm=hsm, name=cmk_key.name, enabled=False, actor=admin,
                                      request_id="r", confirm_name=cmk_key.name)
    assert isinstance(pending, ApprovalRequest) and pending.operation == "key.disable"
    assert pending.context["dependents"][0]["name"] == "stx"
    assert sdk["keys"].get_key(cmk_key.name).properties.enabled is True
    approve_and_run(pending)
    assert sdk["keys"].get_key(cmk_key.name).properties.enabled is False
    disabled = AuditEvent.objects.filter(action="key.disable").order_by("seq").last()
    assert disabled.outcome == "succeeded"
    # A key nothing uses is disabled at once, as before.
    from keys_app.spec import spec_build

    other = key_services.key_create(hsm=hsm, spec=spec_build(
        name=key_name + "b", kty="oct-HSM", tags={"owner": "payments"}), actor=admin,
        request_id="r")
    result = key_services.key_update(hsm=hsm, name=other.name, enabled=False, actor=admin,
                                     request_id="r", confirm_name=other.name)
    assert not isinstance(result, ApprovalRequest) and result.enabled is False
