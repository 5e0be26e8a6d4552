"""Who may do what with keys: admin everything, auditor and approver read-only, outsider nothing."""
import pytest

OWNER = {"owner": "payments"}


@pytest.fixture
def existing_key(api_as, admin, hsm, key_name):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                                  {"name": key_name, "preset": "aes", "tags": OWNER}, format="json")
    assert response.status_code == 201
    return key_name


def _api_calls(hsm, name):
    base = f"/api/v1/hsms/{hsm.name}"
    return [
        ("get", f"{base}/keys/", None),
        ("get", f"{base}/keys/{name}/", None),
        ("get", f"{base}/keys/{name}/versions/", None),
        ("get", f"{base}/deleted-keys/", None),
        ("post", f"{base}/keys/", {"name": "other-key", "preset": "aes", "tags": OWNER}),
        ("patch", f"{base}/keys/{name}/", {"tags": {"owner": "x"}}),
        ("post", f"{base}/keys/{name}/rotate/", None),
        ("put", f"{base}/keys/{name}/rotation-policy/", {"expires_after": "P1Y", "lifetime_actions": [
            {"action": "Rotate", "time_after_create": "P90D"}]}),
        ("post", f"{base}/keys/{name}/backup/", None),
        ("delete", f"{base}/keys/{name}/", {"confirm_name": name}),
        ("post", f"{base}/deleted-keys/{name}/purge/", {"confirm_name": name}),
        ("post", f"{base}/keys/sync/", None),
    ]


@pytest.mark.parametrize("role", ["auditor", "approver"])
def test_readers_read_but_never_change_keys(api_as, personas, hsm, existing_key, role):
    client = api_as(personas[role])
    for method, url, body in _api_calls(hsm, existing_key):
        response = getattr(client, method)(url, body, format="json")
        expected = 200 if method == "get" else 403
        assert response.status_code == expected, (role, method, url, response.content[:200])


def test_outsider_gets_nothing(api_as, outsider, hsm, existing_key):
    client = api_as(outsider)
    for method, url, body in _api_calls(hsm, existing_key):
        assert getattr(client, method)(url, body, format="json").status_code == 403, url


def test_pages_follow_the_same_rules(client, personas, hsm, existing_key):
    pages = [f"/hsms/{hsm.name}/keys/", f"/hsms/{hsm.name}/keys/{existing_key}/",
             f"/hsms/{hsm.name}/deleted-keys/"]
    actions = [f"/hsms/{hsm.name}/keys/{existing_key}/rotate/",
               f"/hsms/{hsm.name}/keys/{existing_key}/delete/", f"/hsms/{hsm.name}/keys/refresh/"]
    for role in ("auditor", "approver", "outsider"):
        client.force_login(personas[role])
        for url in pages:
            assert client.get(url).status_code == (403 if role == "outsider" else 200), (role, url)
        for url in actions:
            assert client.post(url, {"confirm_name": existing_key}).status_code == 403, (role, url)
        assert client.get(f"/hsms/{hsm.name}/keys/new/").status_code == 403
    client.force_login(personas["auditor"])
    detail = client.get(f"/hsms/{hsm.name}/keys/{existing_key}/").content.decode()
    assert "Rotate now" not in detail and "Delete key" not in detail


def test_key_pages_load_nothing_from_outside_and_write_nothing_inline(client, admin, hsm,
                                                                     existing_key):
    from tests.portal.test_security import INLINE, _external_urls

    client.force_login(admin)
    for path in (f"/hsms/{hsm.name}/keys/", f"/hsms/{hsm.name}/keys/{existing_key}/",
                 f"/hsms/{hsm.name}/keys/new/", f"/hsms/{hsm.name}/keys/import/",
                 f"/hsms/{hsm.name}/deleted-keys/", "/hsms/"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert _external_urls(html) == [] and INLINE.findall(html) == [], path
