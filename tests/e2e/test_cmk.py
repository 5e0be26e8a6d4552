"""Browser tests of customer-managed keys: the attach wizard (a real Celery worker runs it
against the emulator; the storage account's encryption is checked with azure-mgmt-storage),
then the pre-flight warning when someone deletes the key it uses."""
import re
import uuid

import pytest
from playwright.sync_api import expect

from keys_app import services as key_services
from keys_app.spec import spec_build
from portal.approvals.models import ApprovalRequest
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD
from tests.support.cmk import GROUP, mgmt, start_cmk_emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """Purge protection is irreversible: this module's primary HSM is its own."""
    process = start_cmk_emulator(tmp_path_factory.mktemp("cmk-e2e"))
    yield process
    process.stop()


@pytest.mark.e2e
def test_attach_wizard_then_preflight_warning_on_delete(page, admin, hsm, emulator,
                                                        celery_worker):
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.storage import models

    storage = mgmt(emulator, StorageManagementClient)
    account = storage.storage_accounts.begin_create(
        GROUP, f"st{uuid.uuid4().hex[:10]}", models.StorageAccountCreateParameters(
            location="westeurope", kind="StorageV2", sku=models.Sku(name="Standard_LRS"))).result()
    key = key_services.key_create(hsm=hsm, spec=spec_build(
        name=f"cmk-{uuid.uuid4().hex[:8]}", kty="RSA-HSM", key_size=2048,
        tags={"owner": "payments"}, key_ops=["wrapKey", "unwrapKey"]),
        actor=admin, request_id="r-e2e")

    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/cmk/attach/?hsm={hsm.name}")
    page.get_by_label("Key", exact=True).select_option(key.name)
    page.get_by_label("Storage account or database server").select_option(account.id)
    expect(page.get_by_label("Create a new user-assigned identity")).to_be_checked()
    expect(page.get_by_label("Grant the role")).to_be_checked()
    page.get_by_role("button", name="Attach").click()
    # The job page: its steps arrive live; it ends saying the resource uses the key.
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    progress = page.locator("#job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(progress).to_contain_text(f"{account.name} uses {key.name}")
    expect(progress).to_contain_text("Granting Managed HSM Crypto Service Encryption User")
    got = storage.storage_accounts.get_properties(GROUP, account.name).encryption
    assert got.key_source == "Microsoft.Keyvault" and got.key_vault_properties.key_name == key.name

    # The key's Usage tab lists the account; the list counts it.
    page.goto(f"/hsms/{hsm.name}/keys/{key.name}/usage/")
    expect(page.locator("#key-usage")).to_contain_text(account.name)
    page.goto(f"/hsms/{hsm.name}/keys/?q={key.name}")
    expect(page.get_by_label(f"{key.name} is used by 1 resource")).to_be_visible()

    # Deleting it: the confirmation names the account, and the deletion waits for approval.
    page.goto(f"/hsms/{hsm.name}/keys/{key.name}/")
    warning = page.locator("#preflight-warning")
    expect(warning).to_contain_text("In use by 1 resource")
    expect(warning).to_contain_text(account.name)
    page.get_by_label("Type the key name to delete it").fill(key.name)
    page.get_by_label("Why delete it, for the approver").fill("Retiring the payments account")
    page.get_by_role("button", name="Delete key").click()
    page.wait_for_url(re.compile(r"/approvals/\d+/$"))
    expect(page.locator("body")).to_contain_text("needs approval")
    expect(page.locator("body")).to_contain_text(account.name)  # "Used by", beside the request
    request = ApprovalRequest.objects.get(operation="key.delete", payload__name=key.name)
    assert request.status == "pending" and request.context["dependents"][0]["name"] == account.name
    from azure.keyvault.keys import KeyClient

    keys = KeyClient(emulator.hsm_url("primary"), emulator.credential(), **emulator.client_options())
    assert keys.get_key(key.name).properties.enabled  # still there, still usable
