"""Idle timeout for signed-in browser sessions (on top of the absolute SESSION_COOKIE_AGE)."""
import logging
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.errors import AuditUnavailable
from portal.permissions import ADMIN, APPROVER, user_role

PRIVILEGED = {ADMIN, APPROVER}

logger = logging.getLogger(__name__)

LAST_ACTIVITY = "portal_last_activity"
# When the session signed in: Django slides a session's expiry date each time it is saved
# (and the idle stamp saves it), so the absolute lifetime is enforced from this instead.
SIGNED_IN_AT = "portal_signed_in_at"
# Stamp at most this often, so a busy page does not write its session on every request.
STAMP_EVERY_SECONDS = 15


def clock() -> int:
    """Now, in whole seconds: the one clock of session lifetimes (tests move it)."""
    return int(time.time())


def session_limits(user) -> tuple[int, int]:
    """(idle seconds, absolute seconds) for this user's sessions: privileged roles (admin,
    approver) get PORTAL_PRIVILEGED_IDLE_SECONDS / PORTAL_PRIVILEGED_SESSION_SECONDS when
    shorter than the general PORTAL_SESSION_IDLE_SECONDS / PORTAL_SESSION_SECONDS."""
    idle, absolute = settings.PORTAL_SESSION_IDLE_SECONDS, settings.SESSION_COOKIE_AGE
    roles = set(user_role(user).split(","))
    if roles & PRIVILEGED:
        idle = min(idle, settings.PORTAL_PRIVILEGED_IDLE_SECONDS)
        absolute = min(absolute, settings.PORTAL_PRIVILEGED_SESSION_SECONDS)
    return idle, absolute


def stamp_sign_in(sender, request, user, **kwargs) -> None:
    """user_logged_in receiver: the session's absolute lifetime starts now."""
    if request is not None and hasattr(request, "session"):
        request.session[SIGNED_IN_AT] = clock()
        request.session[LAST_ACTIVITY] = clock()


class SessionIdleTimeoutMiddleware:
    """Sign a session out after PORTAL_SESSION_IDLE_SECONDS without activity, and
    PORTAL_SESSION_SECONDS after its sign-in however active it is (both audited); for
    admins and approvers after PORTAL_PRIVILEGED_IDLE_SECONDS (15 minutes) and
    PORTAL_PRIVILEGED_SESSION_SECONDS (12 hours) when those are shorter.

    Activity is any request of a signed-in session except htmx GETs, which are the
    job-progress polling a forgotten tab would keep doing by itself. The session keeps
    the time of the last activity; API calls with a token carry no session and are not
    affected. An idle page request goes to sign-in; an idle API call continues signed
    out (401).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        signed_in = session is not None and SESSION_KEY in session
        now = clock()
        if signed_in:
            started, last = session.get(SIGNED_IN_AT), session.get(LAST_ACTIVITY)
            idle, absolute = session_limits(request.user)
            if started is None:
                # Signed in before this stamp existed, or by a door that did not set it.
                session[SIGNED_IN_AT] = now
            elif now - started > absolute:
                response = self._sign_out(request, reason="lifetime", seconds=now - started,
                                          limit=absolute)
                if response is not None:
                    return response
                signed_in = False
            if signed_in and last is not None and now - last > idle:
                response = self._sign_out(request, reason="idle", seconds=now - last,
                                          limit=idle)
                if response is not None:
                    return response
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if (session is not None and SESSION_KEY in session
                and not (request.method == "GET" and request.headers.get("HX-Request"))
                and now - session.get(LAST_ACTIVITY, 0) >= STAMP_EVERY_SECONDS):
            session[LAST_ACTIVITY] = now
        return response

    def _sign_out(self, request, *, reason: str, seconds: int,
                  limit: int) -> HttpResponse | None:
        user = request.user
        if user.is_authenticated:
            try:
                audit_record(actor=user, action="auth.sign_out",
                             target=f"user:{user.get_username()}",
                             request_id=getattr(request, "id", ""),
                             outcome=AuditEvent.Outcome.RECORDED,
                             detail={"reason": reason, f"{reason}_seconds": seconds,
                                     "limit_seconds": limit, "role": user_role(user)})
            except AuditUnavailable:
                # Ending a session only takes rights away: do it even when it cannot be
                # recorded, rather than keep an idle session alive.
                logger.warning("Sign-out (%s) of user %s not audited", reason, user.pk)
        logout(request)
        if request.path.startswith("/api/"):
            return None  # the call goes on signed out (401 unless it carries a token)
        if reason == "idle":
            minutes = max(1, limit // 60)
            messages.info(request, f"You were signed out after {minutes} minute"
                                   f"{'' if minutes == 1 else 's'} without activity. "
                                   f"Sign in again.")
        else:
            hours = round(limit / 3600, 1)
            messages.info(request, f"Your session reached its limit of {hours:g} hours. "
                                   f"Sign in again.")
        response = redirect_to_login(request.get_full_path())
        if request.headers.get("HX-Request"):
            # htmx would swap the sign-in page into the polled element; navigate instead.
            redirect = HttpResponse(status=204)
            redirect["HX-Redirect"] = response["Location"]
            return redirect
        return response
