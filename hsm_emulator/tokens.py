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

Tenant id, signing key and principals persist in the state store unless ephemeral.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import parse_qsl

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
TOKEN_LIFETIME = 3599
CLOCK_SKEW = 300  # Entra-protected services tolerate five minutes of skew.
BOOTSTRAP_ADMIN = "bootstrap-admin"
_SCOPE = "identity"


@dataclass
class Principal:
    """A service principal: application (client) id, secret, directory object id."""

    client_id: str
    client_secret: str
    object_id: str
    display_name: str

    def public(self) -> dict:
        """The principal without its secret."""
        return {"client_id": self.client_id, "object_id": self.object_id, "display_name": self.display_name}

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
            self.principals[client_id] = Principal(client_id, secret, doc["object_id"], doc["display_name"])
        self.base_url = ""

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

    def create_principal(self, display_name: str) -> Principal:
        """Register a new service principal with a fresh secret; persisted."""
        principal = Principal(
            client_id=str(uuid.uuid4()),
            client_secret=_client_secret(),
            object_id=str(uuid.uuid4()),
            display_name=display_name,
        )
        self.principals[principal.client_id] = principal
        sealed = self._sealer.seal(principal.client_secret.encode(), principal.client_id)
        self._store.put(_SCOPE, "principal", principal.client_id, {
            "secret": base64.b64encode(sealed).decode(),
            "object_id": principal.object_id,
            "display_name": display_name,
        })
        return principal

    # -- tokens -------------------------------------------------------------------

    def issue(self, principal: Principal, audience: str, lifetime: int = TOKEN_LIFETIME) -> str:
        """A signed v1 app-only access token for ``principal`` and ``audience``."""
        now = int(time.time())
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
            Route("/_emulator/tokens", self._mint, methods=["POST"]),
            Route("/_emulator/health", self._health, methods=["GET"]),
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid_v2, methods=["GET"]),
            Route("/{tenant}/.well-known/openid-configuration", self._openid_v1, methods=["GET"]),
            Route("/{tenant}/discovery/v2.0/keys", self._keys, methods=["GET"]),
            Route("/{tenant}/discovery/keys", self._keys, methods=["GET"]),
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
        try:
            body = await request.json()
        except ValueError:
            body = {}
        name = body.get("display_name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return JSONResponse({"error": "display_name (a non-empty string) is required"}, status_code=400)
        return JSONResponse(self.create_principal(name.strip()).credentials(), status_code=201)

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
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "name", "preferred_username"],
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
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003,
                              "The app requested an unsupported grant type; use client_credentials.")
        principal = self.principals.get(str(client_id or ""))
        if principal is None:
            return _aad_error(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the directory.")
        if not hmac.compare_digest(principal.client_secret, str(client_secret or "")):
            return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        audience = _audience(str(form.get("scope") or ""), str(form.get("resource") or ""))
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
