"""Directory look-ups (portal.gateway.directory) against the emulator's Microsoft Graph."""
import logging
import uuid

import pytest

from portal.errors import BadInput, Throttled
from portal.gateway import directory
from portal.gateway.clients import reset_clients


@pytest.fixture
def graph(azure_settings, emulator):
    """The gateway pointed at the emulator (Graph included), with an empty name cache."""
    assert azure_settings.AZURE_GRAPH_URL == emulator.endpoints["graph"]
    directory.clear_cache()
    azure_settings.AZURE_RETRY_TOTAL = 0  # one call per look-up: faults below are seen as they are
    yield azure_settings
    emulator.clear_graph_faults()
    directory.clear_cache()
    reset_clients()


@pytest.fixture
def people(emulator):
    tag = uuid.uuid4().hex[:8]
    user = emulator.create_user(f"linus.{tag}@contoso.test", display_name=f"Linus Kaur {tag}")
    app = emulator.create_principal(f"Rotation worker {tag}")
    group = emulator.create_group(f"Key custodians {tag}")
    return {"tag": tag, "user": user, "app": app, "group": group}


def test_principals_by_ids_names_users_service_principals_and_groups(graph, people):
    unknown, local = str(uuid.uuid4()), "local:7"
    ids = [people["user"]["object_id"], people["app"]["object_id"], people["group"]["object_id"], unknown, local]
    found = directory.principals_by_ids(ids)
    assert list(found) == ids
    assert found[people["user"]["object_id"]] == {
        "id": people["user"]["object_id"], "display_name": f"Linus Kaur {people['tag']}", "kind": "user",
        "upn": people["user"]["user_principal_name"], "app_id": "", "resolved": True}
    app = found[people["app"]["object_id"]]
    assert (app["kind"], app["app_id"], app["display_name"]) == (
        "service_principal", people["app"]["client_id"], f"Rotation worker {people['tag']}")
    assert found[people["group"]["object_id"]]["kind"] == "group"
    assert found[unknown] == directory.unresolved(unknown)
    assert found[local]["resolved"] is False


def test_more_than_1000_ids_go_in_batches_of_1000(graph, people, caplog):
    ids = [str(uuid.uuid4()) for _ in range(1500)] + [people["user"]["object_id"]]
    with caplog.at_level(logging.INFO, logger="azure.core.pipeline.policies.http_logging_policy"):
        found = directory.principals_by_ids(ids)
    calls = [r for r in caplog.records if "directoryObjects/getByIds" in r.getMessage()
             and "Request URL" in r.getMessage()]
    assert len(calls) == 2
    assert len(found) == 1501
    assert [p["id"] for p in found.values() if p["resolved"]] == [people["user"]["object_id"]]
    assert all("Bearer" not in r.getMessage() or "REDACTED" in r.getMessage() for r in caplog.records)


def test_names_are_cached_briefly_and_a_directory_failure_leaves_ids_unnamed(graph, people):
    user_id, app_id = people["user"]["object_id"], people["app"]["object_id"]
    assert directory.principals_by_ids([user_id])[user_id]["resolved"] is True
    graph.AZURE_GRAPH_URL = "https://127.0.0.1:9"  # nothing listens there
    reset_clients()
    found = directory.principals_by_ids([user_id, app_id])
    assert found[user_id]["resolved"] is True  # from the cache
    assert found[app_id] == directory.unresolved(app_id)  # the directory failed: no name, no error


def test_principal_search_finds_users_and_apps_by_name_upn_object_id_and_app_id(graph, people):
    tag = people["tag"]
    by_name = directory.principal_search(f"Kaur {tag}")
    assert [p["id"] for p in by_name] == [people["user"]["object_id"]]
    by_upn = directory.principal_search(people["user"]["user_principal_name"])
    assert [p["upn"] for p in by_upn] == [people["user"]["user_principal_name"]]
    apps = directory.principal_search(f"rotation worker {tag}")
    assert [(p["kind"], p["app_id"]) for p in apps] == [("service_principal", people["app"]["client_id"])]
    assert [p["id"] for p in directory.principal_search(people["app"]["client_id"])] == [
        people["app"]["object_id"]]
    assert [p["kind"] for p in directory.principal_search(people["user"]["object_id"])] == ["user"]
    assert directory.principal_search(f"nobody {tag}") == []


@pytest.mark.parametrize("text", ["", "   ", "x" * 121, 'a" OR "b', "a\\b", "a)"])
def test_principal_search_refuses_empty_long_or_unsafe_text(graph, text):
    with pytest.raises(BadInput) as refused:
        directory.principal_search(text)
    assert refused.value.code == "directory_bad_query"
    assert refused.value.message.endswith(".")


def test_principal_search_says_why_when_the_directory_cannot_answer(graph):
    graph.AZURE_GRAPH_URL = "https://127.0.0.1:9"
    reset_clients()
    # The emulator's authority issues no token for an address it does not serve.
    with pytest.raises(directory.DirectoryUnavailable) as no_token:
        directory.principal_search("anyone")
    assert no_token.value.status == 503
    assert no_token.value.message == ("The portal could not get a token for the directory (Microsoft Graph); "
                                      "check its credential settings.")


def test_graph_refusals_become_sentences_for_search_and_unnamed_ids_for_look_ups(graph, emulator, people):
    emulator.fail_graph("GET", "/v1.0/users", status=403)
    with pytest.raises(directory.DirectoryUnavailable) as denied:
        directory.principal_search("anyone")
    assert denied.value.code == "directory_forbidden"
    assert "grant it Directory.Read.All" in denied.value.message
    emulator.clear_graph_faults()

    emulator.fail_graph("GET", "/v1.0/servicePrincipals", status=429, retry_after=1)
    with pytest.raises(Throttled) as busy:
        directory.principal_search("anyone")
    assert busy.value.message == "The directory (Microsoft Graph) is busy; try again in a minute."
    emulator.clear_graph_faults()

    emulator.fail_graph("POST", "/v1.0/directoryObjects/getByIds", status=503, count=1)
    user_id = people["user"]["object_id"]
    assert directory.principals_by_ids([user_id]) == {user_id: directory.unresolved(user_id)}
    # A failure is not cached: the next look-up names the user.
    assert directory.principals_by_ids([user_id])[user_id]["display_name"] == f"Linus Kaur {people['tag']}"
