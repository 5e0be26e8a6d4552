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
from portal.errors import BadInput, Conflict, NotFound
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


def entra_roles(*, app_roles, groups) -> list[str]:
    """Portal roles from a token's app roles (ENTRA_ROLE_MAP) and groups (ENTRA_GROUP_MAP)."""
    role_map = settings.ENTRA_ROLE_MAP
    group_map = {key.lower(): value for key, value in settings.ENTRA_GROUP_MAP.items()}
    found = {role_map[r] for r in app_roles if r in role_map}
    found |= {group_map[g.lower()] for g in groups if g.lower() in group_map}
    return sorted(found & set(ROLES))


def _derived_username(claims, taken) -> str:
    base = (claims.username or f"entra-{claims.object_id}").lower()[:150]
    if not taken(base):
        return base
    return f"{base[:140]}~{claims.object_id[:8]}"


def directory_user_sync(*, claims, request_id: str, kind: str = "user"):
    """The portal user of a directory principal (by object id + tenant id), created on its
    first sign-in, with its portal roles set from the token (removed ones taken away).

    Returns (user, roles). Creation and every role change are audited in the same
    transaction. `kind` is "user" (interactive sign-in) or "service_principal" (API bearer).
    The user has no usable password: it signs in only through the directory.
    """
    from django.db import IntegrityError

    from portal.accounts.identity import identity_link
    from portal.accounts.models import DirectoryIdentity

    User = get_user_model()
    roles = entra_roles(app_roles=claims.app_roles, groups=claims.groups)
    # The common case (a known principal whose roles did not change) writes nothing.
    known = (DirectoryIdentity.objects.select_related("user")
             .filter(object_id=claims.object_id, tenant_id=claims.tenant_id,
                     user__password__startswith="!").order_by("pk").first())
    if known is not None and (not known.user.is_active or set(
            known.user.groups.filter(name__in=ROLES).values_list("name", flat=True)) == set(roles)):
        return known.user, (roles if known.user.is_active else [])
    for _attempt in range(3):
        try:
            with transaction.atomic():
                row = (DirectoryIdentity.objects.select_for_update().select_related("user")
                       .filter(object_id=claims.object_id, tenant_id=claims.tenant_id,
                               user__password__startswith="!")
                       .order_by("pk").first())
                if row is None:
                    name = _derived_username(
                        claims, lambda n: User.objects.filter(username=n).exists())
                    audit_record(actor=None, action="user.create", target=f"user:{name}",
                                 request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                                 detail={"source": "entra", "kind": kind,
                                         "object_id": claims.object_id,
                                         "tenant_id": claims.tenant_id})
                    user = User(username=name, first_name=claims.display_name[:150])
                    user.set_unusable_password()
                    user.save()
                    identity_link(user=user, object_id=claims.object_id,
                                  tenant_id=claims.tenant_id)
                else:
                    user = row.user
                    if not user.is_active:
                        return user, []
                current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
                if current != set(roles):
                    audit_record(actor=None, action="user.roles_sync",
                                 target=f"user:{user.get_username()}", request_id=request_id,
                                 outcome=AuditEvent.Outcome.RECORDED,
                                 detail={"source": "entra", "object_id": claims.object_id,
                                         "added": sorted(set(roles) - current),
                                         "removed": sorted(current - set(roles))})
                    user.groups.remove(*Group.objects.filter(name__in=current - set(roles)))
                    user.groups.add(*Group.objects.filter(name__in=set(roles) - current))
                return user, roles
        except IntegrityError:
            # Two first sign-ins of one principal at once (or a username taken meanwhile):
            # the other one created the row; look again.
            continue
    raise Conflict("Your account is being set up by another sign-in; try again.")
