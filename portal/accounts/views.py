"""Sign-in and sign-out with local accounts, both audited."""
from django.contrib.auth import views as auth_views

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record


class SignInView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

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
