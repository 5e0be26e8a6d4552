"""The key pages in a browser: typed confirmations, cache age, the create form's preset,
the rotation-policy form and the list's filters. Each test saves screenshots to look at."""
import re
import uuid

import pytest
from playwright.sync_api import expect

from keys_app import services
from keys_app.models import KeyRecord
from keys_app.spec import spec_from_request
from portal import gateway
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD
from tests.support.approvals import approve_and_run, run_approved

WIDE = {"width": 1280, "height": 900}


def make_key(hsm, actor, name: str, **extra) -> KeyRecord:
    """A key created through the service, as the create page would."""
    spec = spec_from_request({"name": name, "preset": "cmk-wrapping",
                              "tags": {"owner": "payments"}, **extra})
    return services.key_create(hsm=hsm, spec=spec, actor=actor, request_id=uuid.uuid4().hex)


def shot(page, tmp_path, name: str) -> None:
    page.set_viewport_size(WIDE)
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def detail(page, hsm, name: str, tab: str = "") -> None:
    page.set_viewport_size(WIDE)
    page.goto(f"/hsms/{hsm.name}/keys/{name}/{tab}")
    expect(page.locator("h1")).to_contain_text(name)


# Item 8: a typo in a typed confirmation must not jam the form.

@pytest.mark.e2e
def test_delete_goes_through_after_a_typo_is_corrected(page, admin, hsm, key_name, tmp_path):
    make_key(hsm, admin, key_name)
    sign_in(page, admin.username, PASSWORD)
    detail(page, hsm, key_name)
    box = page.get_by_label("Type the key name to delete it")
    box.fill(key_name + "x")
    page.get_by_role("button", name="Delete key").click()
    # The browser refuses the typo in place: the box says why, nothing is sent.
    expect(box).to_have_js_property("validity.valid", False)
    assert box.evaluate("el => el.validationMessage") == f"Type {key_name} to confirm."
    expect(page).to_have_url(re.compile(f"/keys/{key_name}/$"))
    shot(page, tmp_path, "delete-typo")

    box.fill(key_name)
    page.get_by_role("button", name="Delete key").click()
    # Deleting needs another person's approval: the page of the pending request says so.
    page.wait_for_url(re.compile(r"/approvals/\d+/$"))
    expect(page.locator(".flash")).to_contain_text("Delete a key needs approval")
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "active"
    approve_and_run(int(page.url.rstrip("/").split("/")[-1]))
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "deleted"
    assert page.csp_errors == []


@pytest.mark.e2e
def test_purge_goes_through_after_a_typo_is_corrected(page, admin, hsm, key_name, tmp_path):
    make_key(hsm, admin, key_name)
    run_approved(services.key_delete, hsm=hsm, name=key_name, actor=admin, request_id="r-del",
                 confirm_name=key_name)
    sign_in(page, admin.username, PASSWORD)
    page.set_viewport_size(WIDE)
    page.goto(f"/hsms/{hsm.name}/deleted-keys/")
    box = page.get_by_label(f"Type {key_name} to confirm purge")
    box.fill(key_name[:-1])
    page.get_by_role("button", name="Purge permanently").click()
    expect(box).to_have_js_property("validity.valid", False)
    shot(page, tmp_path, "purge-typo")

    box.fill(key_name)
    page.get_by_role("button", name="Purge permanently").click()
    page.wait_for_url(re.compile(r"/approvals/\d+/$"))
    expect(page.locator(".flash")).to_contain_text("Purge a deleted key needs approval")
    approve_and_run(int(page.url.rstrip("/").split("/")[-1]))
    assert not KeyRecord.objects.filter(hsm=hsm, name=key_name).exists()
    assert page.csp_errors == []


@pytest.mark.e2e
def test_clear_policy_goes_through_after_a_typo_is_corrected(page, admin, hsm, key_name, tmp_path):
    make_key(hsm, admin, key_name)
    sign_in(page, admin.username, PASSWORD)
    detail(page, hsm, key_name, "rotation/")
    box = page.get_by_label("Type the key name to clear the policy")
    box.fill("wrong-name")
    page.get_by_role("button", name="Clear policy").click()
    expect(box).to_have_js_property("validity.valid", False)

    box.fill(key_name)
    page.get_by_role("button", name="Clear policy").click()
    page.wait_for_url(re.compile(r"/approvals/\d+/$"))
    expect(page.locator(".flash")).to_contain_text("Clear a key's rotation policy needs approval")
    approve_and_run(int(page.url.rstrip("/").split("/")[-1]))
    detail(page, hsm, key_name, "rotation/")
    expect(page.locator("#rotation-policy")).to_have_text("none")
    assert gateway.keys(hsm).get_key_rotation_policy(key_name).lifetime_actions == []
    shot(page, tmp_path, "policy-cleared")
    assert page.csp_errors == []


# Item 9: the detail, create and import pages tell the cache age the list tells.

@pytest.mark.e2e
def test_pages_tell_the_cache_age_after_a_refresh(page, admin, hsm, key_name, celery_worker,
                                                  tmp_path):
    make_key(hsm, admin, key_name)
    sign_in(page, admin.username, PASSWORD)
    page.set_viewport_size(WIDE)
    page.goto(f"/hsms/{hsm.name}/keys/new/")
    expect(page.locator("#cache-age")).to_contain_text("has not been synced yet")
    page.get_by_role("button", name="Refresh now").click()
    page.wait_for_url("**/jobs/*/")
    expect(page.locator("#job-progress")).to_have_attribute("data-status", "succeeded",
                                                            timeout=60_000)
    for url in (f"/hsms/{hsm.name}/keys/", f"/hsms/{hsm.name}/keys/{key_name}/",
                f"/hsms/{hsm.name}/keys/new/", f"/hsms/{hsm.name}/keys/import/"):
        page.goto(url)
        expect(page.locator("#cache-age")).to_contain_text("Inventory synced")
        expect(page.locator("#cache-age")).not_to_contain_text("not been synced")
    shot(page, tmp_path, "import-cache-age")
    assert page.csp_errors == []


# Item 10: the preselected preset fills the form and gives way to a manual choice.

@pytest.mark.e2e
def test_a_manual_type_wins_over_the_preselected_preset(page, admin, hsm, key_name, tmp_path):
    sign_in(page, admin.username, PASSWORD)
    page.set_viewport_size(WIDE)
    page.goto(f"/hsms/{hsm.name}/keys/new/")
    # The preselected preset shows what it stands for.
    expect(page.locator("#id_preset")).to_have_value("cmk-wrapping")
    expect(page.locator("#id_kty")).to_have_value("RSA-HSM")
    expect(page.locator("#id_key_size")).to_have_value("3072")
    expect(page.locator("input[name=key_ops][value=wrapKey]")).to_be_checked()
    shot(page, tmp_path, "create-preset")

    page.locator("#id_kty").select_option("EC-HSM")
    page.locator("#id_curve").select_option("P-384")
    expect(page.locator("#id_preset")).to_have_value("")
    expect(page.locator("#id_key_size")).to_be_disabled()
    expect(page.locator("input[name=key_ops][value=wrapKey]")).not_to_be_checked()
    expect(page.locator("input[name=key_ops][value=wrapKey]")).to_be_disabled()
    page.locator("#id_name").fill(key_name)
    page.get_by_label("Tag 1 name").fill("owner")
    page.get_by_label("Tag 1 value").fill("payments")
    shot(page, tmp_path, "create-manual")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Created {key_name}")
    expect(page.locator("#essentials")).to_contain_text("EC-HSM P-384")
    record = KeyRecord.objects.get(hsm=hsm, name=key_name)
    assert (record.kty, record.curve) == ("EC-HSM", "P-384")

    # Choosing a preset again fills every field it stands for.
    page.goto(f"/hsms/{hsm.name}/keys/new/")
    page.locator("#id_preset").select_option("aes")
    expect(page.locator("#id_kty")).to_have_value("oct-HSM")
    expect(page.locator("#id_key_size")).to_have_value("256")
    expect(page.locator("#id_curve")).to_be_disabled()
    assert page.csp_errors == []


# Item 11: the rotation-policy form keeps bad input and guards removing automatic rotation.

@pytest.mark.e2e
def test_policy_form_keeps_bad_input_and_asks_before_rotation_stops(page, admin, hsm, key_name,
                                                                    tmp_path):
    make_key(hsm, admin, key_name)
    sign_in(page, admin.username, PASSWORD)
    detail(page, hsm, key_name, "rotation/")
    form = page.locator("#policy-form")
    confirm_box = form.get_by_label("Type the key name to remove automatic rotation")
    expect(confirm_box).to_be_hidden()
    before_expiry = form.get_by_label("Rotate before expiry", exact=True)
    expect(before_expiry).to_have_value("30")
    before_expiry.fill("3")
    form.get_by_role("button", name="Save policy").click()
    expect(page.locator(".flash-error")).to_contain_text("The rotation policy was not saved")
    expect(before_expiry).to_have_value("3")
    expect(form).to_contain_text("Rotate before expiry must be at least 7 days.")
    shot(page, tmp_path, "policy-bad-value")

    # Keeping only the notice stops automatic rotation: the form asks for the name first.
    before_expiry.fill("")
    form.get_by_label("Notify before expiry", exact=True).fill("30")
    form.get_by_label("Notify before expiry: unit").select_option("days")
    expect(confirm_box).to_be_visible()
    form.get_by_role("button", name="Save policy").click()
    expect(form).to_contain_text(f"type {key_name} to confirm")
    assert [a.action for a in gateway.keys(hsm).get_key_rotation_policy(key_name)
            .lifetime_actions] == ["Rotate"]
    shot(page, tmp_path, "policy-needs-name")

    confirm_box.fill(key_name)
    form.get_by_role("button", name="Save policy").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Set the rotation policy of {key_name}")
    expect(page.locator("#rotation-policy")).to_contain_text("Notify 30 days before expiry")
    assert [a.action for a in gateway.keys(hsm).get_key_rotation_policy(key_name)
            .lifetime_actions] == ["Notify"]
    assert page.csp_errors == []


# Item 12: a bad list filter leaves the user on the list page with the form and the error.

@pytest.mark.e2e
def test_a_bad_filter_shows_the_form_and_can_be_corrected(page, admin, hsm, key_name, tmp_path):
    make_key(hsm, admin, key_name)
    sign_in(page, admin.username, PASSWORD)
    page.set_viewport_size(WIDE)
    response = page.goto(f"/hsms/{hsm.name}/keys/?kty=DSA&q={key_name}")
    assert response.status == 400
    expect(page.locator("h1")).to_have_text(f"Keys on {hsm.name}")
    expect(page.locator("#filter-error")).to_contain_text(
        "Type: 'DSA' is not a key type; pick one from the list.")
    expect(page.locator("#id_kty")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_q")).to_have_value(key_name)
    expect(page.locator("table.keys")).to_have_count(0)
    shot(page, tmp_path, "list-bad-filter")

    page.locator("#id_kty").select_option("RSA-HSM")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#filter-error")).to_have_count(0)
    expect(page.locator("table.keys tbody tr")).to_have_count(1)
    expect(page.locator("table.keys")).to_contain_text(key_name)

    page.goto(f"/hsms/{hsm.name}/keys/?sort=price")
    page.get_by_role("link", name="clear the filters").click()
    expect(page.locator("#filter-error")).to_have_count(0)
    expect(page.locator("table.keys")).to_contain_text(key_name)
    assert page.csp_errors == []
