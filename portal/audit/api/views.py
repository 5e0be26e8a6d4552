"""The audit trail over the API: filtered, keyset-paged, exportable as CSV or JSON."""
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.audit.api.serializers import AuditEventOutput
from portal.audit.forms import AuditFilterForm
from portal.audit.selectors import audit_event_page
from portal.audit.views import export_response, parsed_filter
from portal.errors import NotAllowed

_FILTER_PARAMS = [OpenApiParameter(name, OpenApiTypes.STR, required=False)
                  for name in AuditFilterForm.base_fields if name != "before"] + [
    OpenApiParameter("before", OpenApiTypes.INT, required=False,
                     description="Cursor: return events with seq below this."),
    OpenApiParameter("export", OpenApiTypes.STR, required=False, enum=["csv", "json"],
                     description="Download every matching event instead of one page."),
]


class AuditEventListApi(APIView):
    required_permission = "audit.view_auditevent"

    @extend_schema(parameters=_FILTER_PARAMS, responses=AuditEventOutput(many=True))
    def get(self, request):
        form = parsed_filter(request.query_params)
        fmt = request.query_params.get("export")
        if fmt:
            if not request.user.has_perm("audit.export_auditevent"):
                raise NotAllowed("Exporting the audit trail needs the export permission.")
            return export_response(request, form.to_filter(), fmt)
        events, next_before = audit_event_page(filters=form.to_filter(),
                                               before_seq=form.cleaned_data.get("before"))
        next_url = None
        if next_before is not None:
            query = request.query_params.copy()
            query["before"] = str(next_before)
            next_url = request.build_absolute_uri(
                reverse("api:audit-event-list") + "?" + query.urlencode())
        return Response({"results": AuditEventOutput(events, many=True).data, "next": next_url})
