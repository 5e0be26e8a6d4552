"""Maker-checker in a browser: an admin asks to delete a key (with a justification), an
approver finds it in the inbox (the count in the navigation), sees the change beside the
key's current state, approves it with a comment; a real Celery worker deletes the key in
the emulator, and the request page says Executed."""
import re
import time

import pytest
from playwright.sync_api import expect

from keys_app.models import KeyRecord
from portal import gateway
from portal.approvals.models import ApprovalRequest
from tests.e2e.conftest import sign_in
from tests.e2e.test_key_pages import make_key
from tests.factories import PASSWORD

WIDE = {"width": 1280, "height": 900}


def _wait_for(condition, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met before the deadline")


@pytest.mark.e2e
def test_an_approver_approves_a_key_delete_from_the_inbox(browser, live_server, admin, approver,
                                                          hsm, key_name, celery_worker):
    make_key(hsm, admin, key_name)
    requester = browser.new_context(base_url=live_server.url, viewport=WIDE)
    page = requester.new_page()
    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/{hsm.name}/keys/{key_name}/")
    page.get_by_label("Type the key name to delete it").fill(key_name)
    page.get_by_label("Why delete it, for the approver").fill("Ledger v1 is retired (CHG-7).")
    page.get_by_role("button", name="Delete key").click()
    page.wait_for_url(re.compile(r"/approvals/\d+/$"))
    expect(page.locator(".flash")).to_contain_text("Delete a key needs approval")
    expect(page.locator("#own-request-note")).to_contain_text("another approver must decide")
    expect(page.locator("#decide-form")).to_have_count(0)  # never your own
    request_url = page.url
    assert gateway.key_exists(hsm, key_name)
    requester.close()

    checker = browser.new_context(base_url=live_server.url, viewport=WIDE)
    page = checker.new_page()
    sign_in(page, approver.username, PASSWORD)
    inbox = page.get_by_role("link", name=re.compile("Approval inbox"))
    expect(inbox).to_contain_text("1")  # the count in the navigation
    inbox.click()
    page.get_by_role("link", name=re.compile(r"^#\d+$")).first.click()
    assert page.url == request_url
    expect(page.locator("#justification")).to_have_text("Ledger v1 is retired (CHG-7).")
    expect(page.locator("#change")).to_contain_text(key_name)
    expect(page.locator("#context")).to_contain_text("Active")  # the key as it is now
    page.get_by_label("Comment (optional, kept in the audit trail)").fill("Checked with the team")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash-success")).to_contain_text("it runs now")

    req = ApprovalRequest.objects.get(operation="key.delete")
    _wait_for(lambda: ApprovalRequest.objects.get(pk=req.pk).status in ("executed", "failed"))
    page.reload()
    expect(page.locator("#request-status")).to_have_text("Executed")
    expect(page.locator("#decisions")).to_contain_text("Checked with the team")
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "deleted"
    assert gateway.keys(hsm).get_deleted_key(key_name).name == key_name
    expect(page.get_by_role("link", name=re.compile("Approval inbox"))).not_to_contain_text("1")
    checker.close()
