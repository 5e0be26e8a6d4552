"""The approvals API and the 202 answers of approvable key actions are in the OpenAPI schema."""
from drf_spectacular.generators import SchemaGenerator


def test_the_approvals_api_is_documented():
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    base = "/api/v1/approvals/"
    assert set(paths[base]) == {"get"}
    assert {p["name"] for p in paths[base]["get"]["parameters"]} >= {"box", "status", "operation"}
    for action in ("approve", "deny", "cancel"):
        operation = paths[f"{base}{{approval_id}}/{action}/"]["post"]
        # The error envelope on the refusals (403 self-approval, 404, 409 not pending).
        for status in ("200", "403", "404", "409"):
            assert status in operation["responses"], (action, status)
        assert operation["responses"]["403"]["content"]["application/json"]["schema"][
            "$ref"] == "#/components/schemas/ErrorOutput"
    assert "self_approval_refused" in paths[f"{base}{{approval_id}}/approve/"]["post"][
        "description"]
    keys = "/api/v1/hsms/{hsm_id}"
    for path, method in ((f"{keys}/keys/{{name}}/", "delete"),
                         (f"{keys}/deleted-keys/{{name}}/purge/", "post"),
                         (f"{keys}/keys/{{name}}/rotation-policy/", "delete")):
        responses = paths[path][method]["responses"]
        assert responses["202"]["content"]["application/json"]["schema"]["$ref"] == \
            "#/components/schemas/ApprovalPendingOutput", path
        assert "200" not in responses and "204" not in responses, path
