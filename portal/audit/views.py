"""The auditor's pages: the trail with filters and keyset paging, and its exports."""
from django.shortcuts import render
from django.views import View

from portal.audit.forms import AuditFilterForm
from portal.audit.selectors import audit_event_page
from portal.audit.services import audit_export
from portal.downloads import attachment
from portal.errors import BadInput
from portal.permissions import PortalPermissionMixin

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def export_response(request, filters, fmt: str):
    """The streamed download of an export, for both doors."""
    lines = audit_export(actor=request.user, filters=filters, fmt=fmt, request_id=request.id)
    return attachment(lines, content_type=EXPORT_TYPES[fmt], filename=f"audit-events.{fmt}")


def parsed_filter(params) -> AuditFilterForm:
    """The filter form bound to the query string; BadInput if it does not validate."""
    form = AuditFilterForm(params)
    if not form.is_valid():
        raise BadInput("Invalid audit filter.", fields=form.errors.get_json_data())
    return form


class AuditEventListView(PortalPermissionMixin, View):
    required_permission = "audit.view_auditevent"

    def get(self, request):
        form = AuditFilterForm(request.GET)
        if not form.is_valid():
            return render(request, "audit/auditevent_list.html",
                          {"form": form, "events": [], "next_before": None}, status=400)
        events, next_before = audit_event_page(filters=form.to_filter(),
                                               before_seq=form.cleaned_data.get("before"))
        query = request.GET.copy()
        query.pop("before", None)
        return render(request, "audit/auditevent_list.html", {
            "form": form, "events": events, "next_before": next_before,
            "query": query.urlencode(),
        })


class AuditEventExportView(PortalPermissionMixin, View):
    required_permission = "audit.export_auditevent"

    def get(self, request):
        form = parsed_filter(request.GET)
        return export_response(request, form.to_filter(), request.GET.get("export", "csv"))
