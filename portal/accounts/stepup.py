"""Step-up: the most dangerous operations need a sign-in within the last few minutes.

Purge, full restore, security-domain upload and role grants at scope `/` call
`ensure_recent_sign_in(request, operation=...)` first thing in their view. When the
session's sign-in (SIGNED_IN_AT, stamped by every sign-in) is older than
PORTAL_STEP_UP_SECONDS (15 minutes by default), it raises StepUpRequired:

- the API answers 401 `step_up_required` in the error envelope (sign in again in the
  browser, or use a token: see below);
- a page (StepUpMiddleware) sends the browser to re-authenticate (Entra: the MSAL flow
  with `prompt=login` and `max_age`; break-glass: the password page) and back to `next`,
  the page the action started from (a POST cannot be replayed: its form is shown again).

Calls authenticated by an API token carry no interactive sign-in: they are automation,
and their dangerous operations are bound by approvals (maker-checker) instead. A session
that is not signed in at all is refused.
"""
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from portal.accounts import middleware
from portal.accounts.middleware import SIGNED_IN_AT
from portal.errors import PortalError

DEFAULT_STEP_UP_SECONDS = 15 * 60


def step_up_max_age() -> int:
    """Seconds a sign-in counts as recent (PORTAL_STEP_UP_SECONDS, 15 minutes by default)."""
    return int(getattr(settings, "PORTAL_STEP_UP_SECONDS", DEFAULT_STEP_UP_SECONDS))


# The name the brief and other apps use; read through step_up_max_age() so tests may
# change the setting.
STEP_UP_MAX_AGE = DEFAULT_STEP_UP_SECONDS


class StepUpRequired(PortalError):
    """The operation needs a recent sign-in; `reauth_url` is where the browser goes."""

    status, code = 401, "step_up_required"

    def __init__(self, message: str, *, operation: str = "", reauth_url: str = ""):
        super().__init__(message)
        self.operation = operation
        self.reauth_url = reauth_url


def _back_to(request, next_url: str | None) -> str:
    """Where the browser returns after re-authenticating: a GET comes back to itself; a
    POST to the page its form was on (same host only), else the dashboard."""
    candidates = [next_url] if next_url else []
    if request.method == "GET":
        candidates.append(request.get_full_path())
    referer = request.headers.get("Referer", "")
    if referer:
        candidates.append(referer)
    for candidate in candidates:
        if candidate and url_has_allowed_host_and_scheme(
                candidate, allowed_hosts={request.get_host()},
                require_https=request.is_secure()):
            return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def signed_in_seconds_ago(request) -> int | None:
    """Seconds since this session's last sign-in, or None when it is not signed in."""
    session = getattr(request, "session", None)
    if session is None or SESSION_KEY not in session:
        return None
    started = session.get(SIGNED_IN_AT)
    if started is None:
        return None
    return max(0, middleware.clock() - int(started))


def reauth_url(*, operation: str, next_url: str) -> str:
    return reverse("accounts:reauthenticate") + "?" + urlencode(
        {"next": next_url, "operation": operation})


def ensure_recent_sign_in(request, *, operation: str, next_url: str | None = None) -> None:
    """Raise StepUpRequired unless this request's sign-in is recent enough for `operation`.

    Token-authenticated API calls (no session) pass: see the module docstring.
    """
    session = getattr(request, "session", None)
    user = getattr(request, "user", None)
    if (user is not None and user.is_authenticated
            and (session is None or SESSION_KEY not in session)):
        # Authenticated without a signed-in session: an API token (DRF or Entra bearer).
        return
    ago = signed_in_seconds_ago(request)
    limit = step_up_max_age()
    if ago is not None and ago <= limit:
        return
    minutes = max(1, limit // 60)
    raise StepUpRequired(
        f"This operation needs a sign-in within the last {minutes} minute"
        f"{'' if minutes == 1 else 's'}. Sign in again to continue.",
        operation=operation,
        reauth_url=reauth_url(operation=operation, next_url=_back_to(request, next_url)))


class StepUpMiddleware:
    """Sends a page whose view raised StepUpRequired to re-authenticate (APIs get 401)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, StepUpRequired) or request.path.startswith("/api/"):
            return None
        from django.contrib import messages

        messages.info(request, exception.message)
        if request.headers.get("HX-Request"):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = exception.reauth_url
            return response
        return redirect(exception.reauth_url)
