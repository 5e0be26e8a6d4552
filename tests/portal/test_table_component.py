"""The table component: keyset paging (every row once, in order, NULLs last), sortable
headers, per-user column and density preferences (audited), empty states per role, names
with copy buttons, and the audit trail's readable details."""
import re
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from keys_app.models import KeyRecord
from portal.accounts.models import TablePreference
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.audit.views import detail_fields
from portal.gateway.models import HsmInstance
from portal.tables import table_spec

UTC = dt_timezone.utc


@pytest.fixture
def inventory(db):
    hsm = HsmInstance.objects.create(name="big", uri="https://big.managedhsm.azure.net")
    base = datetime(2027, 1, 1, tzinfo=UTC)
    for n in range(130):
        # Ties on expiry (three keys share each date) and a tail without expiry.
        expires = None if n % 10 == 0 else base + timedelta(days=n // 3)
        KeyRecord.objects.create(hsm=hsm, name=f"key-{n:03d}", kty="RSA-HSM", expires=expires,
                                 created_on=base - timedelta(hours=n % 7))
    return hsm


def _names(html: str) -> list[str]:
    return re.findall(r'<td class="c1 key-name"><span class="dt-id"><span class="mono trunc" '
                      r'title="([^"]+)"', html)


def _walk(client, url: str) -> list[str]:
    """Follow the Next links from url; return every key name in page order."""
    names, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        names += _names(html)
        pages += 1
        found = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
        if url.startswith("?"):
            url = response.request["PATH_INFO"] + url
    assert pages > 1
    return names


@pytest.mark.parametrize("sort", ["name", "-name", "expires", "-expires", "created"])
def test_keyset_pages_hold_every_key_once_in_order(client, admin, inventory, sort):
    client.force_login(admin)
    names = _walk(client, f"/hsms/{inventory.name}/keys/?sort={sort}")

    keys = {key.name: key for key in KeyRecord.objects.filter(hsm=inventory)}
    assert sorted(names) == sorted(keys)  # every key, none twice
    field = {"name": "name", "expires": "expires", "created": "created_on"}[sort.lstrip("-")]
    descending = sort.startswith("-")

    def position(name):
        # By the column with NULLs last in either direction, then by name.
        value = getattr(keys[name], field)
        if field == "name":
            return value
        if value is None:
            return (1, 0, name)
        return (0, -value.timestamp() if descending else value.timestamp(), name)

    expected = sorted(keys, key=position, reverse=descending and field == "name")
    assert names == expected


def test_a_bad_page_cursor_is_a_400_sentence(client, admin, inventory):
    client.force_login(admin)
    for cursor in ("not-base64!", "WzEsMl0", "e30", "x" * 2000):
        response = client.get(f"/hsms/{inventory.name}/keys/?after={cursor}")
        assert response.status_code == 400
        assert "start again from the first page" in response.content.decode()


def test_sortable_headers_say_their_order_and_toggle(client, admin, inventory):
    client.force_login(admin)
    html = client.get(f"/hsms/{inventory.name}/keys/?sort=expires&q=key").content.decode()
    header = re.search(r'<th scope="col" class="c4" aria-sort="ascending"><a href="([^"]+)"', html)
    assert header, "the Expires header says it sorts ascending"
    assert "sort=-expires" in header.group(1) and "q=key" in header.group(1)
    assert 'aria-sort' not in re.search(r'<th scope="col" class="c2"[^>]*>', html).group(0)


def test_column_preferences_are_per_user_remembered_and_audited(client, admin, auditor,
                                                                 inventory):
    client.force_login(admin)
    url = f"/hsms/{inventory.name}/keys/"
    shown = ["type", "status", "expires", "versions"]
    response = client.post("/preferences/table/", {
        "table": "keys", "shown": shown, "density": "compact", "next": url})
    assert response.status_code == 302 and response["Location"] == url
    pref = TablePreference.objects.get(user=admin, table="keys")
    # Every other hideable column of the key table (apps may add columns), in its order.
    keys = table_spec("keys").column_keys()
    hidden = [column.key for column in table_spec("keys").columns
              if column.hideable and column.key not in shown]
    assert {"rotation", "tags", "created", "updated"} <= set(hidden) and "name" not in hidden
    assert pref.hidden_columns == hidden
    assert pref.density == "compact"
    event = AuditEvent.objects.filter(action="preference.set").get()
    assert (event.actor_name, event.target, event.detail["density"]) == (
        admin.username, "table:keys", "compact")

    html = client.get(url).content.decode()
    positions = " ".join(f"c{keys.index(key) + 1}" for key in hidden)
    assert keys[:9] == ["name", "type", "status", "expires", "rotation", "versions", "tags",
                        "created", "updated"]
    assert positions.startswith("c5 c7 c8 c9")
    assert f'data-hide="{positions}"' in html and 'data-density="compact"' in html
    assert 'value="tags" data-col="c7">' in html  # unchecked in the chooser
    # Another user keeps the defaults (Created is hidden until someone shows it).
    client.force_login(auditor)
    html = client.get(url).content.decode()
    assert 'data-hide="c8"' in html and 'data-density="comfortable"' in html


def test_bad_preferences_are_400_and_change_nothing(client, admin, inventory):
    client.force_login(admin)
    assert client.post("/preferences/table/", {"table": "nope", "density": "compact"}
                       ).status_code == 400
    assert client.post("/preferences/table/", {"table": "keys", "density": "tiny"}
                       ).status_code == 400
    # The name column cannot be hidden: leaving it out of "shown" does not hide it.
    client.post("/preferences/table/", {"table": "keys", "shown": ["type"],
                                        "density": "comfortable", "next": "https://evil.test/"})
    assert "name" not in TablePreference.objects.get(user=admin).hidden_columns
    assert not AuditEvent.objects.filter(action="preference.set", outcome="failed").exists()
    client.logout()
    assert client.post("/preferences/table/", {"table": "keys"}).status_code == 302


def test_preference_redirect_stays_on_the_portal(client, admin, inventory):
    client.force_login(admin)
    response = client.post("/preferences/table/", {"table": "keys", "density": "compact",
                                                   "next": "https://evil.test/"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_empty_states_offer_the_next_step_to_roles_that_may_take_it(client, admin, auditor):
    hsm = HsmInstance.objects.create(name="fresh", uri="https://fresh.managedhsm.azure.net")
    client.force_login(admin)
    html = client.get(f"/hsms/{hsm.name}/keys/").content.decode()
    assert "No keys on fresh yet." in html
    assert f'href="/hsms/{hsm.name}/keys/new/" role="button">Create key</a>' in html
    html = client.get(f"/hsms/{hsm.name}/keys/?q=zzz").content.decode()
    assert "No keys match these filters." in html and "Clear the filters" in html
    client.force_login(auditor)
    html = client.get(f"/hsms/{hsm.name}/keys/").content.decode()
    assert "An administrator can create one." in html and ">Create key</a>" not in html


def test_names_are_one_line_with_full_value_and_copy_button(client, admin, inventory):
    long_name = "payments-" + "x" * 100
    KeyRecord.objects.create(hsm=inventory, name=long_name, kty="EC-HSM", curve="P-256")
    client.force_login(admin)
    html = client.get(f"/hsms/{inventory.name}/keys/?q=payments").content.decode()
    assert f'<span class="mono trunc" title="{long_name}">' in html
    assert f'data-copy="{long_name}" aria-label="Copy key name {long_name}"' in html
    assert " style=" not in html and "<script>" not in html


def test_audit_detail_reads_as_fields_not_a_dict(client, auditor, db):
    audit_record(actor=auditor, action="key.update", target="hsm:p/key:k", request_id="r1",
                 detail={"changes": {"expires": "2027-01-01T00:00:00Z", "tags": {"env": "prod"}},
                         "key_ops": ["wrapKey", "unwrapKey"], "enabled": False,
                         "note": "y" * 300})
    assert detail_fields({"a": {"b": 1}, "c_d": None, "e": []}) == [
        ("a.b", "1"), ("c d", "—"), ("e", "—")]

    client.force_login(auditor)
    html = client.get("/audit/").content.decode()
    row = re.search(r'<span class="detail-fields" title="([^"]*)">(.*?)</span></td>', html, re.S)
    assert row, "the detail cell"
    title, cell = row.group(1), row.group(2)
    assert '<span class="df-key">changes.expires:</span> 2027-01-01T00:00:00Z' in cell
    assert '<span class="df-key">changes.tags.env:</span> prod' in cell
    assert '<span class="df-key">key ops:</span> wrapKey, unwrapKey' in cell
    assert '<span class="df-key">enabled:</span> no' in cell
    assert "y" * 80 not in cell and "y" * 79 + "…" in cell  # long values are cut
    assert "{" not in cell and "{" not in title
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+\+00:00" class="dt-time" '
                     r'title="[^"]+ UTC">', html)
