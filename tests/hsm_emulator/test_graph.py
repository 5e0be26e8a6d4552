"""The emulator's Microsoft Graph subset, with tokens from its authority (azure-identity)."""

import ssl
import uuid

import httpx
import pytest

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture(scope="module")
def graph(emulator):
    """GET/POST on the emulator's Graph with a Graph token of the bootstrap admin."""
    context = ssl.create_default_context(cafile=emulator.ca_bundle)
    token = emulator.credential().get_token(GRAPH_SCOPE).token

    def send(method: str, path: str, token_value=None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {token_value or token}")
        return httpx.request(method, emulator.endpoints["graph"] + path, headers=headers, verify=context,
                             timeout=30, **kwargs)
    return send


@pytest.fixture(scope="module")
def directory(emulator):
    """A user, a group and two applications with recognisable names."""
    tag = uuid.uuid4().hex[:6]
    api = emulator.create_principal(f"Portal {tag}", app_roles=["admin", "auditor"])
    worker = emulator.create_principal(f"Key rotator {tag}")
    user = emulator.create_user(f"grace.{tag}@contoso.test", display_name=f"Grace Hopper {tag}")
    group = emulator.create_group(f"HSM operators {tag}", members=(user["object_id"],))
    return {"tag": tag, "api": api, "worker": worker, "user": user, "group": group}


def test_get_by_ids_returns_each_kind_with_its_odata_type_and_leaves_unknown_ids_out(graph, directory):
    ids = [directory["user"]["object_id"], directory["worker"]["object_id"], directory["group"]["object_id"],
           str(uuid.uuid4())]
    answer = graph("POST", "/v1.0/directoryObjects/getByIds", json={"ids": ids})
    assert answer.status_code == 200
    body = answer.json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#directoryObjects")
    found = {item["id"]: item for item in body["value"]}
    assert set(found) == set(ids[:3])
    user = found[directory["user"]["object_id"]]
    assert user["@odata.type"] == "#microsoft.graph.user"
    assert user["userPrincipalName"] == directory["user"]["user_principal_name"]
    assert user["displayName"] == f"Grace Hopper {directory['tag']}"
    sp = found[directory["worker"]["object_id"]]
    assert sp["@odata.type"] == "#microsoft.graph.servicePrincipal"
    assert sp["appId"] == directory["worker"]["client_id"]
    assert sp["servicePrincipalNames"][0] == directory["worker"]["client_id"]
    assert found[directory["group"]["object_id"]]["@odata.type"] == "#microsoft.graph.group"

    only_users = graph("POST", "/v1.0/directoryObjects/getByIds", json={"ids": ids, "types": ["user"]}).json()
    assert [item["id"] for item in only_users["value"]] == [directory["user"]["object_id"]]


def test_get_by_ids_refuses_more_than_1000_ids_and_ids_that_are_not_guids(graph):
    many = graph("POST", "/v1.0/directoryObjects/getByIds", json={"ids": [str(uuid.uuid4()) for _ in range(1001)]})
    assert many.status_code == 400 and many.json()["error"]["code"] == "Request_BadRequest"
    assert graph("POST", "/v1.0/directoryObjects/getByIds", json={"ids": ["bob"]}).status_code == 400
    exactly = graph("POST", "/v1.0/directoryObjects/getByIds", json={"ids": [str(uuid.uuid4()) for _ in range(1000)]})
    assert exactly.status_code == 200 and exactly.json()["value"] == []


def test_filters_the_cli_and_the_portal_use(graph, directory):
    upn = directory["user"]["user_principal_name"]
    users = graph("GET", "/v1.0/users", params={"$filter": f"userPrincipalName eq '{upn}'"}).json()
    assert users["@odata.context"].endswith("#users")
    assert [u["id"] for u in users["value"]] == [directory["user"]["object_id"]]

    app_id = directory["worker"]["client_id"]
    by_app = graph("GET", "/v1.0/servicePrincipals", params={"$filter": f"appId eq '{app_id}'"}).json()["value"]
    assert [sp["id"] for sp in by_app] == [directory["worker"]["object_id"]]
    spn = f"api://{directory['api']['client_id']}"
    by_name = graph("GET", "/v1.0/servicePrincipals",
                    params={"$filter": f"servicePrincipalNames/any(c:c eq '{spn}')"}).json()["value"]
    assert [sp["id"] for sp in by_name] == [directory["api"]["object_id"]]
    assert [r["value"] for r in by_name[0]["appRoles"]] == ["admin", "auditor"]

    starts = graph("GET", "/v1.0/servicePrincipals",
                   params={"$filter": f"startswith(displayName,'key rotator {directory['tag']}')"}).json()["value"]
    assert [sp["appId"] for sp in starts] == [app_id]
    either = graph("GET", "/v1.0/users", params={
        "$filter": f"id eq '{directory['user']['object_id']}' or userPrincipalName eq 'nobody@contoso.test'"})
    assert len(either.json()["value"]) == 1
    bad = graph("GET", "/v1.0/users", params={"$filter": "jobTitle gt 'a'"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_search_needs_eventual_consistency_and_matches_word_prefixes(graph, directory):
    search = {"$search": f'"displayName:hopper {directory["tag"]}"'}
    refused = graph("GET", "/v1.0/users", params=search)
    assert refused.status_code == 400 and "ConsistencyLevel" in refused.json()["error"]["message"]
    found = graph("GET", "/v1.0/users", params={**search, "$count": "true"},
                  headers={"ConsistencyLevel": "eventual"}).json()
    assert [u["id"] for u in found["value"]] == [directory["user"]["object_id"]]
    assert found["@odata.count"] == 1
    apps = graph("GET", "/v1.0/servicePrincipals", params={"$search": f'"displayName:rotator {directory["tag"]}"'},
                 headers={"ConsistencyLevel": "eventual"}).json()["value"]
    assert [sp["appId"] for sp in apps] == [directory["worker"]["client_id"]]


def test_single_objects_and_graph_errors(graph, directory):
    user = graph("GET", f"/v1.0/users/{directory['user']['user_principal_name']}").json()
    assert user["id"] == directory["user"]["object_id"] and user["@odata.context"].endswith("#users/$entity")
    assert graph("GET", f"/v1.0/servicePrincipals/{directory['api']['object_id']}").json()["appId"] == \
        directory["api"]["client_id"]
    assert graph("GET", f"/v1.0/servicePrincipals(appId='{directory['api']['client_id']}')").json()["id"] == \
        directory["api"]["object_id"]
    assert graph("GET", f"/v1.0/groups/{directory['group']['object_id']}").json()["securityEnabled"] is True
    selected = graph("GET", f"/v1.0/users/{directory['user']['object_id']}", params={"$select": "displayName"})
    assert set(selected.json()) == {"@odata.context", "id", "displayName"}
    missing = graph("GET", f"/v1.0/users/{uuid.uuid4()}")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "Request_ResourceNotFound" and error["innerError"]["request-id"]
    # A user's id under servicePrincipals is not found either.
    assert graph("GET", f"/v1.0/servicePrincipals/{directory['user']['object_id']}").status_code == 404


def test_paging_follows_next_links(graph, emulator):
    tag = uuid.uuid4().hex[:6]
    made = {emulator.create_principal(f"pager {tag} {i}")["object_id"] for i in range(5)}
    url = f"/v1.0/servicePrincipals?$filter=startswith(displayName,'pager {tag}')&$top=2"
    seen, pages = [], 0
    while url:
        body = graph("GET", url.removeprefix(emulator.endpoints["graph"])).json()
        seen += [sp["id"] for sp in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
    assert set(seen) == made and len(seen) == 5 and pages == 3


def test_tokens_are_checked_and_me_needs_a_user(graph, emulator, directory):
    no_token = graph("GET", "/v1.0/users", headers={"Authorization": ""})
    assert no_token.status_code == 401 and no_token.json()["error"]["code"] == "InvalidAuthenticationToken"
    hsm_token = emulator.credential().get_token("https://managedhsm.azure.net/.default").token
    assert graph("GET", "/v1.0/users", token_value=hsm_token).status_code == 401
    expired = emulator.mint_token({"exp": 1}, audience="https://graph.microsoft.com")
    assert graph("GET", "/v1.0/users", token_value=expired).status_code == 401
    own_url = emulator.credential().get_token(emulator.endpoints["graph"] + "/.default").token
    assert graph("GET", "/v1.0/users", token_value=own_url).status_code == 200

    assert graph("GET", "/v1.0/me").status_code == 400  # an app-only token
    delegated = emulator.mint_token({"oid": directory["user"]["object_id"], "idtyp": "user"},
                                    audience="https://graph.microsoft.com")
    me = graph("GET", "/v1.0/me", token_value=delegated).json()
    assert me["userPrincipalName"] == directory["user"]["user_principal_name"]


def test_injected_faults_answer_in_graphs_error_envelope(graph, emulator):
    emulator.fail_graph("POST", "/v1.0/directoryObjects/getByIds", status=429, count=1, retry_after=2)
    try:
        throttled = graph("POST", "/v1.0/directoryObjects/getByIds", json={"ids": []})
        assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
        assert throttled.json()["error"]["code"] == "TooManyRequests"
        assert graph("POST", "/v1.0/directoryObjects/getByIds", json={"ids": []}).status_code == 200  # count=1
        emulator.fail_graph("GET", "/v1.0/users", status=403)
        denied = graph("GET", "/v1.0/users")
        assert (denied.status_code, denied.json()["error"]["code"]) == (403, "Authorization_RequestDenied")
    finally:
        emulator.clear_graph_faults()
    assert graph("GET", "/v1.0/users").status_code == 200
