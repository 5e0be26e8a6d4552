"""Approval pages: the inbox, my requests, every request, one request with its decisions."""
import logging

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views import View

from portal.approvals import registry
from portal.approvals.models import ApprovalRequest
from portal.approvals.selectors import (approval_get, approval_inbox, approval_list,
                                        approval_mine, approval_trail)
from portal.approvals.services import approval_cancel, approval_decide, is_own_request
from portal.approvals.tables import approval_table
from portal.errors import PortalError
from portal.objects import Fact
from portal.permissions import PortalPermissionMixin

logger = logging.getLogger(__name__)

TONES = {"pending": "warn", "approved": "ok", "executing": "warn", "executed": "ok",
         "denied": "bad", "failed": "bad", "expired": "muted", "cancelled": "muted",
         "void": "bad"}


class ApprovalInboxView(PortalPermissionMixin, View):
    required_permission = "approvals.decide_approvalrequest"

    def get(self, request):
        table = approval_table(
            request=request, requests=approval_inbox(user=request.user),
            order=("expires", "id"), label="Requests waiting for your decision, soonest "
                                           "expiry first",
            empty="Nothing waits for your decision. Requests made by others appear here; "
                  "your own never do.")
        return render(request, "approvals/request_list.html", {
            "title": "Approval inbox", "table": table,
            "intro": "Pending requests you may approve or deny. You never see your own "
                     "requests here: someone else must decide them."})


class ApprovalMineView(PortalPermissionMixin, View):
    required_permission = "approvals.view_approvalrequest"

    def get(self, request):
        table = approval_table(request=request, requests=approval_mine(user=request.user),
                               label="Requests you made, newest first",
                               empty="You have made no approval requests. Dangerous actions "
                                     "(purging or deleting a key, for example) become "
                                     "requests here.")
        return render(request, "approvals/request_list.html", {
            "title": "My requests", "table": table,
            "intro": "What you asked for, and where each request stands. You can cancel "
                     "a request until it runs."})


class ApprovalListView(PortalPermissionMixin, View):
    required_permission = "approvals.view_approvalrequest"

    def get(self, request):
        status = request.GET.get("status", "")
        if status not in ApprovalRequest.Status.values:
            status = ""
        table = approval_table(request=request, requests=approval_list(status=status),
                               label="Every approval request, newest first",
                               empty="No approval requests " + (
                                   f"with status {status}." if status else "yet."),
                               filtered=bool(status))
        return render(request, "approvals/request_list.html", {
            "title": "All requests", "table": table, "statuses": ApprovalRequest.Status.choices,
            "status": status,
            "intro": "Every request, by anyone, with its decisions and outcome."})


def _change_rows(req: ApprovalRequest, described: dict) -> list[tuple[str, str]]:
    change = described.get("change")
    if change:
        return [(str(label), str(value)) for label, value in change]
    return [(str(name), value if isinstance(value, str) else
             ", ".join(map(str, value)) if isinstance(value, list) else str(value))
            for name, value in sorted(req.payload.items())]


def _describe(req: ApprovalRequest) -> dict:
    op = registry.operation(req.operation)
    if op is None or op.describe is None:
        return {}
    try:
        return op.describe(dict(req.payload)) or {}
    except PortalError as exc:
        return {"context_error": exc.message}
    except Exception:  # the page still shows the request itself
        logger.exception("Describing approval request #%s (%s) failed", req.pk, req.operation)
        return {"context_error": "The current state could not be read."}


class ApprovalDetailView(PortalPermissionMixin, View):
    required_permission = "approvals.view_approvalrequest"

    def get(self, request, approval_id: int):
        req = approval_get(approval_id=approval_id)
        described = _describe(req)
        own = is_own_request(request.user, req)
        pending = req.status == ApprovalRequest.Status.PENDING and not req.is_expired
        status = "expired" if req.is_expired else req.status
        facts = [
            Fact("Status", req.shown_status, kind="status", tone=TONES.get(status, "muted"),
                 id="request-status"),
            Fact("Operation", registry.label(req.operation)),
            Fact("Target", req.target, kind="code"),
            Fact("Requested by", req.requester_name, id="requester"),
            Fact("Requester object id", req.requester_principal, kind="code"),
            Fact("Requested", req.created, kind="time"),
            Fact("Expires", req.expires, kind="time"),
            Fact("Approvals", f"{req.approvals_given} of {req.required_approvals} "
                              f"({req.policy_name})", id="approval-count"),
            Fact("Ticket", req.ticket, note="None given"),
            Fact("Correlation id", req.correlation_id, kind="code"),
            Fact("Payload hash (SHA-256)", req.payload_hash, kind="code"),
        ]
        if req.job_id:
            facts.append(Fact("Execution job", f"#{req.job_id}", url=req.job.get_absolute_url()
                              if request.user.has_perm("jobs.view_job") else ""))
        return render(request, "approvals/request_detail.html", {
            "req": req, "facts": facts, "described": described,
            "change": _change_rows(req, described), "own": own,
            "may_decide": (pending and not own
                           and request.user.has_perm("approvals.decide_approvalrequest")),
            "may_cancel": own and req.status in ApprovalRequest.OPEN and not req.is_expired,
            "trail": approval_trail(req=req) if request.user.has_perm("audit.view_auditevent")
            else None,
        })


class ApprovalDecideView(PortalPermissionMixin, View):
    required_permission = "approvals.decide_approvalrequest"

    def post(self, request, approval_id: int):
        decision = request.POST.get("decision", "")
        try:
            req = approval_decide(approval_id=approval_id, actor=request.user, decision=decision,
                                  comment=request.POST.get("comment", ""),
                                  request_id=request.id, door="ui")
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, {
                "approved": f"Approved request #{req.pk}: it runs now.",
                "denied": f"Denied request #{req.pk}.",
            }.get(req.status, f"Recorded your approval of request #{req.pk}; it needs "
                              f"{req.required_approvals - req.approvals_given} more."))
        return redirect("approvals:request-detail", approval_id=approval_id)


class ApprovalCancelView(PortalPermissionMixin, View):
    required_permission = "approvals.view_approvalrequest"

    def post(self, request, approval_id: int):
        try:
            req = approval_cancel(approval_id=approval_id, actor=request.user,
                                  request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Cancelled request #{req.pk}.")
        return redirect("approvals:request-detail", approval_id=approval_id)


class ApprovalPolicyListView(PortalPermissionMixin, View):
    required_permission = "approvals.view_approvalpolicy"

    def get(self, request):
        from portal.approvals.selectors import approval_policies

        policies, built_in = approval_policies()
        return render(request, "approvals/policy_list.html",
                      {"policies": policies, "built_in": built_in})
