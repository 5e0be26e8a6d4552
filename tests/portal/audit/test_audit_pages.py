"""The auditor's page and API: filters, keyset paging, bad input."""
import pytest

from portal.audit.services import audit_record


@pytest.fixture
def many_events(db):
    for n in range(120):
        audit_record(actor=None, action="key.rotate" if n % 2 else "key.create",
                     target=f"hsm:primary/key:k{n % 7}", request_id=f"r{n}")


def test_api_pages_newest_first_with_a_cursor(api_as, auditor, many_events):
    client = api_as(auditor)
    first = client.get("/api/v1/audit-events/", {"action": "key.rotate"}).json()
    assert len(first["results"]) == 50
    seqs = [row["seq"] for row in first["results"]]
    assert seqs == sorted(seqs, reverse=True)
    second = client.get(first["next"]).json()
    assert second["results"][0]["seq"] < seqs[-1]
    assert all(row["action"] == "key.rotate" for row in second["results"])
    third = client.get(second["next"]).json() if second["next"] else {"results": []}
    total = len(first["results"]) + len(second["results"]) + len(third["results"])
    assert total == 60


def test_page_filters_by_target_prefix_and_outcome(client, auditor, many_events):
    client.force_login(auditor)
    response = client.get("/audit/", {"target": "hsm:primary/key:k3", "outcome": "intent"})
    assert response.status_code == 200
    events = response.context["events"]
    assert events and all(e.target == "hsm:primary/key:k3" for e in events)


def test_bad_filter_is_a_400_not_a_500(client, api_as, auditor, many_events):
    client.force_login(auditor)
    assert client.get("/audit/", {"since": "yesterday-ish"}).status_code == 400
    response = api_as(auditor).get("/api/v1/audit-events/", {"outcome": "exploded"})
    assert response.status_code == 400
    assert "outcome" in response.json()["error"]["fields"]
