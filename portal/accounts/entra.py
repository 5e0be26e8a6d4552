"""Sign-in with Microsoft Entra ID: MSAL's authorization-code flow with PKCE.

- `entra_sign_in_start` asks msal's ConfidentialClientApplication for a flow
  (`initiate_auth_code_flow`: state, nonce, PKCE verifier) and keeps it in the session
  (server-side); the browser goes to the authority.
- `entra_sign_in_complete` takes the flow out of the session (so a callback is used
  once), lets msal check the state and redeem the code with the PKCE verifier
  (`acquire_token_by_auth_code_flow`; msal also checks the nonce and, for a step-up, the
  auth_time against max_age), then validates the ID token with PyJWT against the
  authority's JWKS (signature by a published key, RS256 only, audience, issuer, expiry,
  nonce): msal itself no longer validates ID tokens.
- The tokens msal returns are dropped: only the validated claims are used, and nothing of
  a token is stored or logged. Refusals are sentences; their cause is audited.

Which portal user: the directory object id (`oid`) and tenant (`tid`), through
portal/accounts/identity.py; the username is derived from the UPN for display only.
Roles come from the token's app roles (`roles`, ENTRA_ROLE_MAP) and optionally its
groups (`groups`, ENTRA_GROUP_MAP), re-synced at every sign-in.
"""
import hashlib
import hmac
import logging
import ssl
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlencode

import jwt
import msal
import requests
from django.conf import settings
from django.urls import reverse

from portal.errors import PortalError

logger = logging.getLogger(__name__)

FLOW = "portal_entra_flow"
FLOW_SECONDS = 10 * 60  # a sign-in started longer ago than this is refused
LEEWAY = 120  # seconds of clock skew tolerated on exp/nbf/iat
ALGORITHMS = ["RS256"]  # Entra signs ID and access tokens with RS256; nothing else passes


class SignInRefused(PortalError):
    """A sign-in the portal refuses; `reason` is the audited cause (no token content)."""

    status, code = 403, "sign_in_refused"

    def __init__(self, message: str, *, reason: str, username: str = ""):
        super().__init__(message)
        self.reason = reason
        self.username = username


class SignInUnavailable(PortalError):
    """The authority cannot be reached (or answered nonsense) at a sign-in step."""

    status, code = 503, "sign_in_unavailable"

    def __init__(self):
        super().__init__("The sign-in service (Microsoft Entra ID) cannot be reached; "
                         "try again in a minute.")


@dataclass(frozen=True)
class EntraClaims:
    """What the portal keeps of a validated ID token (or API access token)."""

    object_id: str
    tenant_id: str
    username: str
    display_name: str
    app_roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    auth_time: int | None = None
    app_id: str = ""
    extra: dict = field(default_factory=dict)


def entra_enabled() -> bool:
    """Whether Entra sign-in is configured (ENTRA_AUTHORITY and ENTRA_CLIENT_ID)."""
    return bool(settings.ENTRA_AUTHORITY and settings.ENTRA_CLIENT_ID)


def http_session() -> requests.Session:
    """The HTTP session for the authority: ENTRA_CA_BUNDLE when set, and the environment's
    REQUESTS_CA_BUNDLE ignored then (requests would let it override an explicit verify)."""
    session = requests.Session()
    if settings.ENTRA_CA_BUNDLE:
        session.trust_env = False
        session.verify = settings.ENTRA_CA_BUNDLE
    return session


def _credential():
    if settings.ENTRA_CLIENT_CERTIFICATE:
        with open(settings.ENTRA_CLIENT_CERTIFICATE, encoding="ascii") as handle:
            pem = handle.read()
        return {"private_key": pem, "thumbprint": settings.ENTRA_CLIENT_CERTIFICATE_THUMBPRINT,
                "public_certificate": pem}
    return settings.ENTRA_CLIENT_SECRET


def msal_app() -> msal.ConfidentialClientApplication:
    """A fresh msal app per sign-in step, so its token cache dies with the request."""
    return msal.ConfidentialClientApplication(
        settings.ENTRA_CLIENT_ID, client_credential=_credential(),
        authority=settings.ENTRA_AUTHORITY, instance_discovery=False,
        http_client=http_session(), token_cache=msal.TokenCache())


@lru_cache(maxsize=8)
def _discovery(authority: str, cafile: str) -> dict:
    response = http_session().get(f"{authority}/v2.0/.well-known/openid-configuration",
                                  timeout=10)
    response.raise_for_status()
    return response.json()


def discovery() -> dict:
    """The authority's OpenID configuration (issuer, jwks_uri, ...), cached per authority."""
    return _discovery(settings.ENTRA_AUTHORITY, settings.ENTRA_CA_BUNDLE)


@lru_cache(maxsize=8)
def _jwk_client(jwks_uri: str, cafile: str) -> jwt.PyJWKClient:
    context = ssl.create_default_context(cafile=cafile or None)
    return jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=3600, timeout=10,
                           ssl_context=context)


def jwk_client() -> jwt.PyJWKClient:
    """PyJWT's JWKS client for the authority's published signing keys."""
    return _jwk_client(discovery()["jwks_uri"], settings.ENTRA_CA_BUNDLE)


def nonce_hash(nonce: str) -> str:
    """The nonce as msal sends it to the authority (and finds it in the ID token)."""
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


def token_verify(token: str, *, audience: str, issuers: list[str],
                 required: tuple[str, ...]) -> dict:
    """A token's claims after PyJWT checked signature (a JWKS key), RS256, audience,
    issuer, expiry and not-before; raises jwt.PyJWTError otherwise."""
    key = jwk_client().get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=audience,
                        leeway=LEEWAY,
                        options={"require": ["exp", "iat", "iss", "aud", *required]})
    if claims["iss"] not in issuers:
        raise jwt.InvalidIssuerError("Invalid issuer")
    return claims


def _refusal_reason(exc: jwt.PyJWTError) -> str:
    return {jwt.ExpiredSignatureError: "expired", jwt.InvalidAudienceError: "audience",
            jwt.InvalidIssuerError: "issuer", jwt.InvalidSignatureError: "signature",
            jwt.ImmatureSignatureError: "not_yet_valid",
            jwt.MissingRequiredClaimError: "missing_claim",
            jwt.InvalidAlgorithmError: "algorithm"}.get(type(exc), "invalid_token")


def _claims_or_refusal(token: str, *, unsigned: str, invalid: str, **verify) -> dict:
    """token_verify's claims; its failures as the sign-in errors: the directory's keys out of
    reach is SignInUnavailable, no published key matching the header (a foreign key,
    `alg: none`, no kid) is the refusal `unsigned`, any other PyJWT error the refusal
    `invalid` with the reason in brackets after it."""
    try:
        return token_verify(token, **verify)
    except jwt.PyJWKClientConnectionError:
        raise SignInUnavailable()
    except jwt.PyJWKClientError:
        raise SignInRefused(unsigned, reason="signature")
    except jwt.PyJWTError as exc:
        reason = _refusal_reason(exc)
        raise SignInRefused(f"{invalid} ({reason}).", reason=reason)


def id_token_validate(id_token: str, *, nonce: str) -> EntraClaims:
    """Validate an ID token for this app (PyJWT + JWKS) and bind it to the flow's nonce."""
    claims = _claims_or_refusal(
        id_token, unsigned="The sign-in answer was not signed by the directory.",
        invalid="The sign-in answer was not valid for this portal",
        audience=settings.ENTRA_CLIENT_ID, issuers=[discovery()["issuer"]],
        required=("oid", "tid", "sub", "nonce"))
    if not hmac.compare_digest(str(claims["nonce"]), nonce_hash(nonce)):
        raise SignInRefused("The sign-in answer does not belong to this sign-in (nonce).",
                            reason="nonce")
    return claims_of(claims)


def tenant_id() -> str:
    """The tenant named by ENTRA_AUTHORITY (https://login.microsoftonline.com/<tenant>)."""
    return settings.ENTRA_AUTHORITY.rstrip("/").rsplit("/", 1)[-1].lower()


def api_token_validate(token: str) -> EntraClaims:
    """Validate an access token for the portal's API (PyJWT + JWKS); the caller's claims.

    Accepted audiences: ENTRA_API_AUDIENCE (default `api://<client id>`) and the client id;
    issuers: the tenant's v1 and v2 issuers. Only application tokens with app roles are
    automation callers; the token's tenant must be the authority's.
    """
    audience = settings.ENTRA_API_AUDIENCE or f"api://{settings.ENTRA_CLIENT_ID}"
    try:
        issuers = [discovery()["issuer"], f"https://sts.windows.net/{tenant_id()}/"]
    except (requests.RequestException, ValueError, KeyError):
        raise SignInUnavailable()
    claims = _claims_or_refusal(
        token, unsigned="The bearer token was not signed by the directory.",
        invalid="The bearer token is not valid for this portal",
        audience=[audience, settings.ENTRA_CLIENT_ID], issuers=issuers, required=("oid", "tid"))
    if str(claims["tid"]).lower() != tenant_id():
        raise SignInRefused("The bearer token is from another tenant.", reason="tenant")
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    return EntraClaims(
        object_id=str(claims["oid"]).lower(), tenant_id=str(claims["tid"]).lower(),
        username=f"app-{app_id or claims['oid']}".lower()[:150],
        display_name=str(claims.get("app_displayname") or app_id)[:150],
        app_roles=tuple(str(r) for r in claims.get("roles") or ()), app_id=app_id)


def claims_of(claims: dict) -> EntraClaims:
    upn = claims.get("preferred_username") or claims.get("upn") or claims.get("email") or ""
    return EntraClaims(
        object_id=str(claims["oid"]).lower(), tenant_id=str(claims["tid"]).lower(),
        username=str(upn)[:150], display_name=str(claims.get("name") or upn)[:150],
        app_roles=tuple(str(r) for r in claims.get("roles") or ()),
        groups=tuple(str(g).lower() for g in claims.get("groups") or ()),
        auth_time=claims.get("auth_time"), app_id=str(claims.get("appid")
                                                      or claims.get("azp") or ""))


def entra_sign_out_url(after: str) -> str:
    """The authority's sign-out (end_session_endpoint) coming back to `after`; "" if the
    authority names none or cannot be reached."""
    try:
        endpoint = discovery().get("end_session_endpoint") or ""
    except (requests.RequestException, ValueError):
        return ""
    if not endpoint:
        return ""
    return f"{endpoint}?{urlencode({'post_logout_redirect_uri': after})}"


def redirect_uri(request) -> str:
    return settings.ENTRA_REDIRECT_URI or request.build_absolute_uri(
        reverse("accounts:entra-callback"))


def entra_sign_in_start(request, *, next_url: str, step_up: bool = False,
                        login_hint: str = "") -> str:
    """Start a sign-in: keep msal's flow in the session; return the authority's URL.

    A step-up asks the authority to authenticate again (`prompt=login`, `max_age=0`).
    """
    kwargs = {"prompt": "login", "max_age": 0} if step_up else {}
    if login_hint:
        kwargs["login_hint"] = login_hint
    with warnings.catch_warnings():
        # msal recommends form_post; the answer comes back as a GET (query) on purpose: the
        # session cookie is SameSite=Lax, which a browser sends on a cross-site top-level GET
        # but not on a cross-site POST. PKCE keeps a code seen in a URL useless to others.
        warnings.simplefilter("ignore", UserWarning)
        flow = msal_app().initiate_auth_code_flow(
            scopes=[], redirect_uri=redirect_uri(request), response_mode="query", **kwargs)
    request.session[FLOW] = {"flow": flow, "next": next_url, "step_up": step_up,
                             "started": int(time.time())}
    return flow["auth_uri"]


def entra_sign_in_complete(request) -> tuple[EntraClaims, dict]:
    """Finish the sign-in of this browser's flow with the authority's answer.

    Returns the validated claims and the flow's bookkeeping (`next`, `step_up`). The flow
    leaves the session first, so the same answer (code and state) is never redeemed twice
    here; the authority also refuses a code used before.
    """
    pending = request.session.pop(FLOW, None)
    if not pending:
        raise SignInRefused("No sign-in is in progress in this browser, or it was finished "
                            "already. Sign in again.", reason="no_flow")
    if int(time.time()) - pending["started"] > FLOW_SECONDS:
        raise SignInRefused("The sign-in took too long. Sign in again.", reason="flow_expired")
    answer = {key: request.GET.get(key) for key in request.GET}
    if answer.get("error"):
        raise SignInRefused("The directory did not sign you in. Try again, or ask your "
                            "administrator for access to this portal.",
                            reason=f"authority:{answer['error'][:40]}")
    flow = pending["flow"]
    try:
        result = msal_app().acquire_token_by_auth_code_flow(flow, answer)
    except ValueError:
        # msal: the state in the answer is not the one this browser's flow sent.
        raise SignInRefused("The sign-in answer does not belong to this sign-in (state).",
                            reason="state")
    except RuntimeError as exc:
        text = str(exc)  # the max_age message quotes the token's claims, nonce included
        reason = ("auth_time" if "max_age" in text else
                  "nonce" if "nonce" in text else "id_token")
        # Not logged as is: msal's message quotes the token's claims.
        raise SignInRefused("The sign-in answer does not belong to this sign-in "
                            f"({reason}).", reason=reason)
    if "error" in result or "id_token" not in result:
        # invalid_grant: the code was used already, expired, or the PKCE verifier is wrong.
        raise SignInRefused("The directory refused the sign-in code (it may have been used "
                            "already). Sign in again.",
                            reason=f"token:{str(result.get('error', 'no_id_token'))[:40]}")
    claims = id_token_validate(result["id_token"], nonce=flow["nonce"])
    del result  # tokens are never kept
    if pending["step_up"]:
        if claims.auth_time is None or claims.auth_time < pending["started"] - LEEWAY:
            raise SignInRefused("The directory did not ask for your credentials again.",
                                reason="auth_time", username=claims.username)
    return claims, {"next": pending["next"], "step_up": pending["step_up"]}
