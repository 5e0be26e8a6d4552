"""Anonymous visitors of the API docs go to sign-in (the schema answers 401), and a refusal
(403, oversized body) is one log line, not a traceback."""
import io
import logging

import pytest


def test_anonymous_docs_visitors_go_to_sign_in(client):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/api/docs/"


def test_anonymous_schema_callers_get_401_in_the_error_format(api_client):
    response = api_client.get("/api/schema/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.fixture
def console():
    """What the configured console handler (LOGGING's "console") writes, for one test."""
    handler = next(h for h in logging.getLogger().handlers
                   if isinstance(h, logging.StreamHandler) and h.get_name() == "console")
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_a_403_is_one_log_line_without_a_traceback(client, api_as, auditor, caplog, console):
    client.force_login(auditor)
    assert client.post("/hsms/", {"name": "x"}).status_code == 403  # a page
    assert api_as(auditor).post("/api/v1/hsms/", {}, format="json").status_code == 403  # API
    forbidden = [r for r in caplog.records if "Forbidden" in r.getMessage()]
    assert len(forbidden) == 2
    assert [r.exc_info for r in forbidden] == [None, None]
    lines = console.getvalue().splitlines()
    assert "Traceback" not in console.getvalue()
    assert len([line for line in lines if "Forbidden" in line]) == 2


def test_an_oversized_form_is_one_log_line(client, admin, caplog, console):
    client.force_login(admin)
    assert client.post("/hsms/", {"region": "x" * (3 * 1024 * 1024)}).status_code == 413
    assert "Traceback" not in console.getvalue()
    refused = [r for r in caplog.records if r.name == "django.security.RequestDataTooBig"]
    assert len(refused) == 1 and refused[0].exc_info is None
