"""PortalError and its subclasses, and the one DRF exception handler that renders them.

API errors are always `{"error": {"code", "message", "request_id"}}` with the right status.
"""
import logging

from django.core.exceptions import PermissionDenied
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


def error_body(*, code: str, message: str, request_id: str, fields: dict | None = None) -> dict:
    """The one error envelope of the API."""
    body = {"code": code, "message": message, "request_id": request_id}
    if fields:
        body["fields"] = fields
    return {"error": body}


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
            fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
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
