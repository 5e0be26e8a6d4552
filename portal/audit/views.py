"""The auditor's pages: the trail with filters and keyset paging, and its exports."""
import json

from django.shortcuts import render
from django.urls import reverse
from django.views import View

from portal.audit.forms import AuditFilterForm
from portal.audit.selectors import audit_event_page
from portal.audit.services import audit_export
from portal.downloads import attachment
from portal.errors import BadInput
from portal.permissions import PortalPermissionMixin
from portal.tables import Column, Empty, Table, TableSpec, table_register

AUDIT_TABLE = table_register(TableSpec("audit", caption="Audit trail", columns=(
    Column("seq", "Seq", numeric=True),
    Column("time", "Time (UTC)", hideable=False),
    Column("actor", "Actor"),
    Column("action", "Action"),
    Column("target", "Target"),
    Column("outcome", "Outcome"),
    Column("request", "Request"),
    Column("detail", "Detail"),
)))

DETAIL_VALUE_CHARS = 80


def detail_fields(detail, *, prefix: str = "") -> list[tuple[str, str]]:
    """An event's detail as short readable "name: value" pairs (nested names dotted)."""
    if not isinstance(detail, dict):
        return [(prefix or "detail", _detail_text(detail))]
    fields = []
    for name, value in detail.items():
        label = f"{prefix}.{name}" if prefix else str(name)
        if label == "intent_seq" and isinstance(value, int):
            fields.append(("intent", f"#{value}"))  # the outcome's own intent row
        elif isinstance(value, dict) and value:
            fields += detail_fields(value, prefix=label)
        else:
            fields.append((label.replace("_", " "), _detail_text(value)))
    return fields


def _detail_text(value) -> str:
    if value is None or value == {} or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        text = ", ".join(str(item) for item in value)
    elif isinstance(value, list | dict):
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= DETAIL_VALUE_CHARS else text[:DETAIL_VALUE_CHARS - 1] + "…"

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
                          {"form": form, "events": [], "next_before": None, "table": None,
                           "filtered": True}, status=400)
        events, next_before = audit_event_page(filters=form.to_filter(),
                                               before_seq=form.cleaned_data.get("before"))
        for event in events:
            event.fields = detail_fields(event.detail)
            event.fields_text = "; ".join(f"{name}: {value}" for name, value in event.fields)
        query = request.GET.copy()
        query.pop("before", None)
        filtered = any(value for name, value in form.cleaned_data.items() if name != "before")
        table = Table(spec=AUDIT_TABLE, rows=events, row_template="audit/_event_row.html",
                      request=request, next_cursor=str(next_before or ""),
                      cursor_param="before", is_first_page=not form.cleaned_data.get("before"),
                      filtered=filtered, label="Audit events, newest first",
                      empty=Empty("No events match these filters." if filtered else
                                  "No events yet: every change made through the portal "
                                  "will be recorded here."))
        return render(request, "audit/auditevent_list.html", {
            "form": form, "events": events, "next_before": next_before, "table": table,
            "filtered": filtered, "query": query.urlencode(),
            "export_url": reverse("audit:event-export"),
        })


class AuditEventExportView(PortalPermissionMixin, View):
    required_permission = "audit.export_auditevent"

    def get(self, request):
        form = parsed_filter(request.GET)
        return export_response(request, form.to_filter(), request.GET.get("export", "csv"))
