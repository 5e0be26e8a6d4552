"""Sign-in and sign-out with local accounts, both audited; guessing is throttled.

The throttle (portal/accounts/throttle.py) decides before the password is checked and
before anything is written to the audit trail.
"""
import math

from django.conf import settings
from django.contrib.auth import authenticate, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from portal.accounts.throttle import (DEVICE_COOKIE, DEVICE_COOKIE_AGE, client_address,
                                      device_cookie_value, sign_in_attempt, sign_in_failed,
                                      sign_in_succeeded, sign_in_throttle_check)
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record


class SignInView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
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
        sign_in_succeeded(attempt=self.attempt, user=user, request_id=self.request.id)
        response = super().form_valid(form)
        # This browser is now known for this account (see throttle.py).
        response.set_cookie(DEVICE_COOKIE, device_cookie_value(user=user),
                            max_age=int(DEVICE_COOKIE_AGE.total_seconds()),
                            path=reverse("accounts:login"), secure=settings.SESSION_COOKIE_SECURE,
                            httponly=True, samesite="Strict")
        return response

    def form_invalid(self, form):
        sign_in_failed(attempt=self.attempt, actor=self.request.user, request_id=self.request.id)
        return super().form_invalid(form)


class SignOutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            audit_record(actor=request.user, action="auth.sign_out",
                         target=f"user:{request.user.get_username()}", request_id=request.id,
                         outcome=AuditEvent.Outcome.RECORDED)
        return super().post(request, *args, **kwargs)


class ReauthenticateView(LoginRequiredMixin, View):
    """Step-up: prove it is still you, then go back to `next` (portal/accounts/stepup.py).

    A user signed in through Entra ID goes through the directory again (MSAL with
    `prompt=login` and `max_age`); a break-glass local account types its password again
    (throttled and audited like the sign-in page). Either is a new sign-in: new session id.
    """

    template_name = "accounts/reauthenticate.html"

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
        return render(request, self.template_name, self._context())

    def post(self, request):
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
