"""Reads for the accounts API."""
from django.db.models import QuerySet

from portal.accounts.models import ApiToken


def api_token_list(*, user) -> QuerySet[ApiToken]:
    """API tokens the user may see: every token for admins, otherwise only their own."""
    tokens = ApiToken.objects.select_related("user").order_by("-created", "-id")
    if user.has_perm("accounts.view_apitoken"):
        return tokens
    return tokens.filter(user=user)
