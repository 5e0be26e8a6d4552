"""The key pages through Django's test client: cache age, the create form's preset, the
rotation-policy form and the list's filters (the browser tests are in tests/e2e/)."""
import uuid

import pytest
from django.utils import timezone

from keys_app import services
from keys_app.models import InventoryState, KeyRecord
from keys_app.spec import spec_from_request
from portal import gateway
from portal.audit.models import AuditEvent


def make_key(hsm, actor, name: str, **extra) -> KeyRecord:
    spec = spec_from_request({"name": name, "preset": "cmk-wrapping",
                              "tags": {"owner": "payments"}, **extra})
    return services.key_create(hsm=hsm, spec=spec, actor=actor, request_id=uuid.uuid4().hex)


# Item 9: every page under the HSM's key tabs tells the same cache age.

def test_every_key_page_tells_the_same_cache_age(client, admin, hsm, key_name):
    make_key(hsm, admin, key_name)
    services.key_delete(hsm=hsm, name=key_name, actor=admin, request_id="r",
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
