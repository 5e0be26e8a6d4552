"""Reads of approval requests for pages and the API."""
from django.db.models import Q, QuerySet
from django.utils import timezone

from portal.accounts.identity import principal_id
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.errors import NotFound


def _waiting_for(user) -> QuerySet[ApprovalRequest]:
    pid = principal_id(user)
    return (ApprovalRequest.objects
            .filter(status=ApprovalRequest.Status.PENDING, expires__gt=timezone.now())
            .exclude(requester_principal=pid)
            .exclude(decisions__approver_principal=pid))


def approval_inbox(*, user) -> QuerySet[ApprovalRequest]:
    """Pending, unexpired requests this user may still decide (never their own), oldest first."""
    return _waiting_for(user).prefetch_related("decisions").order_by("expires", "id")


def approval_inbox_count(user) -> int:
    """The nav badge: one indexed count (status, expires) per page."""
    return _waiting_for(user).count()


def approval_mine(*, user) -> QuerySet[ApprovalRequest]:
    """Requests this user (as a principal) made, newest first."""
    return (ApprovalRequest.objects.filter(requester_principal=principal_id(user))
            .prefetch_related("decisions").order_by("-created", "-id"))


def approval_list(*, status: str = "", operation: str = "") -> QuerySet[ApprovalRequest]:
    """Every request, newest first, optionally of one status or operation."""
    qs = ApprovalRequest.objects.prefetch_related("decisions")
    if status == ApprovalRequest.Status.EXPIRED:
        qs = qs.filter(Q(status=status) | Q(status__in=ApprovalRequest.OPEN,
                                              expires__lte=timezone.now()))
    elif status in ApprovalRequest.OPEN:
        qs = qs.filter(status=status, expires__gt=timezone.now())
    elif status:
        qs = qs.filter(status=status)
    if operation:
        qs = qs.filter(operation=operation)
    return qs.order_by("-created", "-id")


def approval_get(*, approval_id) -> ApprovalRequest:
    """One request with its decisions, or 404."""
    try:
        approval_id = int(approval_id)
    except (TypeError, ValueError):
        raise NotFound("No such approval request.") from None
    req = (ApprovalRequest.objects.select_related("requester", "job")
           .prefetch_related("decisions").filter(pk=approval_id).first())
    if req is None:
        raise NotFound(f"Approval request #{approval_id} does not exist.")
    return req


def approval_trail(*, req: ApprovalRequest) -> QuerySet[AuditEvent]:
    """The audit rows of one request's life (request, decisions, execution, the operation's
    own rows), found by the correlation id every one of them carries in its detail."""
    return (AuditEvent.objects.filter(detail__correlation_id=req.correlation_id)
            .order_by("seq"))


def approval_policies() -> tuple[list, bool]:
    """The policies in the order they are tried, and whether these are the built-in
    defaults (the table is empty)."""
    from portal.approvals.models import ApprovalPolicy
    from portal.approvals.policy import DEFAULT_LIFETIME_HOURS, DEFAULTS

    rows = list(ApprovalPolicy.objects.order_by("priority", "id"))
    if rows:
        return rows, False
    return [ApprovalPolicy(name=name, operation_pattern=op, role_pattern=role,
                           scope_pattern=scope, required_approvers=approvers,
                           lifetime_hours=DEFAULT_LIFETIME_HOURS, priority=priority)
            for name, op, role, scope, approvers, priority in DEFAULTS], True
