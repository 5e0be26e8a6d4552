"""A requester asks for Crypto User on one key for a principal, an approver approves in the
browser, the worker grants it on the emulator (checked with the SDK), and the principal can
unwrap with that key and not with another."""
import os
import time
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.administration import KeyVaultAccessControlClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD

CRYPTO_USER = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/" \
              "21dbd100-6940-42c2-9190-5d6cb909625b"


def _key(hsm, admin, name):
    from keys_app import services
    from keys_app.spec import spec_from_request

    return services.key_create(hsm=hsm, spec=spec_from_request(
        {"name": name, "preset": "cmk-wrapping", "tags": {"owner": "payments"}}),
        actor=admin, request_id=uuid.uuid4().hex)


def _poll(condition, *, deadline_s: float = 60, what: str):
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {deadline_s} s: {what}")
        time.sleep(0.2)


@pytest.mark.e2e
def test_requester_asks_approver_approves_principal_unwraps_only_that_key(
        browser, live_server, admin, approver, hsm, emulator, celery_worker):
    from access_app.services import rbac_sync

    granted_key = _key(hsm, admin, f"k-grant-{uuid.uuid4().hex[:8]}")
    other_key = _key(hsm, admin, f"k-other-{uuid.uuid4().hex[:8]}")
    rbac_sync(hsm=hsm)
    principal = emulator.create_principal(f"batch-{uuid.uuid4().hex[:6]}")
    sdk = KeyVaultAccessControlClient(emulator.hsm_url(), emulator.credential(),
                                      **emulator.client_options())

    # The requester asks, from the key's Access tab.
    requester = browser.new_context(base_url=live_server.url)
    page = requester.new_page()
    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/{hsm.name}/keys/{granted_key.name}/access/")
    page.get_by_role("link", name="Request access to this key").click()
    expect(page.get_by_label("Scope")).to_have_value(f"/keys/{granted_key.name}")
    page.get_by_label("Role").select_option(label="Managed HSM Crypto User")
    page.get_by_label("Principal object id").fill(principal["object_id"])
    page.get_by_label("Duration (hours)").fill("4")
    page.get_by_label("Justification").fill("The batch job unwraps its data key with this key.")
    page.get_by_label("Ticket reference").fill("CHG-2041")
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.locator("#request-status")).to_have_text("Waiting for approval")
    approval_url = page.get_by_role("link", name="Approval request #").get_attribute("href")
    request_url = page.url
    requester.close()
    assert not [a for a in sdk.list_role_assignments("/")
                if a.properties.principal_id == principal["object_id"]]

    # The approver sees the change beside the key's access, and approves.
    approving = browser.new_context(base_url=live_server.url)
    page = approving.new_page()
    sign_in(page, approver.username, PASSWORD)
    page.goto(approval_url)
    expect(page.locator("#change")).to_contain_text("Managed HSM Crypto User")
    expect(page.locator("#change")).to_contain_text(f"/keys/{granted_key.name}")
    expect(page.locator("#change")).to_contain_text(principal["object_id"])
    page.get_by_label("Comment (optional, kept in the audit trail)").fill("OK for CHG-2041")
    page.get_by_role("button", name="Approve").click()

    # The worker grants it on the HSM: checked with the SDK, not the portal.
    assignment = _poll(lambda: next((a for a in sdk.list_role_assignments(f"/keys/{granted_key.name}")
                                     if a.properties.principal_id == principal["object_id"]), None),
                       what="the assignment on the emulator")
    assert assignment.properties.scope == f"/keys/{granted_key.name}"
    assert assignment.properties.role_definition_id == CRYPTO_USER
    page.goto(request_url)
    expect(page.locator("#request-status")).to_have_text("Active")
    approving.close()

    # The principal, with its own token from the emulator's authority, unwraps with that key
    # and is refused with the other.
    admin_credential = emulator.credential()
    as_principal = emulator.credential(principal)
    secret = os.urandom(32)
    for key, allowed in ((granted_key, True), (other_key, False)):
        key_id = f"{emulator.hsm_url()}/keys/{key.name}/{key.version}"
        wrapped = CryptographyClient(key_id, admin_credential, **emulator.client_options()) \
            .wrap_key(KeyWrapAlgorithm.rsa_oaep_256, secret)
        client = CryptographyClient(key_id, as_principal, **emulator.client_options())
        if allowed:
            assert client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == secret
        else:
            with pytest.raises(HttpResponseError) as refused:
                client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
            assert refused.value.status_code == 403
