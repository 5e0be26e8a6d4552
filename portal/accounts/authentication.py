"""DRF authentication: hashed API tokens (`Authorization: Token <token>`) and Entra ID
bearer tokens of automation applications (`Authorization: Bearer <jwt>`)."""
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import (BaseAuthentication, TokenAuthentication,
                                           get_authorization_header)
from rest_framework.exceptions import AuthenticationFailed

from portal.accounts import entra
from portal.accounts.entra import entra_enabled
from portal.accounts.models import ApiToken, token_digest
from portal.accounts.services import directory_user_sync


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


class EntraBearerAuthentication(BaseAuthentication):
    """`Authorization: Bearer <Entra access token>` for automation: client-credentials
    applications holding app roles on the portal's API.

    PyJWT checks the token against the authority's JWKS (portal/accounts/entra.py): RS256,
    signed by a published key, audience ENTRA_API_AUDIENCE (`api://<client id>`, or the
    bare client id as Entra writes it for `<client id>/.default`), issuer of the tenant
    (v1 `https://sts.windows.net/<tenant>/` or v2 `<authority>/v2.0`), not expired. The
    caller is a portal user keyed by the service principal's object id (created on first
    use, roles re-synced from the token's `roles`, both audited). The token is never kept.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Give one token after Bearer.")
        if not entra_enabled():
            raise AuthenticationFailed("This portal does not accept Entra ID bearer tokens; "
                                       "use an API token (Authorization: Token ...).")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The bearer token is not valid.")
        try:
            claims = entra.api_token_validate(token)
        except entra.SignInRefused as refused:
            raise AuthenticationFailed(refused.message)
        except entra.SignInUnavailable as unavailable:
            raise AuthenticationFailed(unavailable.message)
        user, roles = directory_user_sync(claims=claims, kind="service_principal",
                                          request_id=getattr(request, "id", ""))
        if not user.is_active:
            raise AuthenticationFailed("This application's portal account is disabled.")
        if not roles:
            raise AuthenticationFailed("This application holds no app role on the portal's API.")
        return user, EntraBearer(app_id=claims.app_id, object_id=claims.object_id)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class EntraBearer:
    """request.auth for an Entra bearer token: who called, never the token."""

    def __init__(self, *, app_id: str, object_id: str):
        self.app_id = app_id
        self.object_id = object_id


class EntraBearerScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of EntraBearerAuthentication."""

    target_class = "portal.accounts.authentication.EntraBearerAuthentication"
    name = "entraBearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An Entra ID access token for the portal's API (audience "
                               "ENTRA_API_AUDIENCE) of an application holding app roles."}
