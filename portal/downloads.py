"""Downloads: spreadsheet-safe CSV streamed row by row, and attachment responses."""
import csv
import json

from django.http import HttpResponse, StreamingHttpResponse

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """A cell's text, with a leading ' where a spreadsheet would start a formula."""
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    if text.startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


class _Echo:
    def write(self, value):
        return value


def csv_lines(header, rows):
    """Yield CSV text line by line: the header, then each row (a sequence) made safe."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([safe_cell(value) for value in row])


def attachment(body, *, content_type: str, filename: str):
    """A download: streamed when body is an iterator of chunks, plain when it is bytes."""
    response = (HttpResponse(body, content_type=content_type) if isinstance(body, (bytes, str))
                else StreamingHttpResponse(body, content_type=content_type))
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
