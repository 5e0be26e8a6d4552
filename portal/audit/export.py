"""CSV and JSON exports of the audit trail, streamed, safe to open in a spreadsheet."""
import csv
import json

from portal.audit.models import AuditEvent

EXPORT_FIELDS = ("seq", "time", "actor_id", "actor_name", "role", "request_id", "action",
                 "target", "outcome", "detail", "prev_hash", "hash")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """A cell's text, with a leading ' where a spreadsheet would start a formula."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    if text.startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


def event_row(event: AuditEvent) -> dict:
    """The exported fields of one event (time in ISO-8601 UTC)."""
    row = {name: getattr(event, name) for name in EXPORT_FIELDS}
    row["time"] = event.time.isoformat()
    return row


class _Echo:
    def write(self, value):
        return value


def csv_lines(events):
    """Yield the CSV export line by line (header first)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    for event in events:
        row = event_row(event)
        yield writer.writerow([safe_cell(row[name]) for name in EXPORT_FIELDS])


def json_chunks(events):
    """Yield the JSON export (one array) in chunks."""
    yield "["
    first = True
    for event in events:
        yield ("" if first else ",\n") + json.dumps(event_row(event), sort_keys=True)
        first = False
    yield "]\n"
