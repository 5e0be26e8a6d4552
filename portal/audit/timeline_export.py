"""Timeline exports: CSV or JSON, streamed, audited before the first byte."""
import json

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.audit.timeline import timeline_all
from portal.downloads import csv_lines
from portal.errors import BadInput

FIELDS = ("time", "source", "actor", "action", "target", "outcome", "correlation", "ref",
          "caused_by", "detail")


def _cells(entry) -> list:
    row = entry.as_dict()
    row["caused_by"] = "; ".join(f"#{item['seq']} {item['action']} by {item['actor']}"
                                 for item in entry.caused_by)
    row["detail"] = json.dumps(entry.detail, sort_keys=True, default=str)
    return [row[name] for name in FIELDS]


def _json(entries):
    yield "["
    first = True
    for entry in entries:
        yield ("" if first else ",\n") + json.dumps(entry.as_dict(), sort_keys=True, default=str)
        first = False
    yield "]\n"


def timeline_export(*, actor, scope, filters, fmt: str, request_id: str):
    """Record who exported which timeline, then return its lines to stream."""
    if fmt not in ("csv", "json"):
        raise BadInput("Export format must be 'csv' or 'json'.")
    audit_record(actor=actor, action="audit.timeline_export", target="audit",
                 request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                 detail={"format": fmt, "scope": scope.kind, "hsm": scope.hsm, "key": scope.key,
                         "principal": scope.principal,
                         "filters": {k: str(v) for k, v in vars(filters).items() if v}})
    entries = timeline_all(scope=scope, filters=filters)
    return csv_lines(FIELDS, (_cells(entry) for entry in entries)) if fmt == "csv" \
        else _json(entries)
