"""Sign-in through Microsoft Entra ID (portal/accounts/entra.py), break-glass local
accounts when PORTAL_BREAK_GLASS is on, sign-out and step-up; every one audited.

The password throttle (portal/accounts/throttle.py) decides before the password is checked
and before anything is written to the audit trail.
"""
import logging
import math
from urllib.parse import urlencode

import jwt
import requests

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from portal.accounts.entra import (SignInRefused, SignInUnavailable, entra_enabled,
                                   entra_sign_in_complete, entra_sign_in_start,
                                   entra_sign_out_url)
from portal.accounts.identity import principal_id
from portal.accounts.services import directory_user_sync
from portal.accounts.throttle import (DEVICE_COOKIE, DEVICE_COOKIE_AGE, client_address,
                                      device_cookie_value, sign_in_attempt, sign_in_failed,
                                      sign_in_succeeded, sign_in_throttle_check)
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.errors import NotAllowed, NotFound
from portal.permissions import SIGNED_IN

logger = logging.getLogger(__name__)


def _safe_next(request, candidate: str) -> str:
    if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def _audit_refusal(request, *, reason: str, method: str, username: str = "") -> None:
    audit_record(actor=request.user if request.user.is_authenticated else None,
                 action="auth.sign_in", target=f"user:{username or '(unknown)'}",
                 request_id=request.id, outcome=AuditEvent.Outcome.DENIED,
                 detail={"method": method, "reason": reason,
                         "address": client_address(request)})


class SignInView(auth_views.LoginView):
    """The sign-in page: "Sign in with Microsoft Entra ID", and the break-glass password
    form only when PORTAL_BREAK_GLASS is on (a password POST is refused otherwise)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        entra_sign_out = ""
        if entra_enabled() and self.request.GET.get("signed_out") == "directory":
            entra_sign_out = entra_sign_out_url(
                self.request.build_absolute_uri(reverse("accounts:login")))
        return super().get_context_data(entra=entra_enabled(), entra_sign_out=entra_sign_out,
                                        break_glass=settings.PORTAL_BREAK_GLASS, **kwargs)

    def post(self, request, *args, **kwargs):
        if not settings.PORTAL_BREAK_GLASS:
            _audit_refusal(request, reason="break-glass sign-in is off", method="break_glass",
                           username=(request.POST.get("username") or "")[:150])
            return render(request, "error.html", {"error": NotAllowed(
                "Local accounts are off: sign in with Microsoft Entra ID.")}, status=403)
        self.attempt = sign_in_attempt(username=request.POST.get("username") or "",
                                       address=client_address(request),
                                       device_cookie=request.COOKIES.get(DEVICE_COOKIE, ""))
        retry_at = sign_in_throttle_check(attempt=self.attempt)
        if retry_at is not None:
            # Refused before the password is checked, so guessing gains nothing.
            form = self.get_form_class()(request)  # unbound: nothing typed is echoed back
            wait = max(1, math.ceil((retry_at - timezone.now()).total_seconds()))
            response = self.render_to_response(
                self.get_context_data(form=form, retry_at=retry_at,
                                      retry_minutes=math.ceil(wait / 60)), status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        user = form.get_user()
        sign_in_succeeded(attempt=self.attempt, user=user, request_id=self.request.id,
                          detail={"method": "break_glass"})
        response = super().form_valid(form)
        # This browser is now known for this account (see throttle.py).
        response.set_cookie(DEVICE_COOKIE, device_cookie_value(user=user),
                            max_age=int(DEVICE_COOKIE_AGE.total_seconds()),
                            path=reverse("accounts:login"), secure=settings.SESSION_COOKIE_SECURE,
                            httponly=True, samesite="Strict")
        return response

    def form_invalid(self, form):
        sign_in_failed(attempt=self.attempt, actor=self.request.user, request_id=self.request.id,
                       detail={"method": "break_glass"})
        return super().form_invalid(form)


class EntraStartView(View):
    """Send the browser to the authority with a new flow (state, nonce, PKCE)."""

    def get(self, request):
        if not entra_enabled():
            raise NotFound("Sign-in with Microsoft Entra ID is not configured.")
        next_url = _safe_next(request, request.GET.get("next", ""))
        try:
            return redirect(entra_sign_in_start(request, next_url=next_url))
        except (requests.RequestException, ValueError, KeyError):
            logger.warning("Entra authority unreachable at sign-in start")
            raise SignInUnavailable()


class EntraCallbackView(View):
    """The authority's answer: validate, find the user by object id, sync roles, sign in."""

    def get(self, request):
        if not entra_enabled():
            raise NotFound("Sign-in with Microsoft Entra ID is not configured.")
        before = principal_id(request.user) if request.user.is_authenticated else ""
        try:
            claims, pending = entra_sign_in_complete(request)
        except SignInRefused as refused:
            _audit_refusal(request, reason=refused.reason, method="entra",
                           username=refused.username)
            return render(request, "accounts/sign_in_refused.html", {"error": refused},
                          status=refused.status)
        except (requests.RequestException, jwt.PyJWKClientConnectionError):
            raise SignInUnavailable()
        user, roles = directory_user_sync(claims=claims, request_id=request.id)
        if not user.is_active or not roles:
            reason = "account disabled" if not user.is_active else "no portal role"
            _audit_refusal(request, reason=reason, method="entra",
                           username=user.get_username())
            if request.user.is_authenticated:
                logout(request)
            return render(request, "accounts/sign_in_refused.html", {"error": SignInRefused(
                "Your account has no role in this portal. Ask an administrator to assign "
                "you an app role (admin, approver or auditor) in Microsoft Entra ID.",
                reason=reason)}, status=403)
        audit_record(actor=user, action="auth.sign_in", target=f"user:{user.get_username()}",
                     request_id=request.id, outcome=AuditEvent.Outcome.SUCCEEDED,
                     detail={"method": "entra", "object_id": claims.object_id,
                             "tenant_id": claims.tenant_id, "roles": roles,
                             "step_up": pending["step_up"], "address": client_address(request)})
        if before and before != principal_id(user):
            logout(request)  # another person: nothing of the previous session carries over
        request.session.cycle_key()
        login(request, user, backend="portal.permissions.RoleBackend")
        return redirect(_safe_next(request, pending["next"]))


class SignOutView(auth_views.LogoutView):
    """Sign out of the portal: audited, the session deleted server-side. A directory user
    is then offered a link to sign out of Entra ID too (its single sign-on session is the
    directory's; a form's redirect may not leave the portal, CSP form-action 'self')."""

    def post(self, request, *args, **kwargs):
        directory = False
        if request.user.is_authenticated:
            directory = not request.user.has_usable_password()
            audit_record(actor=request.user, action="auth.sign_out",
                         target=f"user:{request.user.get_username()}", request_id=request.id,
                         outcome=AuditEvent.Outcome.RECORDED)
        response = super().post(request, *args, **kwargs)
        if directory and entra_enabled() and response.status_code == 302:
            response["Location"] = reverse("accounts:login") + "?signed_out=directory"
        return response


class ReauthenticateView(LoginRequiredMixin, View):
    """Step-up: prove it is still you, then go back to `next` (portal/accounts/stepup.py).

    A user signed in through Entra ID goes through the directory again (MSAL with
    `prompt=login` and `max_age`); a break-glass local account types its password again
    (throttled and audited like the sign-in page). Either is a new sign-in: new session id.
    """

    template_name = "accounts/reauthenticate.html"
    required_permission = SIGNED_IN

    def _next(self) -> str:
        candidate = self.request.POST.get("next") or self.request.GET.get("next") or ""
        if url_has_allowed_host_and_scheme(candidate, allowed_hosts={self.request.get_host()},
                                           require_https=self.request.is_secure()):
            return candidate
        return reverse(settings.LOGIN_REDIRECT_URL)

    def _context(self, **extra) -> dict:
        return {"next": self._next(), "operation": self.request.GET.get("operation", "")[:100],
                **extra}

    def get(self, request):
        directory = entra_enabled() and not request.user.has_usable_password()
        if directory and request.GET.get("go") != "1":
            # A page first, with a link to the directory: the step-up often starts from a
            # form POST, and the CSP (form-action 'self') rightly stops a form's redirect
            # chain from leaving the portal; following a link is a navigation of its own.
            return render(request, self.template_name, self._context(
                directory=True, go_query=urlencode({"go": "1", "next": self._next()})))
        if directory:
            # A directory user proves it is them at the directory (prompt=login, max_age=0).
            try:
                return redirect(entra_sign_in_start(
                    request, next_url=self._next(), step_up=True,
                    login_hint=request.user.get_username()))
            except (requests.RequestException, ValueError, KeyError):
                raise SignInUnavailable()
        return render(request, self.template_name, self._context())

    def post(self, request):
        if not request.user.has_usable_password():
            raise NotAllowed("This account signs in through Microsoft Entra ID.")
        attempt = sign_in_attempt(username=request.user.get_username(),
                                  address=client_address(request),
                                  device_cookie=request.COOKIES.get(DEVICE_COOKIE, ""))
        retry_at = sign_in_throttle_check(attempt=attempt)
        if retry_at is not None:
            wait = max(1, math.ceil((retry_at - timezone.now()).total_seconds()))
            response = render(request, self.template_name, self._context(
                retry_at=retry_at, retry_minutes=math.ceil(wait / 60)), status=429)
            response["Retry-After"] = str(wait)
            return response
        user = authenticate(request, username=request.user.get_username(),
                            password=request.POST.get("password") or "")
        if user is None or user.pk != request.user.pk:
            sign_in_failed(attempt=attempt, actor=request.user, request_id=request.id,
                           detail={"method": "break_glass", "step_up": True})
            return render(request, self.template_name, self._context(failed=True), status=400)
        sign_in_succeeded(attempt=attempt, user=user, request_id=request.id,
                          detail={"method": "break_glass", "step_up": True})
        request.session.cycle_key()  # login() keeps the id for the same user: a new one
        login(request, user)  # SIGNED_IN_AT is now
        return redirect(self._next())
