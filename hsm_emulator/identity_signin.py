"""User sign-in at the authority: the OIDC authorize endpoint, its sign-in page, codes.

``GET /{tenant}/oauth2/v2.0/authorize`` takes an authorization request as Entra does:

- ``client_id`` (a registered application) and ``redirect_uri`` (exactly one of its
  redirect URIs): otherwise an error page, never a redirect (AADSTS700016, AADSTS50011);
- ``response_type=code`` (other types are redirected back as
  ``unsupported_response_type``), ``response_mode`` ``query`` (default) or ``form_post``;
- ``scope`` (``openid`` for an ID token, ``offline_access`` for a refresh token),
  ``state`` and ``nonce`` echoed, PKCE ``code_challenge`` with
  ``code_challenge_method=S256`` (``plain`` is refused);
- ``prompt``: ``login`` (and ``select_account``) always shows the sign-in page, ``none``
  never does (``login_required`` when there is no usable sign-in), ``login_hint`` fills
  the user name;
- ``max_age`` (seconds): the browser's sign-in at the authority is reused only if it is
  no older; otherwise the user signs in again.

A browser that signed in here holds an authority session cookie (HttpOnly, Secure,
SameSite=Lax): later requests without ``prompt=login`` and within ``max_age`` get a code
without the page (single sign-on, as Entra does). The page posts user name and password
to ``POST /{tenant}/login`` with the pending request's random id; a wrong pair shows the
page again with Entra's sentence. On success the browser is redirected to the
``redirect_uri`` with ``code``, ``state``, ``session_state`` (or the form is posted
there).

Codes live ten minutes and are redeemed once: the token endpoint (``tokens.py``) calls
``redeem``, which consumes the code before checking anything else, so a second
redemption is ``invalid_grant`` AADSTS54005 whatever the first one's outcome.
``GET /{tenant}/oauth2/v2.0/logout`` ends the authority session and returns to
``post_logout_redirect_uri`` when it is on the origin of a registered redirect URI.

The page is plain HTML with its own inline style (allowed by hash in its
Content-Security-Policy): nothing loads from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from .identity import User
    from .tokens import Authority, Principal

CODE_LIFETIME = 600
REQUEST_LIFETIME = 900
SESSION_LIFETIME = 24 * 3600
SESSION_COOKIE = "hsm_emulator_auth"
MAX_PENDING = 10000
_PROMPTS = {"login", "none", "select_account", "consent"}
_MODES = {"query", "form_post"}


@dataclass
class AuthRequest:
    """A validated authorization request waiting for the user to sign in."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: Optional[str]
    nonce: Optional[str]
    code_challenge: Optional[str]
    response_mode: str
    login_hint: str
    created: float = field(default_factory=time.time)


@dataclass
class AuthCode:
    """What an authorization code stands for until it is redeemed."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    nonce: Optional[str]
    code_challenge: Optional[str]
    user_id: str
    auth_time: int
    session_id: str
    issued: float = field(default_factory=time.time)


@dataclass
class Session:
    """The browser's sign-in at the authority."""

    user_id: str
    auth_time: int
    created: float = field(default_factory=time.time)


class GrantError(Exception):
    """A token-endpoint refusal: OAuth error, AADSTS number, sentence."""

    def __init__(self, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.code = code
        self.description = description


class SignIn:
    """Pending requests, browser sessions and codes of one authority (in memory)."""

    def __init__(self, authority: "Authority") -> None:
        self._authority = authority
        self._pending: dict[str, AuthRequest] = {}
        self._sessions: dict[str, Session] = {}
        self._codes: dict[str, AuthCode] = {}
        self._redeemed: dict[str, float] = {}  # code digest -> when it may be forgotten

    # -- authorize ----------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not self._authority.known_tenant(tenant):
            return _error_page(400, 90002, f"Tenant '{tenant}' not found.")
        if request.method == "POST":
            params = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        else:
            params = dict(request.query_params)
        client_id = params.get("client_id", "")
        app = self._authority.principals.get(client_id)
        if app is None:
            return _error_page(400, 700016, f"Application with identifier '{client_id}' was not found in the "
                                            "directory.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            return _error_page(400, 50011, f"The redirect URI '{redirect_uri}' specified in the request does not "
                                           f"match the redirect URIs configured for the application '{client_id}'.")
        state = params.get("state")
        mode = params.get("response_mode") or "query"
        if mode not in _MODES:
            mode = "query"

        def back(error: str, code: int, description: str) -> Response:
            return self._respond(redirect_uri, mode, {"error": error, "error_description":
                                                      f"AADSTS{code}: {description}", "state": state})

        if params.get("response_type") != "code":
            return back("unsupported_response_type", 700054,
                        "The response_type must be 'code'; the emulator issues codes only.")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method") or ("plain" if challenge else None)
        if challenge and method != "S256":
            return back("invalid_request", 501491, "The code_challenge_method must be S256.")
        if challenge and not 43 <= len(challenge) <= 128:
            return back("invalid_request", 501491, "The code_challenge is not a valid S256 challenge.")
        prompt = params.get("prompt") or None
        if prompt is not None and prompt not in _PROMPTS:
            return back("invalid_request", 90023, f"Invalid prompt value '{prompt}'.")
        max_age: Optional[int] = None
        if params.get("max_age"):
            try:
                max_age = int(params["max_age"])
            except ValueError:
                max_age = -1
            if not 0 <= max_age <= 10 ** 9:
                return back("invalid_request", 90014, "max_age must be a whole number of seconds.")
        scopes = params.get("scope", "").split()
        if not scopes:
            return back("invalid_request", 900144, "The request body must contain the following parameter: "
                                                   "'scope'.")
        self._prune()
        auth = AuthRequest(client_id, redirect_uri, scopes, state, params.get("nonce"), challenge, mode,
                           params.get("login_hint", "")[:256])
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = self._sessions.get(session_id)
        if session is not None and (session.user_id not in self._authority.directory.users
                                    or time.time() - session.created > SESSION_LIFETIME):
            self._sessions.pop(session_id, None)
            session = None
        fresh = session is not None and (max_age is None or time.time() - session.auth_time <= max_age)
        if prompt in ("login", "select_account") or not fresh:
            if prompt == "none":
                return back("login_required", 50058, "A silent sign-in request was sent but no user is signed in "
                                                     "recently enough.")
            ctx = secrets.token_urlsafe(24)
            self._pending[ctx] = auth
            return _sign_in_page(request, app, auth, ctx)
        assert session is not None
        return self._complete(auth, session_id, session)

    async def login(self, request: Request) -> Response:
        """The sign-in page's form: check the user's password, then answer the pending request."""
        tenant = request.path_params["tenant"]
        if not self._authority.known_tenant(tenant):
            return _error_page(400, 90002, f"Tenant '{tenant}' not found.")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        ctx = form.get("ctx", "")
        auth = self._pending.get(ctx)
        if auth is None or time.time() - auth.created > REQUEST_LIFETIME:
            self._pending.pop(ctx, None)
            return _error_page(400, 50059, "This sign-in request has expired or was already used. Go back to the "
                                           "application and sign in again.")
        app = self._authority.principals.get(auth.client_id)
        if app is None:
            return _error_page(400, 700016, "The application was removed from the directory.")
        username = form.get("username", "").strip()
        user = self._authority.directory.user_by_upn(username) if username else None
        password = form.get("password", "")
        # An unknown user costs the same hash as a known one: the answer's timing names no one.
        checked = (user or self._authority.directory.decoy).check_password(password[:256])
        if user is None or not password or not checked:
            auth.login_hint = username[:256]
            return _sign_in_page(request, app, auth, ctx,
                                 error="Your account or password is incorrect. If you don't remember your "
                                       "password, ask the emulator's operator to create the user again.")
        if app.assignment_required and not self._authority.directory.roles_of(user.object_id, app.client_id):
            del self._pending[ctx]
            return self._respond(auth.redirect_uri, auth.response_mode, {
                "error": "access_denied", "state": auth.state,
                "error_description": f"AADSTS50105: The signed in user '{user.user_principal_name}' is not "
                                     f"assigned to a role for the application '{app.client_id}'."})
        del self._pending[ctx]
        self._prune()
        session_id = secrets.token_urlsafe(32)
        session = Session(user.object_id, int(time.time()))
        self._sessions[session_id] = session
        response = self._complete(auth, session_id, session)
        response.set_cookie(SESSION_COOKIE, session_id, max_age=SESSION_LIFETIME, path="/", secure=True,
                            httponly=True, samesite="lax")
        return response

    async def logout(self, request: Request) -> Response:
        """End the browser's sign-in at the authority; back to the application if it says where."""
        self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        target = request.query_params.get("post_logout_redirect_uri", "")
        allowed = {_origin(uri) for app in self._authority.principals.values() for uri in app.redirect_uris}
        if target and _origin(target) in allowed:
            response: Response = RedirectResponse(target, status_code=302)
        else:
            response = _page(200, "Signed out", "<h1>You signed out of your account</h1>"
                                                "<p>It's a good idea to close all browser windows.</p>")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
        return response

    def _complete(self, auth: AuthRequest, session_id: str, session: Session) -> Response:
        code = secrets.token_urlsafe(48)
        self._codes[code] = AuthCode(auth.client_id, auth.redirect_uri, auth.scopes, auth.nonce,
                                     auth.code_challenge, session.user_id, session.auth_time, session_id)
        session_state = hashlib.sha256(session_id.encode()).hexdigest()[:36]
        return self._respond(auth.redirect_uri, auth.response_mode,
                             {"code": code, "state": auth.state, "session_state": session_state})

    @staticmethod
    def _respond(redirect_uri: str, mode: str, values: dict) -> Response:
        values = {k: v for k, v in values.items() if v is not None}
        if mode == "form_post":
            return _form_post(redirect_uri, values)
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return RedirectResponse(redirect_uri + separator + urlencode(values), status_code=302)

    # -- token endpoint -----------------------------------------------------------

    def redeem(self, client_id: str, code: str, redirect_uri: str, verifier: str) -> tuple["User", AuthCode]:
        """The user and request behind ``code``, consuming it; ``GrantError`` if refused."""
        self._prune()
        digest = hashlib.sha256(code.encode()).hexdigest()
        if digest in self._redeemed:
            raise GrantError("invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please "
                                                     "retry with a new valid code or use an existing refresh token.")
        grant = self._codes.pop(code, None)
        if grant is None:
            raise GrantError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid: the "
                                                       "authorization code is not valid.")
        self._redeemed[digest] = time.time() + 2 * CODE_LIFETIME
        if time.time() - grant.issued > CODE_LIFETIME:
            raise GrantError("invalid_grant", 70008, "The provided authorization code or refresh token has "
                                                     "expired due to inactivity.")
        if grant.client_id != client_id:
            raise GrantError("invalid_grant", 70002, "The authorization code was issued to another application.")
        if grant.redirect_uri != redirect_uri:
            raise GrantError("invalid_grant", 50011, "The redirect URI does not match the redirect URI used in "
                                                     "the authorization request.")
        if grant.code_challenge is not None:
            if not verifier:
                raise GrantError("invalid_grant", 50148, "The code_verifier is required: the authorization request "
                                                         "sent a code_challenge.")
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not hmac.compare_digest(computed, grant.code_challenge):
                raise GrantError("invalid_grant", 501481, "The Code_Verifier does not match the code_challenge "
                                                          "supplied in the authorization request.")
        user = self._authority.directory.users.get(grant.user_id)
        if user is None:
            raise GrantError("invalid_grant", 50034, "The user account does not exist in the directory.")
        return user, grant

    # -- controls -----------------------------------------------------------------

    def age_sessions(self, seconds: int, user_id: Optional[str] = None) -> int:
        """Move sign-in times back by ``seconds`` (tests of max_age); how many sessions moved."""
        moved = 0
        for session in self._sessions.values():
            if user_id is None or session.user_id == user_id:
                session.auth_time -= seconds
                moved += 1
        return moved

    def _prune(self) -> None:
        now = time.time()
        if len(self._pending) > MAX_PENDING:
            for ctx in [c for c, a in self._pending.items() if now - a.created > REQUEST_LIFETIME]:
                del self._pending[ctx]
        if len(self._codes) > MAX_PENDING:
            for code in [c for c, g in self._codes.items() if now - g.issued > CODE_LIFETIME]:
                del self._codes[code]
        if len(self._sessions) > MAX_PENDING:
            for sid in [i for i, x in self._sessions.items() if now - x.created > SESSION_LIFETIME]:
                del self._sessions[sid]
        if len(self._redeemed) > MAX_PENDING:
            for digest in [d for d, until in self._redeemed.items() if until < now]:
                del self._redeemed[digest]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


_STYLE = """
:root { color-scheme: light dark; --fg: #1b1b1b; --bg: #f2f2f2; --card: #fff; --muted: #505050;
        --accent: #0b5cad; --accent-fg: #fff; --error: #a4262c; --border: #767676; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #f3f3f3; --bg: #1b1a19; --card: #252423; --muted: #c8c6c4; --accent: #6cb8f6;
          --accent-fg: #111; --error: #f1707b; --border: #a19f9d; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 "Segoe UI", system-ui, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 440px; margin: 8vh auto; padding: 44px; background: var(--card);
       box-shadow: 0 2px 6px rgba(0,0,0,.2); }
h1 { font-size: 24px; font-weight: 600; margin: 0 0 4px; }
p { margin: 0 0 16px; }
.muted { color: var(--muted); font-size: 13px; }
label { display: block; font-weight: 600; margin: 12px 0 4px; }
input { width: 100%; padding: 6px 8px; font: inherit; color: var(--fg); background: var(--card);
        border: 1px solid var(--border); }
input:focus, button:focus { outline: 2px solid var(--accent); outline-offset: 2px; }
button { margin-top: 24px; min-width: 108px; padding: 6px 12px; font: inherit; font-weight: 600;
         color: var(--accent-fg); background: var(--accent); border: 0; cursor: pointer; }
.error { color: var(--error); font-weight: 600; }
.note { margin-top: 24px; }
"""
_STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def _page(status: int, title: str, body: str, form_action: str = "'self'",
          script: Optional[str] = None) -> HTMLResponse:
    script_src = "'none'"
    script_tag = ""
    if script is not None:
        script_src = "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        script_tag = f"<script>{script}</script>"
    document = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<meta name="referrer" content="no-referrer">'
                f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
                f"<body><main>{body}</main>{script_tag}</body></html>")
    csp = (f"default-src 'none'; style-src '{_STYLE_HASH}'; script-src {script_src}; "
           f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'")
    return HTMLResponse(document, status_code=status, headers={
        "Content-Security-Policy": csp, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer"})


def _sign_in_page(request: Request, app: "Principal", auth: AuthRequest, ctx: str,
                  error: Optional[str] = None) -> HTMLResponse:
    tenant = request.path_params["tenant"]
    alert = ""
    described = ""
    if error:
        alert = f'<p id="sign-in-error" class="error" role="alert">{html.escape(error)}</p>'
        described = ' aria-describedby="sign-in-error" aria-invalid="true"'
    body = (
        "<h1>Sign in</h1>"
        f'<p class="muted">to continue to {html.escape(app.display_name)}</p>'
        f"{alert}"
        f'<form method="post" action="/{html.escape(tenant)}/login" novalidate>'
        f'<input type="hidden" name="ctx" value="{html.escape(ctx)}">'
        '<label for="username">Email or user name</label>'
        f'<input id="username" name="username" type="text" inputmode="email" autocomplete="username" '
        f'required value="{html.escape(auth.login_hint)}"{described}>'
        '<label for="password">Password</label>'
        f'<input id="password" name="password" type="password" autocomplete="current-password" required'
        f"{described}>"
        '<button type="submit">Sign in</button>'
        "</form>"
        '<p class="muted note">hsm_emulator: a local stand-in for Microsoft Entra ID. '
        "Accounts here exist only in this emulator.</p>"
    )
    return _page(200, "Sign in to your account", body,
                 form_action=f"'self' {_origin(auth.redirect_uri)}")


def _error_page(status: int, code: int, description: str) -> HTMLResponse:
    body = ("<h1>Sorry, but we're having trouble signing you in.</h1>"
            f'<p role="alert">AADSTS{code}: {html.escape(description)}</p>')
    return _page(status, "Sign in to your account", body)


def _form_post(redirect_uri: str, values: dict) -> HTMLResponse:
    fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(str(v))}">'
                     for k, v in values.items())
    body = (f'<h1>Working...</h1><form method="post" action="{html.escape(redirect_uri)}">{fields}'
            '<noscript><p>Script is disabled. Select Continue to go back to the application.</p></noscript>'
            '<button type="submit">Continue</button></form>')
    return _page(200, "Working...", body, form_action=_origin(redirect_uri),
                 script="document.forms[0].submit();")


def client_info(user_id: str, tenant_id: str) -> str:
    """The ``client_info`` member of a token response (MSAL keys its account cache on it)."""
    raw = json.dumps({"uid": user_id, "utid": tenant_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
