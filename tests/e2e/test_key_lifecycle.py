"""An admin creates a key, rotates it and sees the new version, deletes it (another person
approves) and recovers it."""
import re

import pytest
from playwright.sync_api import expect

from keys_app.models import KeyRecord
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD
from tests.support.approvals import approve_and_run


@pytest.mark.e2e
def test_admin_creates_rotates_deletes_and_recovers_a_key(page, admin, hsm, key_name):
    sign_in(page, admin.username, PASSWORD)
    # exact: "Customer-managed keys" is a navigation link too.
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="Keys",
                                                              exact=True).click()
    page.get_by_role("link", name="Create key").click()
    page.locator("#id_preset").select_option("cmk-wrapping")
    page.locator("#id_name").fill(key_name)
    page.get_by_label("Tag 1 name").fill("owner")
    page.get_by_label("Tag 1 value").fill("payments")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("h1")).to_contain_text(key_name)
    first_version = page.locator("#current-version").inner_text()
    page.get_by_role("navigation", name=f"Key {key_name}").get_by_role(
        "link", name="Versions").click()
    expect(page.locator("#versions tbody tr")).to_have_count(1)

    page.get_by_role("button", name="Rotate now").click()
    expect(page.locator(".flash-success")).to_contain_text("Rotated")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    assert page.locator("#current-version").inner_text() != first_version

    page.get_by_role("navigation", name=f"Key {key_name}").get_by_role(
        "link", name="Overview").click()
    page.get_by_label("Type the key name to delete it").fill(key_name)
    page.get_by_role("button", name="Delete key").click()
    # Deleting needs another person's approval: the page of the pending request says so, and
    # the key stays until an approver agrees and the request runs.
    page.wait_for_url(re.compile(r"/approvals/\d+/$"))
    expect(page.locator(".flash")).to_contain_text("Delete a key needs approval")
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "active"
    approve_and_run(int(page.url.rstrip("/").split("/")[-1]))
    page.goto(f"/hsms/{hsm.name}/deleted-keys/")
    expect(page.locator("tbody")).to_contain_text(key_name)
    page.get_by_role("button", name=f"Recover {key_name}").click()
    expect(page.locator("h1")).to_contain_text(key_name)
    expect(page.locator(".flash-success")).to_contain_text("Recovered")
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "active"
    assert page.csp_errors == []
