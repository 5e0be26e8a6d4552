"""The dashboard, the API's schema and docs pages, and /healthz."""
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer

from portal.permissions import SIGNED_IN, HasRequiredPermission, PortalPermissionMixin


class DashboardView(PortalPermissionMixin, View):
    """The estate at a glance: each figure only for the roles that may see its source."""

    required_permission = SIGNED_IN

    def get(self, request):
        from django.utils import timezone

        from portal import dashboard
        from portal.gateway.selectors import hsm_list
        from portal.tables import Empty, Table

        user, now = request.user, timezone.now()
        hsms = list(hsm_list()) if user.has_perm("gateway.view_hsminstance") else []
        sections = dashboard.dashboard_sections(user=user, now=now)
        keys = sections.get("keys")
        rows = []
        for health in dashboard.hsm_health(hsms=hsms):
            figures = keys["by_hsm"].get(health.hsm.pk, {}) if keys else {}
            rows.append({"health": health, "keys": figures})
        may_audit = user.has_perm("audit.view_auditevent")
        may_register = user.has_perm("gateway.add_hsminstance")
        hsm_table = Table(
            spec=dashboard.HSMS_TABLE, rows=rows, row_template="dashboard/_hsm_row.html",
            request=request, count=len(rows), noun=("HSM", "HSMs"), label="HSM health and keys",
            empty=Empty("No HSM is registered yet." + (
                "" if may_register else " An administrator registers them."),
                "Register an HSM" if may_register else "",
                reverse("gateway:hsm-list") if may_register else ""))
        dangerous = None
        if may_audit:
            dangerous = Table(
                spec=dashboard.DANGEROUS_TABLE, rows=dashboard.dangerous_actions_recent(),
                row_template="dashboard/_dangerous_row.html", request=request,
                label="Recent dangerous actions",
                empty=Empty("No deletes, purges, disables, policy clears or deregistrations "
                            "have been recorded."))
        context = {
            "now": now, "hsms": hsms, "hsm_table": hsm_table, "keys": keys,
            "single_hsm": hsms[0] if len(hsms) == 1 else None,
            "failed_jobs": (dashboard.failed_jobs_count(now=now)
                            if user.has_perm("jobs.view_job") else None),
            "dangerous": dangerous,
            "audit_chart": dashboard.audit_activity_chart(now=now) if may_audit else None,
            "sections": sections,  # what apps registered (e.g. sections.dr)
        }
        return render(request, "dashboard.html", context)


class TablePreferenceView(PortalPermissionMixin, View):
    """Save how the user likes a table (columns shown, density); any signed-in user."""

    required_permission = {"POST": SIGNED_IN}

    def post(self, request):
        from portal.accounts.preferences import table_preference_set

        from portal.tables import table_spec

        table_id = request.POST.get("table", "")[:64]
        spec = table_spec(table_id)
        # The form sends the columns to show (checked boxes); what is left out is hidden.
        shown = set(request.POST.getlist("shown")[:20])
        hidden = [column.key for column in (spec.columns if spec else ())
                  if column.hideable and column.key not in shown]
        table_preference_set(user=request.user, table_id=table_id, hidden=hidden,
                             density=request.POST.get("density", "comfortable")[:16],
                             request_id=request.id)
        if request.headers.get("X-Table-Preference"):
            return HttpResponse(status=204)  # table.js already changed the page
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
            target = "dashboard"
        return redirect(target)


class ApiSchemaView(SpectacularAPIView):
    """The OpenAPI schema: for API clients, so an anonymous caller gets 401 in the envelope."""

    required_permission = SIGNED_IN
    permission_classes = [HasRequiredPermission]

    def handle_exception(self, exc):
        # Errors are the API's JSON envelope, not a YAML rendering of it.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class ApiDocsView(PortalPermissionMixin, SpectacularSwaggerSplitView):
    """The browsable API docs: a page, so an anonymous visitor is sent to sign-in."""

    required_permission = SIGNED_IN


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _broker_ok() -> bool:
    from portal.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
        return True
    except Exception:
        return False


def healthz(request):
    """Database and broker status for load balancers: 200 when both are up, else 503."""
    checks = {"database": "ok" if _database_ok() else "down",
              "broker": "ok" if _broker_ok() else "down"}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": checks},
                        status=200 if healthy else 503)
