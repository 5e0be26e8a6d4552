"""What a door answers when a service returned a pending ApprovalRequest instead of acting."""
from django.contrib import messages
from django.shortcuts import redirect
from rest_framework import status
from rest_framework.response import Response

from portal.approvals import registry
from portal.approvals.models import ApprovalRequest


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


def page_pending(request, req: ApprovalRequest):
    """Redirect to the request's page with a message saying what happens next."""
    messages.info(request, pending_message(req))
    return redirect(req.get_absolute_url())
