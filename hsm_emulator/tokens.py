"""The identity authority: tenant, service principals, signed access tokens.

It answers the parts of Microsoft Entra ID that azure-identity and MSAL use for the
client-credentials grant:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (and the v1 document),
- ``GET /{tenant}/discovery/v2.0/keys`` (also ``/discovery/keys``): the JWKS,
- ``POST /{tenant}/oauth2/v2.0/token`` (and v1 ``/oauth2/token`` with ``resource``),
  ``client_secret_post`` or ``client_secret_basic``.

Access tokens are RS256 JWTs in the v1 shape Managed HSM receives: ``iss`` is
``https://sts.windows.net/<tenant>/`` (also what Azurite's OAuth mode accepts), ``aud``
the requested scope's resource as named (Managed HSM, Key Vault, Storage, Microsoft
Graph, Resource Manager under both its names; ``<resource>//.default`` names
``<resource>/``, as the Azure CLI asks), plus ``oid``, ``tid``, ``appid``, ``sub``, ``iat``,
``nbf``, ``exp``. ``TokenValidator`` checks them for the data plane, caching verified
tokens by their raw text so the hot path does not re-verify signatures.

Test controls (no token needed, loopback only, this run's control secret in the
``X-Emulator-Control`` header): ``POST /_emulator/principals
{"display_name"}`` creates a service principal and returns its credentials;
``GET /_emulator/principals`` lists principals without secrets; ``POST
/_emulator/tokens {"client_id"?, "audience"?, "claims"?}`` mints a token signed by the
authority with claims overridden (``null`` removes one), so tests can present expired,
not-yet-valid or wrong-audience tokens that are otherwise genuine.

User sign-in: ``/{tenant}/oauth2/v2.0/authorize`` and its sign-in page
(``identity_signin.py``); the token endpoint also takes ``authorization_code`` (code
redeemed once, PKCE verifier and redirect URI checked) and ``refresh_token`` grants and
returns v2 ID tokens (``iss`` ``<authority>/<tenant>/v2.0``, ``aud`` the client id, ``roles``,
``groups``, ``nonce``, ``auth_time``). Users, groups and app-role assignments live in
``identity.Directory``; more controls: ``/_emulator/users``, ``/_emulator/groups``,
``/_emulator/app-role-assignments``, ``PATCH /_emulator/principals/{client_id}``,
``/_emulator/sign-ins/age`` (see ``docs/emulator.md``). A client-credentials token for an
application's API (``api://<client_id>/.default``) carries the caller's app roles on it.

Tenant id, signing key, principals and the directory persist in the state store unless
ephemeral.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .crypto import int_b64
from .identity import Directory, DirectoryError, User
from .identity_signin import GrantError, SignIn, client_info
from .routing import control_refusal
from .state import Sealer, Store

HSM_RESOURCE = "https://managedhsm.azure.net"
# Resource Manager answers to two names; the Azure CLI asks for the older one.
ARM_RESOURCES = ("https://management.core.windows.net", "https://management.azure.com")
# Resources the authority issues tokens for, named without a trailing slash; a request
# may name one with a trailing slash, which the token's aud then keeps (as Entra does).
KNOWN_RESOURCES = (
    HSM_RESOURCE,
    "https://vault.azure.net",
    "https://storage.azure.com",
    "https://graph.microsoft.com",
    *ARM_RESOURCES,
)
# Microsoft Graph's application id: v1 tokens for Graph name it as their audience.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCES = ("https://graph.microsoft.com", GRAPH_APP_ID)
# Scopes that ask for sign-in itself, not for a resource.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
TOKEN_LIFETIME = 3599
MAX_REDIRECT_URIS = 256
MAX_APP_ROLES = 64
CLOCK_SKEW = 300  # Entra-protected services tolerate five minutes of skew.
BOOTSTRAP_ADMIN = "bootstrap-admin"
_SCOPE = "identity"


@dataclass
class Principal:
    """An application and its service principal: client id, secret, object id, registration.

    ``redirect_uris`` are where the authorize endpoint may send codes; ``app_roles`` the
    roles the application defines (Graph's ``appRole`` shape: id, value, displayName,
    description, allowedMemberTypes, isEnabled); ``identifier_uris`` the names of its API
    (``api://<client_id>`` by default), which a client-credentials request may name as the
    resource; ``assignment_required`` refuses sign-in to users without one of its roles.
    """

    client_id: str
    client_secret: str
    object_id: str
    display_name: str
    redirect_uris: list[str] = field(default_factory=list)
    app_roles: list[dict] = field(default_factory=list)
    identifier_uris: list[str] = field(default_factory=list)
    assignment_required: bool = False

    def public(self) -> dict:
        """The principal without its secret."""
        return {"client_id": self.client_id, "object_id": self.object_id, "display_name": self.display_name,
                "redirect_uris": list(self.redirect_uris), "app_roles": [dict(r) for r in self.app_roles],
                "identifier_uris": list(self.identifier_uris), "assignment_required": self.assignment_required}

    def role(self, value: str) -> Optional[dict]:
        """The app role with this value, or None."""
        return next((r for r in self.app_roles if r["value"] == value), None)

    def registration(self) -> dict:
        """What the state store keeps besides the secret."""
        return {"object_id": self.object_id, "display_name": self.display_name,
                "redirect_uris": self.redirect_uris, "app_roles": self.app_roles,
                "identifier_uris": self.identifier_uris, "assignment_required": self.assignment_required}

    def credentials(self) -> dict:
        """The principal with its secret, as returned once on creation."""
        return {**self.public(), "client_secret": self.client_secret}


class Authority:
    """Tenant, signing key and principals; issues tokens and serves the authority app."""

    def __init__(self, store: Store, sealer: Sealer, control_secret: str) -> None:
        self._store = store
        self._sealer = sealer
        self._control_secret = control_secret
        meta = store.get(_SCOPE, "meta", "tenant") or {}
        self.tenant_id: str = meta.get("tenant_id") or str(uuid.uuid4())
        if "signing_key" in meta:
            pem = sealer.unseal(base64.b64decode(meta["signing_key"]), "signing-key")
            self._key = serialization.load_pem_private_key(pem, None)
            self._cert_der = base64.b64decode(meta["signing_cert"])
        else:
            self._key = rsa.generate_private_key(65537, 2048)
            self._cert_der = _self_signed(self._key)
            pem = self._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            store.put(_SCOPE, "meta", "tenant", {
                "tenant_id": self.tenant_id,
                "signing_key": base64.b64encode(sealer.seal(pem, "signing-key")).decode(),
                "signing_cert": base64.b64encode(self._cert_der).decode(),
            })
        self.key_id = base64.urlsafe_b64encode(hashlib.sha1(self._cert_der).digest()).rstrip(b"=").decode()
        self.public_key = self._key.public_key()
        self.principals: dict[str, Principal] = {}
        for client_id, doc in store.load(_SCOPE, "principal").items():
            secret = sealer.unseal(base64.b64decode(doc["secret"]), client_id).decode()
            self.principals[client_id] = Principal(
                client_id, secret, doc["object_id"], doc["display_name"], list(doc.get("redirect_uris", [])),
                list(doc.get("app_roles", [])), list(doc.get("identifier_uris", [f"api://{client_id}"])),
                bool(doc.get("assignment_required", False)))
        self.directory = Directory(store)
        self.signin = SignIn(self)
        self._refresh_tokens: dict[str, tuple[str, str, list[str], int]] = {}
        # client id -> one-shot alteration of the next ID token issued to that app (tests)
        self._id_token_faults: dict[str, dict] = {}
        self._foreign_key: Optional[rsa.RSAPrivateKey] = None
        self.base_url = ""
        # Resources served by this emulator under their own URL (its Graph endpoint).
        self.extra_resources: set[str] = set()

    @property
    def control_secret(self) -> str:
        """This run's control secret (the Graph endpoint's test controls check it too)."""
        return self._control_secret

    @property
    def issuer(self) -> str:
        """The ``iss`` of access tokens (v1 form, as Managed HSM receives them)."""
        return f"https://sts.windows.net/{self.tenant_id}/"

    # -- principals ---------------------------------------------------------------

    def bootstrap_admin(self) -> Principal:
        """The principal created on first start, holder of the HSM admin roles."""
        for principal in self.principals.values():
            if principal.display_name == BOOTSTRAP_ADMIN:
                return principal
        return self.create_principal(BOOTSTRAP_ADMIN)

    def create_principal(self, display_name: str, redirect_uris: Any = None, app_roles: Any = None,
                         identifier_uris: Any = None, assignment_required: Any = False) -> Principal:
        """Register a new application and service principal with a fresh secret; persisted.

        ``ValueError`` (``DirectoryError``) names what is wrong with the registration."""
        client_id = str(uuid.uuid4())
        principal = Principal(
            client_id=client_id,
            client_secret=_client_secret(),
            object_id=str(uuid.uuid4()),
            display_name=display_name,
        )
        _register(principal, {"redirect_uris": redirect_uris or [], "app_roles": app_roles or [],
                              "identifier_uris": identifier_uris or [f"api://{client_id}"],
                              "assignment_required": assignment_required})
        self.principals[principal.client_id] = principal
        self._save_principal(principal)
        return principal

    def _save_principal(self, principal: Principal) -> None:
        sealed = self._sealer.seal(principal.client_secret.encode(), principal.client_id)
        self._store.put(_SCOPE, "principal", principal.client_id, {
            "secret": base64.b64encode(sealed).decode(), **principal.registration()})

    def principal_by_object_id(self, object_id: str) -> Optional[Principal]:
        """The service principal with this object id, or None."""
        return next((p for p in self.principals.values() if p.object_id == object_id), None)

    def resource_app(self, resource: str) -> Optional[Principal]:
        """The application whose API ``resource`` names (client id or identifier URI), or None."""
        bare = resource.rstrip("/")
        app = self.principals.get(bare)
        if app is not None:
            return app
        return next((p for p in self.principals.values() if bare in (u.rstrip("/") for u in p.identifier_uris)),
                    None)

    def known_tenant(self, tenant: str) -> bool:
        """Whether ``tenant`` names this authority's tenant (or a multi-tenant alias)."""
        return self._known_tenant(tenant)

    def audience(self, scope: str, resource: str) -> Optional[str]:
        """The ``aud`` for a client-credentials request, or None if nothing here has that name."""
        requested = _audience(scope, resource)
        if requested is not None:
            return requested
        candidates = [s for s in scope.split() if s.endswith("/.default")]
        name = candidates[0][: -len("/.default")] if candidates else resource
        bare = name.rstrip("/")
        if not bare:
            return None
        if bare in self.extra_resources or bare == GRAPH_APP_ID or self.resource_app(bare) is not None:
            return name
        return None

    # -- tokens -------------------------------------------------------------------

    def issue(self, principal: Principal, audience: str, lifetime: int = TOKEN_LIFETIME) -> str:
        """A signed v1 app-only access token for ``principal`` and ``audience``.

        When the audience is an application's API, ``roles`` lists the app roles the
        principal holds on it (absent when it holds none, as Entra omits it)."""
        now = int(time.time())
        roles: list[str] = []
        app = self.resource_app(audience)
        if app is not None:
            roles = self.directory.roles_of(principal.object_id, app.client_id)
        claims = {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": secrets.token_urlsafe(24),
            "appid": principal.client_id,
            "appidacr": "1",
            "idp": self.issuer,
            "idtyp": "app",
            "oid": principal.object_id,
            "rh": secrets.token_urlsafe(16),
            "sub": principal.object_id,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if roles:
            claims["roles"] = roles
        return self.sign(claims)

    @property
    def issuer_v2(self) -> str:
        """The ``iss`` of v2 ID tokens: ``<authority>/<tenant>/v2.0``, as the discovery document says."""
        return f"{self.base_url}/{self.tenant_id}/v2.0"

    def id_token(self, app: Principal, user: User, nonce: Optional[str], auth_time: int,
                 lifetime: int = TOKEN_LIFETIME) -> str:
        """A v2 ID token for ``user`` signing in to ``app``, as Entra issues one."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": app.client_id,
            "iss": self.issuer_v2,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": secrets.token_urlsafe(24),
            "auth_time": auth_time,
            "name": user.display_name,
            "oid": user.object_id,
            "preferred_username": user.user_principal_name,
            "rh": secrets.token_urlsafe(16),
            "sid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{user.object_id}:{auth_time}")),
            # Pairwise, as Entra's: the same user has another sub in another application.
            "sub": base64.urlsafe_b64encode(hashlib.sha256(f"{user.object_id}:{app.client_id}".encode())
                                            .digest()).rstrip(b"=").decode()[:43],
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        roles = self.directory.roles_of(user.object_id, app.client_id)
        if roles:
            claims["roles"] = roles
        if user.groups:
            claims["groups"] = list(user.groups)
        fault = self._id_token_faults.pop(app.client_id, None)
        if fault is None:
            return self.sign(claims)
        for name, value in fault["claims"].items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if fault["signing"] == "none":
            return jwt.encode(claims, None, algorithm="none", headers={"kid": self.key_id})
        if fault["signing"] == "foreign":
            if self._foreign_key is None:
                self._foreign_key = rsa.generate_private_key(65537, 2048)
            # The authority's key id, another key's signature: a forgery a relying party must refuse.
            return jwt.encode(claims, self._foreign_key, algorithm="RS256",
                              headers={"kid": self.key_id, "x5t": self.key_id})
        return self.sign(claims)

    def user_access_token(self, app: Principal, user: User, audience: str, scp: str,
                          lifetime: int = TOKEN_LIFETIME) -> str:
        """A v1 delegated access token: ``user`` through ``app``, for ``audience``."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "acr": "1",
            "aio": secrets.token_urlsafe(24),
            "amr": ["pwd"],
            "appid": app.client_id,
            "appidacr": "1",
            "idtyp": "user",
            "name": user.display_name,
            "oid": user.object_id,
            "rh": secrets.token_urlsafe(16),
            "scp": scp,
            "sub": user.object_id,
            "tid": self.tenant_id,
            "unique_name": user.user_principal_name,
            "upn": user.user_principal_name,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        resource_app = self.resource_app(audience)
        if resource_app is not None:
            roles = self.directory.roles_of(user.object_id, resource_app.client_id)
            if roles:
                claims["roles"] = roles
        if user.groups:
            claims["groups"] = list(user.groups)
        return self.sign(claims)

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign arbitrary claims with the authority's key (tests use it for forgeries)."""
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id, "x5t": self.key_id})

    def jwks(self) -> dict:
        """The JSON Web Key Set published at the jwks_uri."""
        numbers = self.public_key.public_numbers()
        return {"keys": [{
            "kty": "RSA",
            "use": "sig",
            "kid": self.key_id,
            "x5t": self.key_id,
            "n": int_b64(numbers.n),
            "e": int_b64(numbers.e),
            "x5c": [base64.b64encode(self._cert_der).decode()],
            "issuer": f"{self.base_url}/{self.tenant_id}/v2.0",
        }]}

    # -- HTTP ---------------------------------------------------------------------

    def app(self) -> Starlette:
        """The Starlette app serving discovery, JWKS, token and principal routes."""
        return Starlette(routes=[
            Route("/_emulator/principals", self._principals, methods=["GET", "POST"]),
            Route("/_emulator/principals/{client_id}", self._principal_update, methods=["GET", "PATCH"]),
            Route("/_emulator/users", self._users, methods=["GET", "POST"]),
            Route("/_emulator/groups", self._groups, methods=["GET", "POST"]),
            Route("/_emulator/app-role-assignments", self._app_role_assignments, methods=["POST", "DELETE"]),
            Route("/_emulator/sign-ins/age", self._age_sign_ins, methods=["POST"]),
            Route("/_emulator/id-token-faults", self._id_token_fault, methods=["POST", "DELETE"]),
            Route("/_emulator/tokens", self._mint, methods=["POST"]),
            Route("/_emulator/health", self._health, methods=["GET"]),
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid_v2, methods=["GET"]),
            Route("/{tenant}/.well-known/openid-configuration", self._openid_v1, methods=["GET"]),
            Route("/{tenant}/discovery/v2.0/keys", self._keys, methods=["GET"]),
            Route("/{tenant}/discovery/keys", self._keys, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/authorize", self.signin.authorize, methods=["GET", "POST"]),
            Route("/{tenant}/login", self.signin.login, methods=["POST"]),
            Route("/{tenant}/oauth2/v2.0/logout", self.signin.logout, methods=["GET", "POST"]),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/{tenant}/oauth2/token", self._token, methods=["POST"]),
        ])

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant_id, "organizations", "common")

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "tenant_id": self.tenant_id})

    async def _principals(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        if request.method == "GET":
            return JSONResponse({"value": [p.public() for p in self.principals.values()]})
        body = await _json_object(request)
        name = body.get("display_name")
        if not isinstance(name, str) or not name.strip():
            return JSONResponse({"error": "display_name (a non-empty string) is required"}, status_code=400)
        try:
            principal = self.create_principal(
                name.strip(), body.get("redirect_uris"), body.get("app_roles"), body.get("identifier_uris"),
                body.get("assignment_required", False))
            assigned = self._assign_all(principal.object_id, body.get("roles"))
        except DirectoryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({**principal.credentials(), "roles": assigned}, status_code=201)

    async def _principal_update(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        principal = self.principals.get(request.path_params["client_id"])
        if principal is None:
            return JSONResponse({"error": "No application with that client_id"}, status_code=404)
        if request.method == "PATCH":
            body = await _json_object(request)
            changes = {k: body[k] for k in ("redirect_uris", "app_roles", "identifier_uris",
                                             "assignment_required") if k in body}
            try:
                _register(principal, changes)
            except DirectoryError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            self._save_principal(principal)
        return JSONResponse(principal.public())

    async def _users(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        if request.method == "GET":
            return JSONResponse({"value": [{**u.public(), "roles": self.directory.assignments.get(u.object_id, {})}
                                           for u in self.directory.users.values()]})
        body = await _json_object(request)
        try:
            self._check_roles(body.get("roles"), "User")
            user, password = self.directory.create_user(
                body.get("user_principal_name"), body.get("display_name"), body.get("password"),
                body.get("groups") or [])
            assigned = self._assign_all(user.object_id, body.get("roles"))
        except DirectoryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({**user.public(), "password": password, "roles": assigned}, status_code=201)

    async def _groups(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        if request.method == "GET":
            return JSONResponse({"value": [g.public() for g in self.directory.groups.values()]})
        body = await _json_object(request)
        try:
            group = self.directory.create_group(body.get("display_name"), body.get("members") or [])
        except DirectoryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(group.public(), status_code=201)

    async def _app_role_assignments(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        body = await _json_object(request)
        principal_id, resource, role = body.get("principal_id"), body.get("resource"), body.get("role")
        if not all(isinstance(v, str) and v for v in (principal_id, resource, role)):
            return JSONResponse({"error": "principal_id, resource and role (strings) are required"},
                                status_code=400)
        # A service principal may be named by its client id as well as its object id.
        app_principal = self.principal_by_object_id(principal_id) or self.principals.get(principal_id)
        if app_principal is not None:
            assignee, kind = app_principal.object_id, "Application"
        elif principal_id in self.directory.users:
            assignee, kind = principal_id, "User"
        else:
            return JSONResponse({"error": f"No user or service principal {principal_id}"}, status_code=404)
        try:
            self._check_roles({resource: [role]}, kind)
        except DirectoryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if request.method == "DELETE":
            roles = self.directory.unassign(assignee, resource, role)
            return JSONResponse({"principal_id": assignee, "resource": resource, "roles": roles})
        roles = self.directory.assign(assignee, resource, role)
        return JSONResponse({"principal_id": assignee, "resource": resource, "roles": roles}, status_code=201)

    async def _age_sign_ins(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        body = await _json_object(request)
        seconds, user = body.get("seconds"), body.get("user_id")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 10 ** 8:
            return JSONResponse({"error": "seconds (0 to 100000000) is required"}, status_code=400)
        if user is not None and not isinstance(user, str):
            return JSONResponse({"error": "user_id must be a user's object id"}, status_code=400)
        return JSONResponse({"sessions": self.signin.age_sessions(seconds, user)})

    async def _id_token_fault(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        if request.method == "DELETE":
            self._id_token_faults.clear()
            return JSONResponse({"value": []})
        body = await _json_object(request)
        client_id, claims = body.get("client_id"), body.get("claims") or {}
        signing = body.get("signing", "authority")
        if client_id not in self.principals:
            return JSONResponse({"error": "client_id must name an application"}, status_code=400)
        if not isinstance(claims, dict) or signing not in ("authority", "none", "foreign"):
            return JSONResponse({"error": "claims is an object; signing is authority, none or foreign"},
                                status_code=400)
        self._id_token_faults[client_id] = {"claims": claims, "signing": signing}
        return JSONResponse({"client_id": client_id, "claims": claims, "signing": signing}, status_code=201)

    def _check_roles(self, roles: Any, member_type: str) -> None:
        """Refuse ``{"<client_id>": ["role", ...]}`` naming unknown apps or roles."""
        if roles is None:
            return
        if not isinstance(roles, dict) or not all(
                isinstance(v, list) and all(isinstance(r, str) for r in v) for v in roles.values()):
            raise DirectoryError(400, 'roles must map an application\'s client_id to a list of role values')
        for client_id, values in roles.items():
            app = self.principals.get(client_id)
            if app is None:
                raise DirectoryError(400, f"No application with client_id {client_id}")
            for value in values:
                role = app.role(value)
                if role is None:
                    raise DirectoryError(400, f"Application {app.display_name} has no app role {value}")
                if member_type not in role["allowedMemberTypes"]:
                    raise DirectoryError(400, f"App role {value} cannot be assigned to a {member_type.lower()}")

    def _assign_all(self, object_id: str, roles: Any) -> dict[str, list[str]]:
        kind = "User" if object_id in self.directory.users else "Application"
        self._check_roles(roles, kind)
        assigned: dict[str, list[str]] = {}
        for client_id, values in (roles or {}).items():
            for value in values:
                assigned[client_id] = self.directory.assign(object_id, client_id, value)
        return assigned

    async def _mint(self, request: Request) -> Response:
        refusal = control_refusal(request.scope, self._control_secret)
        if refusal is not None:
            return JSONResponse(refusal[1], status_code=refusal[0])
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"error": "a JSON object is required"}, status_code=400)
        principal = self.principals.get(str(body.get("client_id"))) or self.bootstrap_admin()
        claims = jwt.decode(self.issue(principal, body.get("audience") or HSM_RESOURCE),
                            options={"verify_signature": False})
        for name, value in (body.get("claims") or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return JSONResponse({"access_token": self.sign(claims)})

    async def _openid_v2(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not self._known_tenant(tenant):
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        root = f"{self.base_url}/{self.tenant_id}"
        return JSONResponse({
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{root}/openid/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                                 "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                                 "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email",
                                 "oid", "roles", "groups"],
            "code_challenge_methods_supported": ["S256"],
            "prompt_values_supported": ["login", "none", "select_account", "consent"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        })

    async def _openid_v1(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not self._known_tenant(tenant):
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        root = f"{self.base_url}/{self.tenant_id}"
        return JSONResponse({
            "token_endpoint": f"{root}/oauth2/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/keys",
            "issuer": self.issuer,
            "authorization_endpoint": f"{root}/oauth2/authorize",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "subject_types_supported": ["pairwise"],
        })

    async def _keys(self, request: Request) -> Response:
        return JSONResponse(self.jwks())

    async def _token(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if tenant.lower() != self.tenant_id:
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        # Parsed by hand: Starlette's form parser needs python-multipart even for urlencoded bodies.
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                return _aad_error(401, "invalid_client", 7000216, "Malformed Basic authorization header.")
        grant_type = form.get("grant_type")
        if grant_type not in ("client_credentials", "authorization_code", "refresh_token"):
            return _aad_error(400, "unsupported_grant_type", 70003,
                              "The app requested an unsupported grant type; use client_credentials, "
                              "authorization_code or refresh_token.")
        principal = self.principals.get(str(client_id or ""))
        if principal is None:
            return _aad_error(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the directory.")
        if not client_secret:
            return _aad_error(401, "invalid_client", 7000218,
                              "The request body must contain the following parameter: 'client_assertion' or "
                              "'client_secret'.")
        if not hmac.compare_digest(principal.client_secret, str(client_secret or "")):
            return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if grant_type != "client_credentials":
            try:
                return self._user_tokens(principal, grant_type, form)
            except GrantError as exc:
                return _aad_error(400, exc.error, exc.code, exc.description)
        audience = self.audience(str(form.get("scope") or ""), str(form.get("resource") or ""))
        if audience is None:
            return _aad_error(400, "invalid_scope", 1002012,
                              f"The provided value for scope '{form.get('scope') or form.get('resource')}' is not valid.")
        token = self.issue(principal, audience)
        return JSONResponse({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        })

    def _user_tokens(self, app: Principal, grant_type: str, form: dict) -> Response:
        """Redeem an authorization code or a refresh token: access, ID and refresh tokens."""
        if grant_type == "authorization_code":
            user, grant = self.signin.redeem(app.client_id, str(form.get("code") or ""),
                                             str(form.get("redirect_uri") or ""),
                                             str(form.get("code_verifier") or ""))
            scopes, nonce, auth_time = grant.scopes, grant.nonce, grant.auth_time
        else:
            entry = self._refresh_tokens.pop(hashlib.sha256(str(form.get("refresh_token") or "").encode())
                                             .hexdigest(), None)
            if entry is None or entry[0] != app.client_id or entry[1] not in self.directory.users:
                raise GrantError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid: "
                                                           "the refresh token is not valid.")
            user = self.directory.users[entry[1]]
            scopes, nonce, auth_time = entry[2], None, entry[3]
            requested = str(form.get("scope") or "").split()
            if any(s not in OIDC_SCOPES for s in requested):
                scopes = requested
        audience, scp = self._delegated_audience(scopes)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(s for s in scopes if s not in ("openid", "offline_access")) or scp,
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": self.user_access_token(app, user, audience, scp),
        }
        if "openid" in scopes:
            body["id_token"] = self.id_token(app, user, nonce, auth_time)
        if "offline_access" in scopes:
            refresh = secrets.token_urlsafe(48)
            if len(self._refresh_tokens) > 10000:
                self._refresh_tokens.clear()
            self._refresh_tokens[hashlib.sha256(refresh.encode()).hexdigest()] = (
                app.client_id, user.object_id, scopes, auth_time)
            body["refresh_token"] = refresh
        if str(form.get("client_info") or "") == "1":
            body["client_info"] = client_info(user.object_id, self.tenant_id)
        return JSONResponse(body)

    def _delegated_audience(self, scopes: list[str]) -> tuple[str, str]:
        """(aud, scp) of a delegated access token for these scopes; Graph's User.Read by default."""
        resource_scopes = [s for s in scopes if s not in OIDC_SCOPES]
        if not resource_scopes:
            return GRAPH_APP_ID, "User.Read openid profile email"
        first = resource_scopes[0]
        resource, _, permission = first.rpartition("/")
        if not resource:  # a bare Graph permission such as "User.Read"
            return GRAPH_APP_ID, " ".join(resource_scopes)
        audience = self.audience(f"{resource}/.default", "")
        if audience is None:
            raise GrantError("invalid_resource", 500011, f"The resource principal named {resource} was not "
                                                         "found in the tenant.")
        names = [s.rpartition("/")[2] for s in resource_scopes if s.rpartition("/")[0] == resource]
        return audience, " ".join(n for n in names if n != ".default") or "user_impersonation"


class TokenValidator:
    """Validates bearer tokens for one resource (or its aliases); caches verified tokens by raw text.

    A token is accepted only if it is RS256-signed by the authority's key, its ``iss`` is
    the authority's v1 issuer, ``tid`` the tenant, ``aud`` one of the resource's names
    (with or without a trailing slash), and
    ``nbf``/``exp`` hold within the allowed clock skew.
    """

    _MAX_CACHE = 20000

    def __init__(self, authority: Authority, *audiences: str) -> None:
        self._authority = authority
        self._audiences = tuple(name + suffix for name in audiences for suffix in ("", "/"))
        self._cache: dict[str, tuple[dict, float]] = {}

    def validate(self, token: str) -> dict:
        """The token's claims, or ``ValueError`` with the reason it is refused."""
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None:
            claims, expires = cached
            if now < expires:
                return claims
            del self._cache[token]
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise ValueError(f"unsupported token algorithm {header.get('alg')!r}")
            claims = jwt.decode(
                token,
                self._authority.public_key,
                algorithms=["RS256"],
                audience=list(self._audiences),
                issuer=self._authority.issuer,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "nbf", "iat", "aud", "iss", "oid", "tid"]},
            )
        except jwt.PyJWTError as exc:
            raise ValueError(str(exc)) from exc
        if claims.get("tid") != self._authority.tenant_id:
            raise ValueError("token tenant does not match")
        if len(self._cache) >= self._MAX_CACHE:
            self._cache.clear()
        self._cache[token] = (claims, claims["exp"] + CLOCK_SKEW)
        return claims


def _audience(scope: str, resource: str) -> Optional[str]:
    """The audience for a v2 ``scope`` (``<resource>/.default``) or a v1 ``resource``.

    The resource is taken as named: ``https://management.core.windows.net//.default``
    (what ``az login`` asks for) is the resource ``https://management.core.windows.net/``
    and its token's ``aud``. One trailing slash is the same resource; more is not.
    """
    candidates = [s for s in scope.split() if s.endswith("/.default")]
    requested = candidates[0][: -len("/.default")] if candidates else resource
    bare = requested[:-1] if requested.endswith("/") else requested
    return requested if bare in KNOWN_RESOURCES else None


def _aad_error(status: int, error: str, code: int, description: str) -> Response:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse({
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {uuid.uuid4()} "
                             f"Correlation ID: {uuid.uuid4()} Timestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }, status_code=status)


def _client_secret() -> str:
    # Shaped like an Entra client secret: 3 chars, "8Q~", 34 chars.
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~"
    return "".join(secrets.choice(alphabet) for _ in range(3)) + "8Q~" + "".join(
        secrets.choice(alphabet) for _ in range(34)
    )


def _self_signed(key: rsa.RSAPrivateKey) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm_emulator token signing")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


async def _json_object(request: Request) -> dict:
    """The request's JSON object body, or {} (controls then name what is missing)."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _register(principal: Principal, changes: dict) -> None:
    """Apply registration changes (redirect URIs, app roles, identifier URIs), checked first."""
    updates: dict[str, Any] = {}
    if "redirect_uris" in changes:
        uris = changes["redirect_uris"]
        if not isinstance(uris, list) or len(uris) > MAX_REDIRECT_URIS or not all(isinstance(u, str) for u in uris):
            raise DirectoryError(400, f"redirect_uris must be a list of at most {MAX_REDIRECT_URIS} URLs")
        for uri in uris:
            parts = urlsplit(uri)
            local = parts.hostname in ("localhost", "127.0.0.1", "::1")
            if parts.fragment or not parts.netloc or not (parts.scheme == "https" or
                                                          (parts.scheme == "http" and local)):
                raise DirectoryError(400, f"Redirect URI {uri} must be https (http only for localhost), "
                                          "without a fragment")
        updates["redirect_uris"] = list(dict.fromkeys(uris))
    if "app_roles" in changes:
        updates["app_roles"] = _app_roles(changes["app_roles"], principal.app_roles)
    if "identifier_uris" in changes:
        uris = changes["identifier_uris"]
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) and "://" in u for u in uris):
            raise DirectoryError(400, "identifier_uris must be a non-empty list of URIs such as api://<client_id>")
        updates["identifier_uris"] = list(dict.fromkeys(u.rstrip("/") for u in uris))
    if "assignment_required" in changes:
        if not isinstance(changes["assignment_required"], bool):
            raise DirectoryError(400, "assignment_required must be true or false")
        updates["assignment_required"] = changes["assignment_required"]
    for name, value in updates.items():
        setattr(principal, name, value)


def _app_roles(roles: Any, existing: list[dict]) -> list[dict]:
    """App roles in Graph's shape from values or objects; ids kept for values that existed."""
    if not isinstance(roles, list) or len(roles) > MAX_APP_ROLES:
        raise DirectoryError(400, f"app_roles must be a list of at most {MAX_APP_ROLES} roles")
    ids = {r["value"]: r["id"] for r in existing}
    result: list[dict] = []
    for role in roles:
        spec = {"value": role} if isinstance(role, str) else role
        if not isinstance(spec, dict):
            raise DirectoryError(400, "each app role is a value or an object with value")
        value = spec.get("value")
        if not isinstance(value, str) or not value or len(value) > 120 or " " in value:
            raise DirectoryError(400, "an app role value is a non-empty string without spaces (at most 120)")
        if any(r["value"] == value for r in result):
            raise DirectoryError(400, f"app role {value} is listed twice")
        members = spec.get("allowed_member_types", ["User", "Application"])
        if not isinstance(members, list) or not members or not set(members) <= {"User", "Application"}:
            raise DirectoryError(400, "allowed_member_types is a non-empty list of User and Application")
        display = spec.get("display_name") or value.capitalize()
        description = spec.get("description") or display
        if not isinstance(display, str) or not isinstance(description, str):
            raise DirectoryError(400, "display_name and description are strings")
        result.append({"id": ids.get(value) or str(uuid.uuid4()), "value": value, "displayName": display,
                       "description": description, "allowedMemberTypes": list(members), "isEnabled": True,
                       "origin": "Application"})
    return result
