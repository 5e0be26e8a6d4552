"""Sign-in and sign-out with local accounts, both audited; repeated failures lock sign-in."""
from datetime import timedelta

from django.contrib.auth import views as auth_views
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record


MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)


def recent_failures(username: str) -> int:
    """Failed sign-ins for this username in the lockout window (read from the audit trail)."""
    return AuditEvent.objects.filter(target=f"user:{username[:150]}", action="auth.sign_in",
                                     outcome=AuditEvent.Outcome.DENIED,
                                     time__gte=timezone.now() - LOCKOUT).count()


class SignInView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = (request.POST.get("username") or "")[:150]
        if recent_failures(username) >= MAX_FAILURES:
            # Refused before the password is even checked, so guessing gains nothing.
            audit_record(actor=None, action="auth.sign_in", target=f"user:{username}",
                         request_id=request.id, outcome=AuditEvent.Outcome.DENIED,
                         detail={"reason": "locked after repeated failures"})
            form = self.get_form_class()(request)  # unbound: the password is never checked
            return self.render_to_response(self.get_context_data(form=form, locked=True),
                                           status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        user = form.get_user()
        audit_record(actor=user, action="auth.sign_in", target=f"user:{user.get_username()}",
                     request_id=self.request.id, outcome=AuditEvent.Outcome.SUCCEEDED)
        return super().form_valid(form)

    def form_invalid(self, form):
        username = (form.data.get("username") or "")[:150]
        audit_record(actor=None, action="auth.sign_in", target=f"user:{username}",
                     request_id=self.request.id, outcome=AuditEvent.Outcome.DENIED,
                     detail={"reason": "invalid credentials or inactive account"})
        return super().form_invalid(form)


class SignOutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            audit_record(actor=request.user, action="auth.sign_out",
                         target=f"user:{request.user.get_username()}", request_id=request.id,
                         outcome=AuditEvent.Outcome.RECORDED)
        return super().post(request, *args, **kwargs)
