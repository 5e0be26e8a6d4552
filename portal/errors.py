"""PortalError and its subclasses, and the one DRF exception handler that renders them.

API errors are always `{"error": {"code", "message", "request_id"}}` with the right status,
plus `fields` for bad input: always an object of field name -> list of sentences (nested
names are dotted: `tags.env`, `key_ops.1`; errors of the request as a whole are under
`non_field_errors`).
"""
import logging

from django.conf import settings
from django.core.exceptions import (PermissionDenied, RequestDataTooBig, TooManyFieldsSent,
                                    TooManyFilesSent)
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class PortalError(Exception):
    """An error the caller can act on; its message is safe to show to the user."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class BadInput(PortalError):
    status, code = 400, "bad_input"


class NotAllowed(PortalError):
    status, code = 403, "forbidden"


class NotFound(PortalError):
    status, code = 404, "not_found"


class Conflict(PortalError):
    status, code = 409, "conflict"


class Throttled(PortalError):
    status, code = 429, "throttled"


class HsmUnavailable(PortalError):
    status, code = 503, "hsm_unavailable"


class AuditUnavailable(PortalError):
    status, code = 503, "audit_unavailable"


class QueueUnavailable(PortalError):
    status, code = 503, "queue_unavailable"


class PayloadTooLarge(PortalError):
    status, code = 413, "payload_too_large"


def _is_message(value) -> bool:
    # Django's form.errors.get_json_data() items: {"message": ..., "code": ...}
    return isinstance(value, dict) and isinstance(value.get("message"), str)


def flat_fields(fields) -> dict[str, list[str]]:
    """Field errors in their one shape: field name -> list of sentences.

    Takes what DRF and Django produce (nested dicts and lists of ErrorDetail, message dicts,
    `__all__`) and flattens nested names with dots.
    """
    flat: dict[str, list[str]] = {}

    def walk(name: str, value) -> None:
        if _is_message(value):
            flat.setdefault(name or "non_field_errors", []).append(value["message"])
        elif isinstance(value, dict):
            for key, item in value.items():
                key = "non_field_errors" if key in ("__all__", "non_field_errors") and not name \
                    else str(key)
                walk(f"{name}.{key}" if name else key, item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                nested = isinstance(item, (dict, list, tuple)) and not _is_message(item)
                walk(f"{name}.{index}" if nested and name else (str(index) if nested else name),
                     item)
        elif value is not None and str(value):
            flat.setdefault(name or "non_field_errors", []).append(str(value))

    walk("", fields or {})
    return flat


def error_body(*, code: str, message: str, request_id: str, fields=None) -> dict:
    """The one error envelope of the API."""
    body = {"code": code, "message": message, "request_id": request_id}
    fields = flat_fields(fields)
    if fields:
        body["fields"] = fields
    return {"error": body}


def too_large_error(exc: Exception) -> PortalError:
    """The PortalError for a request body over the configured limits."""
    if isinstance(exc, TooManyFieldsSent):
        return BadInput("The request has too many fields.", code="too_many_fields")
    if isinstance(exc, TooManyFilesSent):
        return BadInput("The request has too many files.", code="too_many_files")
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return PayloadTooLarge(f"The request is larger than the portal accepts "
                           f"({_size_text(limit)} at most).")


def _size_text(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size >= 1024:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


_DRF_CODES = {
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "forbidden",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.ParseError: "malformed_request",
    drf.Throttled: "throttled",
    drf.ValidationError: "bad_input",
}


def api_exception_handler(exc, context):
    """Render every API error in the envelope; unexpected errors become a logged 500."""
    request = context.get("request")
    request_id = getattr(request, "id", "") if request is not None else ""
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        exc = too_large_error(exc)
    if isinstance(exc, PortalError):
        return Response(error_body(code=exc.code, message=exc.message, request_id=request_id,
                                   fields=exc.fields), status=exc.status)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        fields = None
        if isinstance(exc, drf.ValidationError):
            fields = flat_fields(exc.detail if isinstance(exc.detail, dict)
                                 else {"non_field_errors": exc.detail})
            message = "The request has invalid fields: " + ", ".join(sorted(fields)) + "."
        else:
            message = str(exc.detail)
        response = Response(error_body(code=code, message=message, request_id=request_id,
                                       fields=fields), status=exc.status_code)
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            response["WWW-Authenticate"] = auth_header
        elif isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
            response["WWW-Authenticate"] = 'Token realm="api"'
        if isinstance(exc, drf.Throttled) and exc.wait:
            response["Retry-After"] = str(int(exc.wait))
        return response
    logger.exception("Unhandled API error (request %s)", request_id)
    return Response(error_body(code="internal_error", message="Internal error; quote the request id.",
                               request_id=request_id), status=500)


def _json_or_html(request, status: int, code: str, message: str, template: str):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(code=code, message=message,
                                       request_id=getattr(request, "id", "")), status=status)
    from django.shortcuts import render

    return render(request, template, {"error": PortalError(message)}, status=status)


def handler400(request, exception=None):
    """400 (and 413 for an oversized body) as JSON under /api/, as a page elsewhere."""
    if isinstance(exception, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        error = too_large_error(exception)
        return _json_or_html(request, error.status, error.code, error.message, "error.html")
    return _json_or_html(request, 400, "bad_request", "The request could not be read.",
                         "error.html")


def handler404(request, exception=None):
    """404 as JSON under /api/, as a page elsewhere."""
    return _json_or_html(request, 404, "not_found", "Not found.", "error.html")


def handler403(request, exception=None):
    """403 as JSON under /api/, as a page elsewhere."""
    return _json_or_html(request, 403, "forbidden", "You do not have permission to do that.",
                         "error.html")


def handler500(request):
    """500 as JSON under /api/, as a page elsewhere."""
    return _json_or_html(request, 500, "internal_error", "Internal error; quote the request id.",
                         "error.html")


class ClientErrorTracebackFilter(logging.Filter):
    """Log a refusal of the client's request (403, oversized body) as one line, no traceback.

    Django logs PermissionDenied and SuspiciousOperation with the exception attached; for
    these the traceback says nothing the line does not, and floods the log.
    """

    QUIET = (PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.QUIET):
            record.exc_info = None
            record.exc_text = None
        return True
