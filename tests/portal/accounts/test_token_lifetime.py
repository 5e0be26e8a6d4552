"""API tokens expire, and can be listed and revoked by their owner and by admins (audited)."""
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from portal.accounts.models import ApiToken
from portal.audit.models import AuditEvent


def _create_token(username: str, *args) -> tuple[str, str]:
    out = io.StringIO()
    call_command("drf_create_token", username, *args, stdout=out)
    return out.getvalue().split()[2], out.getvalue()


def _token_client(api_client, raw):
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return api_client


def test_a_token_expires_after_the_default_90_days(auditor):
    _, printed = _create_token(auditor.username)
    token = ApiToken.objects.get(user=auditor)
    assert abs(token.expires - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    assert f"expires {token.expires:%Y-%m-%d %H:%M} UTC" in printed
    issued = AuditEvent.objects.get(action="token.issue")
    assert issued.detail["expires"] == token.expires.isoformat()


def test_the_lifetime_follows_the_setting_and_days_are_bounded(settings, auditor, admin):
    settings.PORTAL_API_TOKEN_DAYS = 7
    _create_token(auditor.username)
    expires = ApiToken.objects.get(user=auditor).expires
    assert abs(expires - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    _create_token(admin.username, "--days", "365")
    for days in ("0", "366", "-1"):
        with pytest.raises(CommandError, match="from 1 to 365 days"):
            _create_token(admin.username, "-r", "--days", days)
    assert ApiToken.objects.filter(user=admin).count() == 1


def test_an_expired_token_is_refused(api_client, auditor):
    raw, _ = _create_token(auditor.username)
    assert _token_client(api_client, raw).get("/api/v1/audit-events/").status_code == 200
    ApiToken.objects.filter(user=auditor).update(expires=timezone.now() - timedelta(seconds=1))
    response = api_client.get("/api/v1/audit-events/")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_an_expired_token_is_replaced_without_reset(api_client, auditor):
    first, _ = _create_token(auditor.username)
    ApiToken.objects.filter(user=auditor).update(expires=timezone.now() - timedelta(days=1))
    second, _ = _create_token(auditor.username)
    assert second != first
    assert _token_client(api_client, second).get("/api/v1/audit-events/").status_code == 200


def test_others_see_only_their_own_tokens_and_admins_see_all(api_client, admin, auditor,
                                                            approver):
    for user in (admin, auditor, approver):
        _create_token(user.username)
    raw, _ = _create_token(approver.username, "-r")
    listed = _token_client(api_client, raw).get("/api/v1/tokens/")
    assert listed.status_code == 200
    assert [row["user"] for row in listed.json()] == [approver.username]
    row = listed.json()[0]
    assert row["prefix"] == raw[:8] and row["expired"] is False
    assert raw not in listed.content.decode()
    api_client.credentials()
    api_client.force_authenticate(admin)
    everyone = api_client.get("/api/v1/tokens/").json()
    assert sorted(row["user"] for row in everyone) == sorted(
        [admin.username, auditor.username, approver.username])


def test_an_owner_revokes_their_token_and_it_is_audited(api_client, auditor):
    raw, _ = _create_token(auditor.username)
    token = ApiToken.objects.get(user=auditor)
    response = _token_client(api_client, raw).delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 204
    assert api_client.get("/api/v1/tokens/").status_code == 401
    revoked = AuditEvent.objects.get(action="token.revoke")
    assert (revoked.actor_name, revoked.target) == (auditor.username, f"user:{auditor.username}")
    assert revoked.detail["prefix"] == raw[:8] and raw not in str(revoked.detail)


def test_only_the_owner_or_an_admin_may_revoke(api_client, admin, auditor, approver):
    raw, _ = _create_token(auditor.username)
    token = ApiToken.objects.get(user=auditor)
    api_client.force_authenticate(approver)
    response = api_client.delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert not AuditEvent.objects.filter(action="token.revoke").exists()
    api_client.force_authenticate(admin)
    assert api_client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert api_client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 404
    revoked = AuditEvent.objects.get(action="token.revoke")
    assert (revoked.actor_name, revoked.target) == (admin.username, f"user:{auditor.username}")
    api_client.force_authenticate(None)
    assert _token_client(api_client, raw).get("/api/v1/audit-events/").status_code == 401


def test_an_out_of_range_token_id_is_a_404(api_client, admin):
    api_client.force_authenticate(admin)
    response = api_client.delete(f"/api/v1/tokens/{10 ** 30}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
