"""CSV and JSON exports of the audit trail, streamed, safe to open in a spreadsheet."""
import json

from portal.audit.models import AuditEvent
from portal.downloads import csv_lines

EXPORT_FIELDS = ("seq", "time", "actor_id", "actor_name", "role", "request_id",
                 "client_request_id", "action", "target", "outcome", "detail", "prev_hash",
                 "hash")


def event_row(event: AuditEvent) -> dict:
    """The exported fields of one event (time in ISO-8601 UTC)."""
    row = {name: getattr(event, name) for name in EXPORT_FIELDS}
    row["time"] = event.time.isoformat()
    return row


def csv_chunks(events):
    """Yield the CSV export line by line (header first)."""
    rows = (event_row(event) for event in events)
    return csv_lines(EXPORT_FIELDS, ([row[name] for name in EXPORT_FIELDS] for row in rows))


def json_chunks(events):
    """Yield the JSON export (one array) in chunks."""
    yield "["
    first = True
    for event in events:
        yield ("" if first else ",\n") + json.dumps(event_row(event), sort_keys=True)
        first = False
    yield "]\n"
