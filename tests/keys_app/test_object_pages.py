"""Object pages (a key, an HSM) and their forms through Django's test client: tabs with one
URL each, Essentials, per-version public keys and enable/disable, durations typed as a number
and a unit, tags as rows, and the danger zone (the browser tests are in tests/e2e/)."""
import re
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from keys_app import services
from keys_app.forms import duration_parts
from keys_app.models import KeyRecord
from keys_app.spec import spec_from_request
from portal import gateway
from portal.audit.models import AuditEvent
from portal.gateway.models import HsmInstance
from tests.support.approvals import run_approved

TABS = {"overview": "", "versions": "versions/", "rotation": "rotation/", "activity": "activity/"}


def make_key(hsm, actor, name: str, **extra) -> KeyRecord:
    spec = spec_from_request({"name": name, "preset": "cmk-wrapping",
                              "tags": {"owner": "payments"}, **extra})
    return services.key_create(hsm=hsm, spec=spec, actor=actor, request_id=uuid.uuid4().hex)


def key_url(hsm, name: str, tab: str = "overview") -> str:
    return f"/hsms/{hsm.name}/keys/{name}/{TABS.get(tab, tab)}"


def current_tabs(html: str, label: str) -> list[str]:
    nav = re.search(rf'<nav class="object-tabs" aria-label="{label}">(.*?)</nav>', html, re.S)
    assert nav, label
    return re.findall(r'aria-current="page">([^<]+)<', nav[1])


def trail(*actions):
    return list(AuditEvent.objects.filter(action__in=actions).order_by("seq")
                .values_list("action", "outcome", "detail"))


# Tabs: real links, one URL per tab, the current one marked.

def test_each_key_tab_has_its_own_url_and_is_marked_current(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    for tab, label in (("overview", "Overview"), ("versions", "Versions"),
                       ("rotation", "Rotation"), ("activity", "Activity")):
        response = client.get(key_url(hsm, key_name, tab))
        assert response.status_code == 200, tab
        html = response.content.decode()
        assert current_tabs(html, f"Key {key_name}") == [label], tab
        for other in TABS.values():  # every tab is a link to its own page
            assert f'href="/hsms/{hsm.name}/keys/{key_name}/{other}"' in html
        assert f'id="tab-{tab}"' in html


def test_the_key_pages_of_an_hsm_sit_under_its_keys_tab(client, admin, hsm):
    client.force_login(admin)
    for url, label in ((f"/hsms/{hsm.name}/keys/new/", "Keys"),
                       (f"/hsms/{hsm.name}/keys/import/", "Keys"),
                       (f"/hsms/{hsm.name}/deleted-keys/", "Deleted keys"),
                       (f"/hsms/{hsm.name}/", "Overview"),
                       (f"/hsms/{hsm.name}/settings/", "Settings"),
                       (f"/hsms/{hsm.name}/jobs/", "Jobs"),
                       (f"/hsms/{hsm.name}/activity/", "Activity")):
        response = client.get(url)
        assert response.status_code == 200, url
        assert current_tabs(response.content.decode(), f"HSM {hsm.name}") == [label], url


# Essentials: the facts people check first; times in UTC with a machine-readable datetime.

def test_the_key_essentials_show_status_version_identifier_and_utc_times(client, admin, hsm,
                                                                         key_name):
    record = make_key(hsm, admin, key_name)
    client.force_login(admin)
    html = client.get(key_url(hsm, key_name)).content.decode()
    essentials = re.search(r'<section class="essentials".*?</section>', html, re.S)[0]
    facts = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd[^>]*>(.*?)</dd>", essentials, re.S))
    assert "Enabled" in facts["Status"]
    assert "RSA-HSM 3072" in facts["Type"]
    assert record.version in facts["Current version"]
    assert f"{hsm.uri.rstrip('/')}/keys/{key_name}/{record.version}" in facts["Key identifier"]
    assert f'datetime="{record.created_on.isoformat()}"' in facts["Created"]
    assert re.search(f"{record.created_on:%Y-%m-%d %H:%M}</time>\\s*UTC", facts["Created"])
    assert "Rotate 30 days before expiry" in facts["Automatic rotation"]
    assert "owner: payments" in facts["Tags"]


def test_the_hsm_page_shows_its_essentials_and_keys_at_a_glance(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    make_key(hsm, admin, f"{key_name}-b")
    services.key_update(hsm=hsm, name=f"{key_name}-b", enabled=False, confirm_name=f"{key_name}-b",
                        actor=admin, request_id="r")
    client.force_login(admin)
    html = client.get(f"/hsms/{hsm.name}/").content.decode()
    facts = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd[^>]*>(.*?)</dd>", html, re.S))
    assert hsm.uri in facts["Data-plane URL"]
    assert f'href="/hsms/{hsm.name}/keys/">2</a>' in facts["Keys"]
    assert f'href="/hsms/{hsm.name}/keys/?state=disabled">1</a>' in facts["Disabled keys"]
    assert "Not synced yet" in facts["Inventory synced"]


def test_the_hsm_settings_tab_reads_the_hsm_and_offers_deregistration_to_admins_only(
        client, admin, auditor, hsm):
    expected = {item.name: item.value for item in gateway.hsm_settings(hsm).list_settings()}
    assert expected  # the emulator reports settings
    client.force_login(admin)
    html = client.get(f"/hsms/{hsm.name}/settings/").content.decode()
    for name, value in expected.items():
        assert f'<td class="mono nowrap">{name}</td><td class="mono">{value}</td>' in html
    assert "Danger zone" in html and f"/hsms/{hsm.name}/deregister/" in html
    client.force_login(auditor)
    html = client.get(f"/hsms/{hsm.name}/settings/").content.decode()
    assert "Danger zone" not in html and "/deregister/" not in html


def test_the_hsm_activity_tab_shows_only_that_hsm(client, admin, hsm, key_name, emulator):
    HsmInstance.objects.create(name="primary2", uri="https://primary2.example.invalid/")
    make_key(hsm, admin, key_name)
    from portal.audit.services import audit_record

    audit_record(actor=admin, action="hsm.note", target="hsm:primary2", request_id="r")
    client.force_login(admin)
    html = client.get(f"/hsms/{hsm.name}/activity/").content.decode()
    assert (f'<a href="/hsms/{hsm.name}/keys/{key_name}/">hsm:{hsm.name}/key:{key_name}</a>'
            in html)  # a key's id links to its page
    assert "hsm:primary2" not in html


# Versions: per-version public key from the HSM, per-version enable/disable, audited.

def test_each_version_downloads_its_own_public_key(client, admin, hsm, key_name):
    first = make_key(hsm, admin, key_name).version
    second = services.key_rotate(hsm=hsm, name=key_name, actor=admin, request_id="r").version
    client.force_login(admin)
    html = client.get(key_url(hsm, key_name, "versions")).content.decode()
    assert len(re.findall(r"<tr[^>]*>\s*<td", html)) == 2
    for version in (first, second):
        pem = client.get(f"/hsms/{hsm.name}/keys/{key_name}/versions/{version}/public.pem")
        assert pem.status_code == 200
        assert f'filename="{key_name}-{version}.pem"' in pem["Content-Disposition"]
        expected = gateway.keys(hsm).get_key(key_name, version)
        public = serialization.load_pem_public_key(b"".join(pem.streaming_content)
                                                   if pem.streaming else pem.content)
        assert public.public_numbers().n == int.from_bytes(expected.key.n, "big")
        jwk = client.get(f"/hsms/{hsm.name}/keys/{key_name}/versions/{version}/public.jwk")
        body = b"".join(jwk.streaming_content) if jwk.streaming else jwk.content
        assert f"/{version}" in body.decode()  # the kid names that version
    assert first != second


def test_an_old_version_is_disabled_with_the_typed_name_and_audited(client, admin, hsm, key_name):
    first = make_key(hsm, admin, key_name).version
    current = services.key_rotate(hsm=hsm, name=key_name, actor=admin, request_id="r").version
    client.force_login(admin)
    url = f"/hsms/{hsm.name}/keys/{key_name}/versions/{first}/disable/"
    page = client.get(url)
    assert page.status_code == 200
    assert "The current version" in page.content.decode()  # it says what it affects
    for typed in ("", "wrong"):
        response = client.post(url, {"confirm_name": typed})
        assert response.status_code == 400
        assert f"Type {key_name} to confirm." in response.content.decode()
    assert gateway.keys(hsm).get_key(key_name, first).properties.enabled is True
    assert trail("key.disable") == []

    response = client.post(url, {"confirm_name": key_name})
    assert response.status_code == 302 and response["Location"].endswith("/versions/")
    assert gateway.keys(hsm).get_key(key_name, first).properties.enabled is False
    assert gateway.keys(hsm).get_key(key_name, current).properties.enabled is True
    assert [(action, outcome, detail["version"]) for action, outcome, detail
            in trail("key.disable")] == [("key.disable", "intent", first),
                                         ("key.disable", "succeeded", first)]
    record = KeyRecord.objects.get(hsm=hsm, name=key_name)
    assert record.enabled is True and record.version == current
    assert record.versions.get(version=first).enabled is False

    response = client.post(f"/hsms/{hsm.name}/keys/{key_name}/versions/{first}/enable/")
    assert response.status_code == 302
    assert gateway.keys(hsm).get_key(key_name, first).properties.enabled is True
    assert [row[:2] for row in trail("key.enable")] == [("key.enable", "intent"),
                                                        ("key.enable", "succeeded")]
    assert record.versions.get(version=first).enabled is True


def test_disabling_the_current_version_disables_the_key(client, admin, hsm, key_name):
    current = make_key(hsm, admin, key_name).version
    client.force_login(admin)
    client.post(f"/hsms/{hsm.name}/keys/{key_name}/versions/{current}/disable/",
                {"confirm_name": key_name})
    assert gateway.keys(hsm).get_key(key_name).properties.enabled is False
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).enabled is False
    again = client.post(f"/hsms/{hsm.name}/keys/{key_name}/versions/{current}/disable/",
                        {"confirm_name": key_name})
    assert "already disabled" in again.content.decode()
    assert len(trail("key.disable")) == 2  # the repeat audited nothing


def test_readers_see_versions_but_cannot_change_them(client, auditor, admin, hsm, key_name):
    version = make_key(hsm, admin, key_name).version
    client.force_login(auditor)
    html = client.get(key_url(hsm, key_name, "versions")).content.decode()
    assert version in html and "Disable…" not in html and ">Enable<" not in html
    base = f"/hsms/{hsm.name}/keys/{key_name}"
    for url in (f"{base}/versions/{version}/disable/", f"{base}/versions/{version}/enable/",
                f"{base}/disable/", f"{base}/enable/"):
        assert client.post(url, {"confirm_name": key_name}).status_code == 403, url
    assert client.get(f"{base}/versions/{version}/disable/").status_code == 403
    assert gateway.keys(hsm).get_key(key_name).properties.enabled is True


# Forms in people's words.

@pytest.mark.parametrize("iso, parts", [
    ("P30D", ("30", "D")), ("P3M", ("3", "M")), ("P1Y", ("1", "Y")), ("P2W", ("14", "D")),
    ("P1Y6M", ("18", "M")), ("P1Y6D", ("P1Y6D", "iso")), ("", ("", "D")), (None, ("", "D")),
])
def test_a_policy_duration_shows_as_a_number_and_a_unit_without_changing_it(iso, parts):
    assert duration_parts(iso) == parts


def test_a_policy_typed_as_numbers_and_units_reaches_the_hsm_as_iso(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    response = client.post(f"/hsms/{hsm.name}/keys/{key_name}/rotation-policy/", {
        "rotate_after_create_n": "3", "rotate_after_create_unit": "M",
        "rotate_before_expiry_n": "", "rotate_before_expiry_unit": "D",
        "expires_after_n": "1", "expires_after_unit": "Y",
        "notify_before_expiry_n": "30", "notify_before_expiry_unit": "D"})
    assert response.status_code == 302 and response["Location"].endswith("/rotation/")
    policy = gateway.keys(hsm).get_key_rotation_policy(key_name)
    assert policy.expires_in == "P1Y"
    assert sorted((a.action, a.time_after_create, a.time_before_expiry)
                  for a in policy.lifetime_actions) == [("Notify", None, "P30D"),
                                                        ("Rotate", "P3M", None)]
    html = client.get(key_url(hsm, key_name, "rotation")).content.decode()
    assert 'name="rotate_after_create_n" value="3"' in html
    assert re.search(r'id="rotation-policy">Rotate 3 months after creation; Notify 30 days '
                     r'before expiry; new versions expire after 1 year<', html)


def test_tags_are_edited_as_rows_of_name_and_value(client, admin, hsm, key_name):
    record = make_key(hsm, admin, key_name)
    client.force_login(admin)
    url = f"/hsms/{hsm.name}/keys/{key_name}/update/"
    expires = record.expires.strftime("%Y-%m-%dT%H:%M")
    ops = record.key_ops
    response = client.post(url, {"expires": expires, "key_ops": ops,
                                 "tags_name": ["owner", "", "app"],
                                 "tags_value": ["payments", "", "ledger"]})
    assert response.status_code == 302
    assert gateway.keys(hsm).get_key(key_name).properties.tags == {"owner": "payments",
                                                                   "app": "ledger"}
    for names, values, message in (
            (["owner", ""], ["payments", "orphan"], "Row 2: give the tag a name."),
            (["owner", "owner"], ["a", "b"], "Row 2: the tag owner is given twice.")):
        response = client.post(url, {"expires": expires, "key_ops": ops, "tags_name": names,
                                     "tags_value": values}, follow=True)
        assert message in response.content.decode()
    assert gateway.keys(hsm).get_key(key_name).properties.tags == {"owner": "payments",
                                                                   "app": "ledger"}
    html = client.get(key_url(hsm, key_name)).content.decode()
    assert 'name="tags_name" value="app"' in html and 'name="tags_value" value="ledger"' in html
    assert html.count('name="tags_name" value=""') == 3  # empty rows work without JavaScript


def test_the_attributes_form_leaves_enabled_alone(client, admin, hsm, key_name):
    record = make_key(hsm, admin, key_name)
    client.force_login(admin)
    client.post(f"/hsms/{hsm.name}/keys/{key_name}/update/", {
        "expires": record.expires.strftime("%Y-%m-%dT%H:%M"), "key_ops": record.key_ops,
        "tags_name": ["owner", "team"], "tags_value": ["payments", "a"]})
    props = gateway.keys(hsm).get_key(key_name).properties
    assert props.tags == {"owner": "payments", "team": "a"}  # saved, with no typed name
    assert props.enabled is True
    assert trail("key.disable") == []


# The danger zone says what each action affects; readers have none.

def test_the_danger_zone_says_what_it_affects_and_only_for_who_may(client, admin, auditor, hsm,
                                                                   key_name):
    make_key(hsm, admin, key_name)
    services.key_rotate(hsm=hsm, name=key_name, actor=admin, request_id="r")
    client.force_login(admin)
    html = client.get(key_url(hsm, key_name)).content.decode()
    zone = re.search(r'<section class="danger-zone".*?</section>', html, re.S)[0]
    assert "Disable this key" in zone and "Delete this key" in zone
    assert "all 2 versions" in zone and "every application that uses it fails at once" in zone
    rotation = client.get(key_url(hsm, key_name, "rotation")).content.decode()
    assert "Clear the rotation policy" in re.search(
        r'<section class="danger-zone".*?</section>', rotation, re.S)[0]
    client.force_login(auditor)
    for tab in TABS:
        assert "danger-zone" not in client.get(key_url(hsm, key_name, tab)).content.decode()


def test_disable_and_enable_are_commands_with_the_typed_name_for_disable(client, admin, hsm,
                                                                        key_name):
    make_key(hsm, admin, key_name)
    client.force_login(admin)
    base = f"/hsms/{hsm.name}/keys/{key_name}"
    client.post(f"{base}/disable/", {"confirm_name": "nope"})
    assert gateway.keys(hsm).get_key(key_name).properties.enabled is True
    client.post(f"{base}/disable/", {"confirm_name": key_name})
    assert gateway.keys(hsm).get_key(key_name).properties.enabled is False
    html = client.get(base + "/").content.decode()
    assert f'action="{base}/enable/"' in html and "Disable this key" not in html
    client.post(f"{base}/enable/")
    assert gateway.keys(hsm).get_key(key_name).properties.enabled is True
    assert [row[:2] for row in trail("key.disable", "key.enable")] == [
        ("key.disable", "intent"), ("key.disable", "succeeded"),
        ("key.enable", "intent"), ("key.enable", "succeeded")]


def test_object_pages_write_nothing_inline(client, admin, hsm, key_name):
    from tests.portal.test_security import INLINE, _external_urls

    version = make_key(hsm, admin, key_name).version
    client.force_login(admin)
    base = f"/hsms/{hsm.name}"
    for path in [key_url(hsm, key_name, tab) for tab in TABS] + [
            f"{base}/keys/{key_name}/versions/{version}/disable/", f"{base}/",
            f"{base}/settings/", f"{base}/jobs/", f"{base}/activity/"]:
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert _external_urls(html) == [] and INLINE.findall(html) == [], path


def test_a_deleted_keys_page_offers_recover_and_purge_only(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    run_approved(services.key_delete, hsm=hsm, name=key_name, actor=admin, request_id="r",
                 confirm_name=key_name)
    client.force_login(admin)
    html = client.get(key_url(hsm, key_name)).content.decode()
    assert "This key is deleted. It can be recovered until" in html
    assert f'action="/hsms/{hsm.name}/deleted-keys/{key_name}/recover/"' in html
    zone = re.search(r'<section class="danger-zone".*?</section>', html, re.S)[0]
    assert "Purge this key" in zone and "can never be read again" in zone
    assert "Rotate now" not in html and "Disable this key" not in html
    assert '<span class="pill pill-bad">Deleted</span>' in html
    versions = client.get(key_url(hsm, key_name, "versions")).content.decode()
    assert "Disable…" not in versions and "public.pem" not in versions
