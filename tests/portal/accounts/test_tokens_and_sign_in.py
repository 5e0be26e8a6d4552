"""API tokens (stored hashed), drf_create_token, sign-in auditing."""
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.accounts.models import ApiToken
from portal.audit.models import AuditEvent
from tests.factories import PASSWORD


def _create_token(username: str, *args) -> str:
    out = io.StringIO()
    call_command("drf_create_token", username, *args, stdout=out)
    return out.getvalue().split()[2]


def test_drf_create_token_prints_a_token_that_authenticates(api_client, auditor):
    raw = _create_token(auditor.username)
    stored = ApiToken.objects.get(user=auditor)
    assert raw not in (stored.digest, stored.prefix) and stored.prefix == raw[:8]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert api_client.get("/api/v1/audit-events/").status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api_client.get("/api/v1/audit-events/").status_code == 401


def test_a_token_is_shown_once_and_reset_replaces_it(api_client, auditor):
    first = _create_token(auditor.username)
    with pytest.raises(CommandError, match="cannot be shown again"):
        _create_token(auditor.username)
    second = _create_token(auditor.username, "-r")
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert api_client.get("/api/v1/audit-events/").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert api_client.get("/api/v1/audit-events/").status_code == 200


def test_sign_in_and_failures_are_audited(client, admin):
    response = client.post("/accounts/login/", {"username": admin.username, "password": "wrong"})
    assert response.status_code == 200
    response = client.post("/accounts/login/", {"username": admin.username, "password": PASSWORD})
    assert response.status_code == 302
    outcomes = list(AuditEvent.objects.filter(action="auth.sign_in").order_by("seq")
                    .values_list("outcome", flat=True))
    assert outcomes == ["denied", "succeeded"]
    assert not AuditEvent.objects.filter(detail__icontains="wrong").exists()


def test_seed_demo_users_creates_one_user_per_role_once(db):
    out = io.StringIO()
    call_command("seed_demo_users", stdout=out)
    assert out.getvalue().count("with password") == 3
    out = io.StringIO()
    call_command("seed_demo_users", stdout=out)
    assert "with password" not in out.getvalue()


def test_repeated_failures_lock_sign_in_even_with_the_right_password(client, admin):
    for _ in range(5):
        client.post("/accounts/login/", {"username": admin.username, "password": "guess"})
    response = client.post("/accounts/login/", {"username": admin.username, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session
