"""One error shape everywhere: `fields` maps a field name to a list of sentences; a method a
path does not take is 405 (with Allow), not 403."""
import pytest


def _assert_fields_shape(error: dict) -> dict:
    fields = error["fields"]
    assert isinstance(fields, dict) and fields
    for name, sentences in fields.items():
        assert isinstance(name, str)
        assert isinstance(sentences, list) and sentences
        assert all(isinstance(text, str) and text for text in sentences), (name, sentences)
    return fields


def test_nested_serializer_errors_are_flattened_to_dotted_names(api_as, admin, hsm):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/", {
        "name": "shape-test", "kty": "RSA-HSM", "key_ops": ["wrapKey", "x" * 40],
        "tags": {"owner": ["not", "text"]}}, format="json")
    assert response.status_code == 400
    fields = _assert_fields_shape(response.json()["error"])
    assert "key_ops.1" in fields and "tags.owner" in fields
    assert "key_ops.1" in response.json()["error"]["message"]


def test_form_errors_have_the_same_shape(api_as, admin, hsm):
    # The key list's filters are a Django form, whose own error format is a list of dicts.
    response = api_as(admin).get(f"/api/v1/hsms/{hsm.name}/keys/?kty=DSA")
    assert response.status_code == 400
    fields = _assert_fields_shape(response.json()["error"])
    assert list(fields) == ["kty"]


def test_service_errors_have_the_same_shape(api_as, admin, db):
    response = api_as(admin).post("/api/v1/hsms/", {"name": "Bad Name", "uri": "https://x"},
                                  format="json")
    assert response.status_code == 400
    assert list(_assert_fields_shape(response.json()["error"])) == ["name"]


def test_flat_fields_covers_every_shape_drf_and_django_produce():
    from portal.errors import flat_fields

    assert flat_fields({"__all__": [{"message": "Whole form.", "code": "x"}],
                        "a": ["One.", "Two."], "b": {"0": ["Item."], "k": {"deep": ["D."]}},
                        "c": [{"x": ["In a list."]}, {}], "d": "Plain."}) == {
        "non_field_errors": ["Whole form."], "a": ["One.", "Two."], "b.0": ["Item."],
        "b.k.deep": ["D."], "c.0.x": ["In a list."], "d": ["Plain."]}
    assert flat_fields(["Whole request."]) == {"non_field_errors": ["Whole request."]}
    assert flat_fields(None) == {}


@pytest.mark.parametrize("method,path,allowed", [
    ("put", "/api/v1/hsms/", {"GET", "POST"}),
    ("delete", "/api/v1/jobs/", {"GET", "POST"}),
    ("patch", "/api/v1/audit-events/", {"GET"}),
    ("post", "/api/v1/hsms/primary/", {"GET", "DELETE"}),
])
def test_api_method_not_served_is_405_with_allow(api_as, admin, auditor, method, path, allowed):
    for user in (admin, auditor):
        response = getattr(api_as(user), method)(path, {}, format="json")
        assert response.status_code == 405, (user, path, response.content)
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert allowed <= {m.strip() for m in response["Allow"].split(",")}


def test_api_head_reads_like_get(api_as, auditor):
    assert api_as(auditor).head("/api/v1/hsms/").status_code == 200


def test_page_method_not_served_is_405(client, admin, auditor):
    for user in (admin, auditor):
        client.force_login(user)
        response = client.put("/hsms/")
        assert response.status_code == 405
        assert set(response["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
        assert client.delete("/jobs/").status_code == 405
    client.logout()
    assert client.put("/hsms/").status_code == 302  # anonymous: sign in first
