"""The Azure Resource Manager endpoint: for now, only what signing in asks of it.

``az login`` lists the tenant's subscriptions (and, without ``--tenant``, the tenants)
with a Resource Manager token before it accepts a sign-in. The emulator has no
subscriptions yet, so it answers as Resource Manager answers a principal that has none:

- ``GET /subscriptions`` → ``{"value": [], "count": {"type": "Total", "value": 0}}``;
- ``GET /tenants`` → the emulator's one tenant;

after checking the bearer token as Resource Manager does: signed by the authority, for
either of Resource Manager's names (``https://management.core.windows.net/`` or
``https://management.azure.com/``). A missing token is 401 ``AuthenticationFailed``, an
invalid one 401 ``InvalidAuthenticationToken``, both with Resource Manager's
``WWW-Authenticate`` challenge; a missing ``api-version`` is 400
``MissingApiVersionParameter``. The ``managedHSMs`` resource and the CMK targets come
later (see ``docs/emulator.md``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .tokens import ARM_RESOURCES, Authority, TokenValidator


class ResourceManager:
    """The Resource Manager endpoint of the emulated cloud."""

    def __init__(self, authority: Authority) -> None:
        self._authority = authority
        self._validator = TokenValidator(authority, *ARM_RESOURCES)

    def app(self) -> Starlette:
        """The Starlette app serving the Resource Manager routes."""
        return Starlette(routes=[
            Route("/subscriptions", self._subscriptions, methods=["GET"]),
            Route("/tenants", self._tenants, methods=["GET"]),
        ])

    def _refusal(self, request: Request) -> Response | None:
        """The answer Resource Manager gives a request it will not serve, or None."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._unauthorized("AuthenticationFailed",
                                      "Authentication failed. The 'Authorization' header is missing.",
                                      "The authentication failed because of missing 'Authorization' header.")
        try:
            self._validator.validate(token.strip())
        except ValueError:
            return self._unauthorized("InvalidAuthenticationToken", "The access token is invalid.",
                                      "The access token is invalid.")
        if not request.query_params.get("api-version"):
            return JSONResponse({"error": {
                "code": "MissingApiVersionParameter",
                "message": "The api-version query parameter (?api-version=) is required for all requests.",
            }}, status_code=400)
        return None

    def _unauthorized(self, code: str, message: str, description: str) -> Response:
        challenge = (f'Bearer authorization_uri="{self._authority.base_url}/", error="invalid_token", '
                     f'error_description="{description}"')
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=401,
                            headers={"WWW-Authenticate": challenge})

    async def _subscriptions(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        return JSONResponse({"value": [], "count": {"type": "Total", "value": 0}})

    async def _tenants(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        tenant = self._authority.tenant_id
        return JSONResponse({"value": [{
            "id": f"/tenants/{tenant}", "tenantId": tenant, "tenantCategory": "Home",
            "displayName": "hsm_emulator", "defaultDomain": "hsm-emulator.local",
            "domains": ["hsm-emulator.local"], "tenantType": "AAD",
        }], "count": {"type": "Total", "value": 1}})
