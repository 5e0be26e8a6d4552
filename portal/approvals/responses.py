"""What a door answers when a service returned a pending ApprovalRequest instead of acting."""
from django.contrib import messages
from django.shortcuts import redirect
from rest_framework import status
from rest_framework.response import Response

from portal.approvals import registry
from portal.approvals.models import ApprovalRequest
from portal.errors import PortalError


def pending_message(req: ApprovalRequest) -> str:
    needed = req.required_approvals
    return (f"{registry.label(req.operation)} needs approval: request #{req.pk} waits for "
            f"{needed} approver{'s' if needed != 1 else ''} other than you. It runs when "
            f"approved, and expires at {req.expires:%Y-%m-%d %H:%M} UTC.")


def api_pending(req: ApprovalRequest) -> Response:
    """202 Accepted with {"approval_request": {...}}: nothing was done yet."""
    from portal.approvals.api.serializers import ApprovalRequestOutput

    return Response({"approval_request": ApprovalRequestOutput(req).data},
                    status=status.HTTP_202_ACCEPTED)


def api_outcome(result, output=None, *, status_code: int = status.HTTP_200_OK) -> Response:
    """The API's answer to what a service returned: a pending ApprovalRequest as api_pending
    (202, nothing done yet); anything else `output(result).data` (no body without an output
    serializer) with `status_code`."""
    if isinstance(result, ApprovalRequest):
        return api_pending(result)
    return Response(output(result).data if output else None, status=status_code)


def page_pending(request, req: ApprovalRequest):
    """Redirect to the request's page with a message saying what happens next."""
    messages.info(request, pending_message(req))
    return redirect(req.get_absolute_url())


def page_outcome(request, result, *, success: str, url):
    """A page's answer to what a service returned: a pending ApprovalRequest goes to its page
    (page_pending); anything else flashes `success` and redirects to `url`."""
    if isinstance(result, ApprovalRequest):
        return page_pending(request, result)
    messages.success(request, success)
    return redirect(url)


def page_act(request, call, *, success: str, fallback: str, follow: bool = False):
    """A page's POST that runs one service call: a PortalError flashes its sentence and goes
    to `fallback`; otherwise page_outcome, to `fallback`, or with `follow` to what the call
    returned when it returned something (a URL, or an object with get_absolute_url)."""
    try:
        result = call()
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect(fallback)
    return page_outcome(request, result, success=success,
                        url=(result or fallback) if follow else fallback)
