"""The one way to tell who a user is, for comparisons: a principal id, never a name.

Maker-checker ("the requester can never approve their own request") compares
`principal_id(a) == principal_id(b)`. Entra users carry their object id (set at sign-in);
a break-glass or test account linked to an object id is the same principal as that
directory user; an unlinked local account is a principal of its own.
"""
from portal.accounts.models import DirectoryIdentity


def principal_id(user) -> str:
    """The user's directory object id, or `local:<pk>` for an unlinked local account."""
    if user is None or not getattr(user, "pk", None):
        return ""
    cached = getattr(user, "_principal_id", None)
    if cached is None:
        row = DirectoryIdentity.objects.filter(user_id=user.pk).values_list(
            "object_id", flat=True).first()
        cached = row.lower() if row else f"local:{user.pk}"
        user._principal_id = cached
    return cached


def same_principal(a, b) -> bool:
    """Whether two users are one principal (by object id), whatever their usernames."""
    pa, pb = principal_id(a), principal_id(b)
    return bool(pa) and pa == pb


def identity_link(*, user, object_id: str, tenant_id: str = "") -> DirectoryIdentity:
    """Set the user's directory identity (sign-in does this from the token's oid/tid)."""
    row, _ = DirectoryIdentity.objects.update_or_create(
        user=user, defaults={"object_id": object_id.lower(), "tenant_id": tenant_id.lower()})
    user._principal_id = row.object_id
    return row
