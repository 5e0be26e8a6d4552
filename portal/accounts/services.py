"""Accounts: API tokens and demo users. Every change is audited."""
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from portal.accounts.models import TOKEN_PREFIX_LEN, ApiToken, token_digest
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.errors import BadInput, NotFound
from portal.permissions import ROLES

MAX_TOKEN_DAYS = 365


def api_token_issue(*, user, actor=None, reset: bool = False,
                    days: int | None = None) -> str | None:
    """Create (or with reset, replace) the user's API token; return the raw token once.

    The token expires after `days` (default PORTAL_API_TOKEN_DAYS, at most 365). Returns
    None when a live token exists and reset is False: it cannot be shown again. An expired
    token is replaced without reset. Audited (token.issue), in the same transaction.
    """
    days = settings.PORTAL_API_TOKEN_DAYS if days is None else days
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise BadInput(f"A token lasts from 1 to {MAX_TOKEN_DAYS} days.")
    with transaction.atomic():
        existing = ApiToken.objects.select_for_update().filter(user=user).first()
        if existing and not reset and not existing.is_expired:
            return None
        raw = ApiToken.new_raw()
        expires = timezone.now() + timedelta(days=days)
        audit_record(actor=actor, action="token.issue", target=f"user:{user.get_username()}",
                     outcome=AuditEvent.Outcome.RECORDED,
                     detail={"prefix": raw[:TOKEN_PREFIX_LEN], "replaced": bool(existing),
                             "expires": expires.isoformat()})
        if existing:
            existing.delete()
        ApiToken.objects.create(user=user, digest=token_digest(raw),
                                prefix=raw[:TOKEN_PREFIX_LEN], expires=expires)
    return raw


def api_token_revoke(*, token_id: int, actor, request_id: str) -> None:
    """Revoke (delete) an API token: its owner or an admin may. Audited (token.revoke).

    Anyone else gets NotFound, as for a token that does not exist.
    """
    with transaction.atomic():
        token = (ApiToken.objects.select_for_update().select_related("user")
                 .filter(pk=token_id).first())
        if token is None or not (token.user_id == actor.pk
                                 or actor.has_perm("accounts.delete_apitoken")):
            raise NotFound("No such token, or not yours to revoke.")
        audit_record(actor=actor, action="token.revoke",
                     target=f"user:{token.user.get_username()}", request_id=request_id,
                     outcome=AuditEvent.Outcome.RECORDED,
                     detail={"prefix": token.prefix, "token_id": token.pk,
                             "expired": token.is_expired})
        token.delete()


def user_ensure(*, username: str, role: str, password: str | None) -> tuple[object, str | None]:
    """Create a local user in one role if missing; return it and the password set (or None).

    A missing password is generated; existing users are left as they are.
    """
    if role not in ROLES:
        raise ValueError(f"Unknown role {role}")
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, None
    password = password or secrets.token_urlsafe(12)
    with transaction.atomic():
        audit_record(actor=None, action="user.create", target=f"user:{username}",
                     outcome=AuditEvent.Outcome.RECORDED, detail={"role": role})
        user = User.objects.create_user(username=username, password=password)
        user.groups.add(Group.objects.get(name=role))
    return user, password
