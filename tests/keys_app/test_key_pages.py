"""The key pages through Django's test client: cache age, the create form's preset, the
rotation-policy form and the list's filters (the browser tests are in tests/e2e/)."""
import re
import uuid

import pytest
from django.utils import timezone

from keys_app import services
from keys_app.models import InventoryState, KeyRecord
from keys_app.spec import spec_from_request
from portal import gateway
from portal.audit.models import AuditEvent
from tests.support.approvals import approve_and_run, run_approved


def make_key(hsm, actor, name: str, **extra) -> KeyRecord:
    spec = spec_from_request({"name": name, "preset": "cmk-wrapping",
                              "tags": {"owner": "payments"}, **extra})
    return services.key_create(hsm=hsm, spec=spec, actor=actor, request_id=uuid.uuid4().hex)


# Item 9: every page under the HSM's key tabs tells the same cache age.

def test_every_key_page_tells_the_same_cache_age(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    run_approved(services.key_delete, hsm=hsm, name=key_name, actor=admin, request_id="r",
                 confirm_name=key_name)
    live = f"{key_name}-b"
    make_key(hsm, admin, live)
    synced = timezone.now() - timezone.timedelta(minutes=7)
    InventoryState.objects.update_or_create(hsm=hsm, defaults={"last_synced_at": synced})
    client.force_login(admin)
    base = f"/hsms/{hsm.name}"
    for url in (f"{base}/keys/", f"{base}/keys/{live}/", f"{base}/keys/new/",
                f"{base}/keys/import/", f"{base}/deleted-keys/"):
        page = client.get(url)
        assert page.status_code == 200, url
        text = page.content.decode()
        assert "has not been synced yet" not in text, url
        assert f"({synced:%Y-%m-%d %H:%M} UTC)" in text, url
        assert "Inventory synced 7\xa0minutes ago" in text, url


def test_a_never_synced_inventory_says_so(client, admin, hsm):
    client.force_login(admin)
    page = client.get(f"/hsms/{hsm.name}/keys/new/")
    assert "The inventory of primary has not been synced yet." in page.content.decode()


# Item 10: a type chosen by hand wins over the preselected preset.

def test_a_type_chosen_by_hand_wins_over_the_preset(client, admin, hsm, key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "cmk-wrapping", "name": key_name, "kty": "EC-HSM", "curve": "P-384",
        "tags": "owner=payments"})
    assert response.status_code == 302, response.content.decode()[-3000:]
    record = KeyRecord.objects.get(hsm=hsm, name=key_name)
    assert (record.kty, record.curve, record.key_size) == ("EC-HSM", "P-384", None)
    assert {"sign", "verify"} <= set(record.key_ops)
    assert not {"wrapKey", "unwrapKey"} & set(record.key_ops)  # the preset's, not asked for
    assert gateway.keys(hsm).get_key(key_name).key.crv == "P-384"


def test_a_preset_of_the_same_type_fills_only_what_is_left_empty(client, admin, hsm, key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "cmk-wrapping", "name": key_name, "kty": "RSA-HSM", "key_size": "4096",
        "tags": "owner=payments"})
    assert response.status_code == 302
    record = KeyRecord.objects.get(hsm=hsm, name=key_name)
    assert (record.kty, record.key_size) == ("RSA-HSM", 4096)
    assert set(record.key_ops) == {"wrapKey", "unwrapKey"}


def test_the_preset_options_carry_what_they_fill(client, admin, hsm):
    client.force_login(admin)
    text = client.get(f"/hsms/{hsm.name}/keys/new/").content.decode()
    assert ('<option value="signing" data-kty="EC-HSM" data-key-size="" data-curve="P-256" '
            'data-key-ops="sign verify">') in text
    assert '<option value="oct-HSM" data-key-ops="encrypt decrypt wrapKey unwrapKey">' in text


# Item 11: the rotation-policy form keeps bad input and guards removing automatic rotation.

def policy_url(hsm, name):
    return f"/hsms/{hsm.name}/keys/{name}/rotation-policy/"


def hsm_actions(hsm, name):
    return [(a.action, a.time_after_create, a.time_before_expiry)
            for a in gateway.keys(hsm).get_key_rotation_policy(name).lifetime_actions]


def policy_audits():
    return AuditEvent.objects.filter(action__startswith="key.rotation_policy").count()


ROTATE_30D = [("Rotate", None, "P30D")]


def durations(**given) -> dict:
    """What the policy form posts: each duration as a number and a unit (days, months, years)."""
    fields = {}
    for name, (number, unit) in given.items():
        fields[f"{name}_n"], fields[f"{name}_unit"] = number, unit
    return fields


@pytest.mark.parametrize("fields, field, message", [
    (durations(expires_after=("2", "Y"), rotate_after_create=("90x", "D")), "rotate_after_create",
     "Enter a whole number, e.g. 90."),
    # Longer than any bound: it used to vanish and the rest was saved without it.
    (durations(expires_after=("1" * 25, "D"), rotate_after_create=("90", "D")), "expires_after",
     "At most 36500 days: a duration is at most 100 years."),
    (durations(expires_after=("101", "Y"), rotate_after_create=("90", "D")), "expires_after",
     "At most 100 years: a duration is at most 100 years."),
    (durations(expires_after=("2", "Y"), rotate_after_create=("90", "D"),
           rotate_before_expiry=("30", "D")),
     "rotate_before_expiry", "Rotate either after creation or before expiry, not both."),
    (durations(expires_after=("2", "Y"), rotate_after_create=("3", "D")), "rotate_after_create",
     "Rotate after creation must be at least 7 days."),
    (durations(expires_after=("2", "Y"), notify_before_expiry=("2", "D"),
           rotate_after_create=("90", "D")), "notify_before_expiry",
     "Notify before expiry must be at least 7 days."),
    (durations(rotate_before_expiry=("30", "D")), "expires_after",
     "Required with Rotate or Notify before expiry: they count back from it."),
    (durations(expires_after=("2", "Y"), rotate_after_create=("90", "weeks")), "rotate_after_create",
     "Choose days, months or years."),
])
def test_a_bad_policy_value_is_a_field_error_and_stays_typed(client, admin, hsm, key_name,
                                                             fields, field, message):
    make_key(hsm, admin, key_name)
    before = policy_audits()
    client.force_login(admin)
    response = client.post(policy_url(hsm, key_name), fields)
    assert response.status_code == 400
    form = response.context["policy_form"]
    assert form.errors[field] == [message]
    text = response.content.decode()
    assert message.replace("'", "&#x27;") in text
    for name, value in fields.items():  # what was typed is still in the form
        if name.endswith("_n"):
            assert f'name="{name}" value="{value}"' in text
        elif value in ("D", "M", "Y"):
            assert re.search(f'name="{name}"[^>]*>(?:(?!</select>).)*<option value="{value}" '
                             f'selected>', text)
    assert "lifetime_actions" not in text and "time_after_create" not in text
    assert hsm_actions(hsm, key_name) == ROTATE_30D
    assert policy_audits() == before


def test_an_iso_duration_posted_as_text_is_read_and_kept_when_bad(client, admin, hsm, key_name):
    # Scripts (and values set outside the portal, like P1Y6M) send ISO-8601 text.
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    response = client.post(policy_url(hsm, key_name),
                           {"expires_after": "P2Y", "rotate_after_create": "P90X"})
    assert response.status_code == 400
    assert response.context["policy_form"].errors["rotate_after_create"] == [
        "Use an ISO-8601 duration such as P90D, P6M or P1Y."]
    assert 'name="rotate_after_create_n" value="P90X"' in response.content.decode()
    assert hsm_actions(hsm, key_name) == ROTATE_30D


def test_keeping_only_a_notice_needs_the_typed_name(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    notice_only = durations(expires_after=("2", "Y"), notify_before_expiry=("30", "D"),
                        rotate_after_create=("", "D"), rotate_before_expiry=("", "D"))
    for typed in ("", "wrong"):
        response = client.post(policy_url(hsm, key_name), {**notice_only, "confirm_name": typed})
        assert response.status_code == 400
        assert response.context["policy_form"].errors["confirm_name"] == [
            f"Saving this stops automatic rotation of {key_name}: type {key_name} to confirm."]
        assert 'name="notify_before_expiry_n" value="30"' in response.content.decode()
        assert hsm_actions(hsm, key_name) == ROTATE_30D

    response = client.post(policy_url(hsm, key_name), {**notice_only, "confirm_name": key_name})
    assert response.status_code == 302
    assert hsm_actions(hsm, key_name) == [("Notify", None, "P30D")]
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).has_rotation_policy is False
    assert list(AuditEvent.objects.filter(action="key.rotation_policy.set").order_by("seq")
                .values_list("outcome", flat=True)) == ["intent", "succeeded"]


def test_emptying_the_policy_form_clears_it_with_the_typed_name(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    empty = {name: "" for name in ("expires_after", "rotate_after_create",
                                   "rotate_before_expiry", "notify_before_expiry")}
    response = client.post(policy_url(hsm, key_name), empty)
    assert response.status_code == 400
    assert response.context["policy_form"].errors["confirm_name"] == [
        f"Saving this clears the rotation policy of {key_name}: type {key_name} to confirm."]
    assert hsm_actions(hsm, key_name) == ROTATE_30D

    response = client.post(policy_url(hsm, key_name), {**empty, "confirm_name": key_name})
    assert response.status_code == 302 and response["Location"].startswith("/approvals/")
    assert hsm_actions(hsm, key_name) == ROTATE_30D  # clearing waits for an approver
    approve_and_run(response["Location"].strip("/").split("/")[-1])
    assert hsm_actions(hsm, key_name) == []
    assert AuditEvent.objects.filter(action="key.rotation_policy.clear",
                                     outcome="succeeded").count() == 1


def test_a_policy_that_keeps_rotating_needs_no_typed_name(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    response = client.post(policy_url(hsm, key_name), {
        "expires_after": "P1Y", "rotate_after_create": "P90D", "notify_before_expiry": "p30d"})
    assert response.status_code == 302
    assert hsm_actions(hsm, key_name) == [("Rotate", "P90D", None), ("Notify", None, "P30D")]


def test_the_create_form_shows_a_bad_policy_value_and_creates_nothing(client, admin, hsm,
                                                                      key_name):
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/new/", {
        "preset": "aes", "name": key_name, "tags_name": ["owner", ""], "tags_value": ["payments", ""],
        **durations(expires_after=("1", "Y"), rotate_after_create=("9" * 30, "D"))})
    assert response.status_code == 400
    assert response.context["form"].errors["rotate_after_create"] == [
        "At most 36500 days: a duration is at most 100 years."]
    text = response.content.decode()
    assert 'name="rotate_after_create_n" value="' + "9" * 30 + '"' in text
    assert 'name="tags_name" value="owner"' in text and 'name="tags_value" value="payments"' in text
    assert not KeyRecord.objects.filter(hsm=hsm, name=key_name).exists()


# Item 12: a bad list filter shows the list page with the filter and its error, no keys.

@pytest.mark.parametrize("query, field, message", [
    ("kty=DSA", "kty", "'DSA' is not a key type; pick one from the list."),
    ("state=gone", "state", "'gone' is not a key state; pick one from the list."),
    ("expiry=tomorrow", "expiry", "'tomorrow' is not an expiry filter; pick one from the list."),
    ("sort=price", "sort", "'price' is not a sort order; pick one from the list."),
    ("q=" + "x" * 200, "q", "Ensure this value has at most 127 characters (it has 200)."),
])
def test_a_bad_filter_shows_the_list_page_with_the_error(client, admin, hsm, key_name,
                                                        query, field, message):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    for extra in ("", "&export=csv"):
        response = client.get(f"/hsms/{hsm.name}/keys/?{query}{extra}")
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/html")
        assert response.context["form"].errors[field] == [message]
        text = response.content.decode()
        assert 'id="key-filters"' in text and 'id="filter-error"' in text
        assert message.replace("'", "&#x27;") in text
        assert "No keys are listed until then." in text
        assert key_name not in text  # no keys, not an unfiltered list
        assert "Export CSV" not in text


def test_a_good_filter_still_lists_keys(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    response = client.get(f"/hsms/{hsm.name}/keys/?kty=RSA-HSM&q={key_name}&page=abc")
    assert response.status_code == 200
    text = response.content.decode()
    assert key_name in text and 'id="filter-error"' not in text and "1 key<" in text
