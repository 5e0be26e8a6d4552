"""The dashboard, the API's schema and docs pages, and /healthz."""
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views import View
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer

from portal.permissions import SIGNED_IN, HasRequiredPermission, PortalPermissionMixin


class DashboardView(PortalPermissionMixin, View):
    required_permission = SIGNED_IN

    def get(self, request):
        from portal.gateway.selectors import hsm_list
        from portal.jobs.selectors import job_list

        user = request.user
        context = {
            "hsms": list(hsm_list()) if user.has_perm("gateway.view_hsminstance") else [],
            "jobs": list(job_list()[:5]) if user.has_perm("jobs.view_job") else [],
        }
        return render(request, "dashboard.html", context)


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
