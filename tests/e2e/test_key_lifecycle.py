"""An admin creates a key, rotates it and sees the new version, deletes it and recovers it."""
import pytest
from playwright.sync_api import expect

from keys_app.models import KeyRecord
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD


@pytest.mark.e2e
def test_admin_creates_rotates_deletes_and_recovers_a_key(page, admin, hsm, key_name):
    sign_in(page, admin.username, PASSWORD)
    page.get_by_role("link", name="Keys").first.click()
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
    page.wait_for_url("**/deleted-keys/")
    expect(page.locator("tbody")).to_contain_text(key_name)
    page.get_by_role("button", name=f"Recover {key_name}").click()
    expect(page.locator("h1")).to_contain_text(key_name)
    expect(page.locator(".flash-success")).to_contain_text("Recovered")
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "active"
    assert page.csp_errors == []
