"""Request ids, extra security headers, and PortalError pages for the HTML door."""
import re
import uuid

from django.shortcuts import render

from portal.errors import PortalError

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-ID if sane), echoed in the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request.id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.id
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
