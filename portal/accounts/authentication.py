"""DRF authentication with hashed API tokens: `Authorization: Token <token>`."""
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from portal.accounts.models import ApiToken, token_digest


class ApiTokenAuthentication(TokenAuthentication):
    """Looks the token up by its SHA-256 digest (the raw token is never stored); refuses expired ones."""

    keyword = "Token"

    def authenticate_credentials(self, key):
        token = ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
        if token is None or not token.user.is_active:
            raise AuthenticationFailed("Invalid token.")
        if token.is_expired:
            raise AuthenticationFailed("This token has expired; ask for a new one.")
        ApiToken.objects.filter(pk=token.pk).update(last_used=timezone.now())
        return token.user, token
