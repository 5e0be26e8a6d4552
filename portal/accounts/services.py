"""Accounts: API tokens and demo users. Every change is audited."""
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from portal.accounts.models import TOKEN_PREFIX_LEN, ApiToken, token_digest
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.permissions import ROLES


def api_token_issue(*, user, actor=None, reset: bool = False) -> str | None:
    """Create (or with reset, replace) the user's API token; return the raw token once.

    Returns None when a token exists and reset is False: it cannot be shown again.
    """
    with transaction.atomic():
        existing = ApiToken.objects.filter(user=user).first()
        if existing and not reset:
            return None
        raw = ApiToken.new_raw()
        audit_record(actor=actor, action="token.issue", target=f"user:{user.get_username()}",
                     outcome=AuditEvent.Outcome.RECORDED,
                     detail={"prefix": raw[:TOKEN_PREFIX_LEN], "replaced": bool(existing)})
        if existing:
            existing.delete()
        ApiToken.objects.create(user=user, digest=token_digest(raw), prefix=raw[:TOKEN_PREFIX_LEN])
    return raw


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
