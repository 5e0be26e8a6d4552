"""Request ids, extra security headers, and PortalError pages for the HTML door."""
import re
import uuid
from contextvars import ContextVar

from django.shortcuts import render

from portal.errors import PortalError

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")  # whole string: see fullmatch below

# (server request id, client request id) of the request this thread is serving.
_current_ids: ContextVar[tuple[str, str]] = ContextVar("portal_request_ids", default=("", ""))


def client_request_id_for(request_id: str) -> str:
    """The caller's X-Request-ID of the request being served, if request_id is that request's."""
    server_id, client_id = _current_ids.get()
    return client_id if request_id and request_id == server_id else ""


class RequestIdMiddleware:
    """Give every request a server-made id, echoed as X-Request-ID.

    The caller's own X-Request-ID, if it is 8-64 characters of [A-Za-z0-9._-], is kept
    apart as request.client_request_id (audited in its own column, echoed as
    X-Client-Request-ID); it never becomes the request's id.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.id = uuid.uuid4().hex
        supplied = request.headers.get("X-Request-ID", "")
        # fullmatch: with re.match and "$" a trailing newline would pass.
        request.client_request_id = supplied if _CLIENT_REQUEST_ID.fullmatch(supplied) else ""
        token = _current_ids.set((request.id, request.client_request_id))
        try:
            response = self.get_response(request)
        finally:
            _current_ids.reset(token)
        response["X-Request-ID"] = request.id
        if request.client_request_id:
            response["X-Client-Request-ID"] = request.client_request_id
        return response


class SecurityHeadersMiddleware:
    """Headers Django does not set itself; no page needs a camera, a microphone or caching."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy",
                            "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
        response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            # Pages of a signed-in user may show key metadata: keep them out of caches.
            response.setdefault("Cache-Control", "no-store")
        return response

    def process_exception(self, request, exception):
        """A PortalError escaping an HTML view becomes an error page with its status."""
        if isinstance(exception, PortalError) and not request.path.startswith("/api/"):
            return render(request, "error.html", {"error": exception}, status=exception.status)
        return None
