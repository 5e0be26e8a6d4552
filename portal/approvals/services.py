"""Maker-checker: requesting, deciding, cancelling and executing approvable operations.

A dangerous service calls `approval_require(...)` first thing. Without an approval it gets
back a new PENDING request and returns that instead of acting; approvers decide it (never
the requester: principals are compared by object id, whichever door they come through);
on final approval a Job (kind `approval.execute`) calls the registered service with the
approval attached, and `approval_require` then claims it for execution with one
conditional UPDATE (so it runs once) and returns None. Every step is audited with the
request's correlation id in the row's detail.
"""
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from portal.accounts.identity import principal_id, same_principal
from portal.approvals import registry
from portal.approvals.models import (ApprovalDecision, ApprovalRequest, canonical_payload,
                                     payload_hash)
from portal.approvals.policy import policy_for
from portal.audit.models import AuditEvent
from portal.audit.redaction import redact
from portal.audit.services import audit_record, audit_result
from portal.errors import BadInput, Conflict, NotAllowed, NotFound, PortalError
from portal.jobs.services import job_create, job_enqueue_on_commit, job_finish
from portal.permissions import ADMIN, APPROVER, user_may

logger = logging.getLogger(__name__)

DECIDE_PERMISSION = "approvals.decide_approvalrequest"
MAX_JUSTIFICATION = 2000
MAX_TICKET = 100
MAX_COMMENT = 2000
Status = ApprovalRequest.Status


class SelfApprovalRefused(NotAllowed):
    """The requester (the same principal, under any account or alias) tried to decide."""

    code = "self_approval_refused"


class ApprovalRefused(Conflict):
    """An approval cannot be used to act: changed, expired, not approved, already used."""

    code = "approval_refused"


def _detail(req: ApprovalRequest, **more) -> dict:
    return {"correlation_id": req.correlation_id, "approval_id": req.pk,
            "operation": req.operation, **more}


def _bounded(text: str, limit: int, field: str, what: str) -> str:
    text = (text or "").strip()
    if len(text) > limit:
        raise BadInput(f"The {what} is too long ({limit} characters at most).",
                       fields={field: [f"At most {limit} characters."]})
    return text


# Requesting -------------------------------------------------------------------------------

def approval_require(*, operation: str, actor, payload: dict, target: str, request_id: str,
                     approval=None, justification: str = "", ticket: str = "",
                     context: dict | None = None) -> ApprovalRequest | None:
    """Called first thing by a dangerous service. Returns None when the caller may act now:
    `approval` is an APPROVED request for exactly this operation + payload hash, not expired,
    not executed (it is claimed for execution atomically here, so it runs once). Otherwise
    creates (and audits) a PENDING ApprovalRequest and returns it; the caller returns it
    instead of acting. `context` feeds the policy (e.g. {"role": ..., "scope": ..., "hsm": ...}).

    Raises ApprovalRefused (409) when `approval` is given but cannot be used; a request
    whose operation or payload differs from what was approved is voided.
    """
    if registry.operation(operation) is None:
        raise LookupError(f"{operation} is not a registered approvable operation")
    try:
        digest = payload_hash(operation, payload)
    except (TypeError, ValueError) as exc:  # a programming error: payloads are JSON
        raise TypeError(f"The payload of {operation} must be JSON (names, ids): {exc}") from exc
    if redact(payload) != payload:
        raise ValueError(f"The payload of {operation} must not carry secrets")
    if approval is not None:
        _claim_for_execution(approval=approval, operation=operation, digest=digest, actor=actor)
        return None
    return _request_create(operation=operation, actor=actor, payload=payload, digest=digest,
                           target=target, request_id=request_id, justification=justification,
                           ticket=ticket, context=context or {})


def _request_create(*, operation, actor, payload, digest, target, request_id, justification,
                    ticket, context) -> ApprovalRequest:
    if not getattr(actor, "pk", None):
        raise NotAllowed("Only a signed-in user can make an approval request.")
    justification = _bounded(justification, MAX_JUSTIFICATION, "justification", "justification")
    ticket = _bounded(ticket, MAX_TICKET, "ticket", "ticket reference")
    rule = policy_for(operation=operation, context=context)
    now = timezone.now()
    with transaction.atomic():
        req = ApprovalRequest.objects.create(
            operation=operation, payload=payload, payload_hash=digest, target=target[:512],
            context=context, requester=actor, requester_principal=principal_id(actor),
            requester_name=actor.get_username(), justification=justification, ticket=ticket,
            required_approvals=rule.required_approvers, policy_name=rule.name[:200],
            request_id=(request_id or "")[:64], created=now,
            expires=now + timezone.timedelta(hours=rule.lifetime_hours))
        audit_record(actor=actor, action="approval.request", target=req.target,
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail=_detail(req, payload=payload, payload_hash=digest,
                                    required_approvals=req.required_approvals,
                                    policy=req.policy_name, expires=req.expires.isoformat(),
                                    justification=justification, ticket=ticket))
        transaction.on_commit(lambda: _notify_later(req.pk))
    return req


def _claim_for_execution(*, approval, operation: str, digest: str, actor) -> None:
    """APPROVED -> EXECUTING for exactly this operation and payload, or ApprovalRefused."""
    refusal = None
    with transaction.atomic():
        req = ApprovalRequest.objects.select_for_update().filter(pk=approval.pk).order_by().first()
        if req is None:
            raise ApprovalRefused("The approval request no longer exists.")
        changed = (req.operation != operation or req.payload_hash != digest
                   or not req.hash_is_intact()
                   or req.decisions.exclude(payload_hash=req.payload_hash).exists())
        now = timezone.now()
        if changed:
            refusal = ("payload_changed", "The request was changed after it was approved (its "
                       "operation or details differ from what the approvers saw), so the "
                       "approval is void. Make a new request.")
            if req.status in ApprovalRequest.OPEN:
                ApprovalRequest.objects.filter(pk=req.pk).update(status=Status.VOID,
                                                                 finished=now)
        elif not (same_principal(actor, req.requester)
                  or principal_id(actor) == req.requester_principal):
            refusal = ("not_requester", "This approval was given for another person's request; "
                       "only that request can run with it.")
        elif req.status == Status.APPROVED and req.expires <= now:
            refusal = ("expired", f"The approval expired at {req.expires:%Y-%m-%d %H:%M} UTC "
                       "before it ran. Make a new request.")
            ApprovalRequest.objects.filter(pk=req.pk).update(status=Status.EXPIRED, finished=now)
        elif req.status != Status.APPROVED:
            refusal = ("not_approved", "This request has already run." if req.status in (
                Status.EXECUTING, Status.EXECUTED, Status.FAILED) else
                f"This request is {req.get_status_display().lower()}, not approved, so it "
                "cannot run.")
        else:
            # The one conditional UPDATE that lets exactly one caller run it.
            claimed = ApprovalRequest.objects.filter(
                pk=req.pk, status=Status.APPROVED, payload_hash=digest, expires__gt=now,
            ).update(status=Status.EXECUTING)
            if not claimed:
                refusal = ("not_approved", "This request has already run.")
        if refusal is not None:
            audit_record(actor=actor, action="approval.execute", target=req.target,
                         outcome=AuditEvent.Outcome.DENIED,
                         detail=_detail(req, reason=refusal[0], payload_hash=digest))
    if refusal is not None:
        raise ApprovalRefused(refusal[1], code=f"approval_{refusal[0]}")
    approval.status = Status.EXECUTING


# Deciding ---------------------------------------------------------------------------------

def _locked(approval_id) -> ApprovalRequest:
    try:
        approval_id = int(approval_id)
    except (TypeError, ValueError):
        raise NotFound("No such approval request.") from None
    req = (ApprovalRequest.objects.select_for_update(of=("self",)).filter(pk=approval_id)
           .select_related("requester").order_by().first())
    if req is None:
        raise NotFound(f"Approval request #{approval_id} does not exist.")
    return req


def is_own_request(user, req: ApprovalRequest) -> bool:
    """Whether the user is the request's requester, as a principal (object id), not a name."""
    return principal_id(user) == req.requester_principal or (
        req.requester is not None and same_principal(user, req.requester))


def _decided_by(req: ApprovalRequest, actor, pid: str) -> bool:
    """Whether this principal (under any of its accounts) has decided the request already."""
    return any(d.approver_principal == pid or (d.approver is not None
                                               and same_principal(actor, d.approver))
               for d in req.decisions.select_related("approver"))


def approval_decide(*, approval_id, actor, decision: str, comment: str = "",
                    request_id: str = "", door: str = "") -> ApprovalRequest:
    """Approve or deny a pending request as `actor`. Audited, refusals too.

    Refused: the requester as any alias (403), people who may not decide (403), a request
    that is not pending, expired or changed (409), a second decision by one principal (409).
    One deny denies; the last needed approval queues the execution job. Decisions on one
    request are serialised on its row, so concurrent approvals queue exactly one job.
    `door` (ui, api, admin, command) is recorded in the audit row.
    """
    if decision not in ApprovalDecision.Decision.values:
        raise BadInput("Decide 'approve' or 'deny'.", fields={"decision": ["approve or deny"]})
    comment = _bounded(comment, MAX_COMMENT, "comment", "comment")
    refusal: PortalError | None = None
    with transaction.atomic():
        req = _locked(approval_id)
        now = timezone.now()
        pid = principal_id(actor)
        reason = ""
        if is_own_request(actor, req):
            reason = "self_approval"
            refusal = SelfApprovalRefused("You made this request, so you cannot approve or deny "
                                          "it: another approver must decide.")
        elif not user_may(actor, DECIDE_PERMISSION):
            reason = "not_an_approver"
            refusal = NotAllowed("Only approvers and administrators can decide approval "
                                 "requests.")
        elif req.status == Status.PENDING and req.expires <= now:
            reason = "expired"
            ApprovalRequest.objects.filter(pk=req.pk).update(status=Status.EXPIRED, finished=now)
            refusal = Conflict(f"This request expired at {req.expires:%Y-%m-%d %H:%M} UTC; it "
                               "can no longer be decided.", code="approval_expired")
        elif req.status == Status.PENDING and not req.hash_is_intact():
            reason = "payload_changed"
            ApprovalRequest.objects.filter(pk=req.pk).update(status=Status.VOID, finished=now)
            refusal = Conflict("This request was changed after it was made, so it is void.",
                               code="approval_payload_changed")
        elif req.status != Status.PENDING:
            reason = "not_pending"
            refusal = Conflict(f"This request is already {req.shown_status.lower()}; it takes no "
                               "more decisions.", code="approval_not_pending")
        elif _decided_by(req, actor, pid):
            reason = "already_decided"
            refusal = Conflict("You have already decided this request.",
                               code="approval_already_decided")
        if refusal is not None:
            audit_record(actor=actor, action=f"approval.{decision}", target=req.target,
                         request_id=request_id, outcome=AuditEvent.Outcome.DENIED,
                         detail=_detail(req, reason=reason, door=door))
        else:
            _decision_record(req=req, actor=actor, pid=pid, decision=decision, comment=comment,
                             request_id=request_id, door=door, now=now)
    if refusal is not None:
        raise refusal
    return req


def _decision_record(*, req, actor, pid, decision, comment, request_id, door, now) -> None:
    try:
        with transaction.atomic():
            ApprovalDecision.objects.create(
                request=req, approver=actor, approver_principal=pid,
                approver_name=actor.get_username(), decision=decision, comment=comment,
                payload_hash=req.payload_hash, created=now)
    except IntegrityError as exc:  # the unique (request, principal) row: never twice
        raise Conflict("You have already decided this request.",
                       code="approval_already_decided") from exc
    # Distinct principals as they are now (an account linked since counts as its principal).
    approvals = len({principal_id(d.approver) if d.approver is not None else d.approver_principal
                     for d in req.decisions.filter(decision=ApprovalDecision.Decision.APPROVE)
                     .select_related("approver")})
    if decision == ApprovalDecision.Decision.DENY:
        req.status, req.decided, req.finished = Status.DENIED, now, now
    elif approvals >= req.required_approvals:
        req.status, req.decided = Status.APPROVED, now
    audit_record(actor=actor, action=f"approval.{decision}", target=req.target,
                 request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                 detail=_detail(req, comment=comment, approvals=approvals,
                                required_approvals=req.required_approvals, status=req.status,
                                payload_hash=req.payload_hash, door=door))
    if req.status == Status.APPROVED:
        req.job = _execution_queue(req)
    req.save(update_fields=["status", "decided", "finished", "job"])


def _execution_queue(req: ApprovalRequest):
    from portal.approvals.tasks import approval_execute as approval_execute_task
    from portal.gateway.models import HsmInstance

    hsm = HsmInstance.objects.filter(name=req.context.get("hsm") or "").first()
    job = job_create(kind="approval.execute", actor=req.requester, hsm=hsm,
                     params={"approval_id": req.pk, "operation": req.operation,
                             "correlation_id": req.correlation_id})
    job_enqueue_on_commit(job=job, task=approval_execute_task)
    return job


def approval_cancel(*, approval_id, actor, request_id: str = "") -> ApprovalRequest:
    """The requester withdraws a request that has not run yet. Audited."""
    with transaction.atomic():
        req = _locked(approval_id)
        if not is_own_request(actor, req):
            raise NotAllowed("Only the requester can cancel a request.")
        if req.status not in ApprovalRequest.OPEN:
            raise Conflict(f"This request is already {req.shown_status.lower()}; it cannot be "
                           "cancelled.", code="approval_not_pending")
        now = timezone.now()
        ApprovalRequest.objects.filter(pk=req.pk).update(status=Status.CANCELLED, finished=now)
        req.status, req.finished = Status.CANCELLED, now
        audit_record(actor=actor, action="approval.cancel", target=req.target,
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail=_detail(req))
    return req


def approval_expire_due() -> int:
    """Beat: mark open requests past their expiry as expired (audited, one row each)."""
    now = timezone.now()
    expired = 0
    ids = list(ApprovalRequest.objects.filter(status__in=ApprovalRequest.OPEN, expires__lte=now)
               .values_list("pk", flat=True)[:500])
    for pk in ids:
        with transaction.atomic():
            req = ApprovalRequest.objects.select_for_update().get(pk=pk)
            if req.status not in ApprovalRequest.OPEN or req.expires > now:
                continue
            ApprovalRequest.objects.filter(pk=pk).update(status=Status.EXPIRED, finished=now)
            audit_record(actor=None, action="approval.expire", target=req.target,
                         outcome=AuditEvent.Outcome.RECORDED,
                         detail=_detail(req, expires=req.expires.isoformat()))
            expired += 1
    return expired


def approval_requeue_stalled(*, queued_for: timezone.timedelta = timezone.timedelta(minutes=10)
                             ) -> int:
    """Beat: an approved request whose job never ran (the broker refused it, so the job was
    failed; or its message was lost) gets it queued again, before it expires. Running it
    twice is harmless: the job claim and the approval claim each let one run through.
    Returns how many were queued again."""
    from portal.approvals.tasks import approval_execute as approval_execute_task
    from portal.jobs.models import Job

    now = timezone.now()
    stalled = ApprovalRequest.objects.filter(status=Status.APPROVED, expires__gt=now).filter(
        models.Q(job__isnull=True) | models.Q(job__status=Job.Status.FAILED)
        | models.Q(job__status=Job.Status.QUEUED, job__created__lt=now - queued_for))
    count = 0
    for pk in list(stalled.values_list("pk", flat=True)[:100]):
        with transaction.atomic():
            req = _locked(pk)
            if req.status != Status.APPROVED or req.expires <= now:
                continue
            job = req.job
            if job is not None and job.status == Job.Status.QUEUED:
                job_enqueue_on_commit(job=job, task=approval_execute_task)  # same job again
            else:
                req.job = _execution_queue(req)
                req.save(update_fields=["job"])
            audit_record(actor=None, action="approval.requeue", target=req.target,
                         outcome=AuditEvent.Outcome.RECORDED,
                         detail=_detail(req, job_id=req.job_id,
                                        previous_job_id=job.pk if job else None))
            count += 1
    return count


# Executing --------------------------------------------------------------------------------

def approval_execute(*, job_id: int):
    """Run an approved request's operation (a claimed approval.execute Job), as its requester.

    The registered service is called with the stored payload and the approval attached; it
    calls approval_require, which claims the approval (APPROVED -> EXECUTING) or refuses.
    The outcome is recorded on the request (executed, or failed with the reason) and audited.
    """
    from portal.jobs.models import Job

    job = Job.objects.get(pk=job_id)
    req = ApprovalRequest.objects.select_related("requester").get(pk=job.params["approval_id"])
    op = registry.operation(req.operation)
    intent = audit_record(actor=None, action="approval.execute", target=req.target,
                          request_id=req.correlation_id,
                          detail=_detail(req, job_id=job.pk, requester=req.requester_name))
    reason = ""
    try:
        if op is None:
            raise Conflict(f"{req.operation} is no longer an approvable operation here.")
        if req.requester is None or not req.requester.is_active:
            raise Conflict("The requester's account no longer exists or is disabled.")
        op.service(actor=req.requester, approval=req, request_id=req.correlation_id,
                   **req.payload)
    except PortalError as exc:
        reason = exc.message
    except Exception as exc:  # any failure is recorded on the request, not lost in a log
        logger.exception("Approval #%s (%s) failed", req.pk, req.operation)
        reason = f"The operation failed unexpectedly ({exc.__class__.__name__})."
    now = timezone.now()
    with transaction.atomic():
        if not reason:
            done = ApprovalRequest.objects.filter(pk=req.pk, status=Status.EXECUTING).update(
                status=Status.EXECUTED, finished=now)
            if not done:
                reason = "The operation did not claim its approval (a programming error)."
        if reason:
            ApprovalRequest.objects.filter(pk=req.pk, status__in=(
                Status.APPROVED, Status.EXECUTING)).update(status=Status.FAILED)
            ApprovalRequest.objects.filter(pk=req.pk).update(failure_reason=reason[:2000],
                                                             finished=now)
        req.refresh_from_db()
        audit_result(intent, ok=not reason, detail=_detail(req, status=req.status,
                                                             reason=reason[:500]))
    return job_finish(job_id=job_id, ok=not reason, error=reason,
                      result={"approval_id": req.pk, "status": req.status,
                              "correlation_id": req.correlation_id})


# Notifying --------------------------------------------------------------------------------

def approvers_for(req: ApprovalRequest):
    """Active users who may decide this request (approvers and admins), never its requester."""
    users = (get_user_model().objects.filter(is_active=True, groups__name__in=(APPROVER, ADMIN))
             .distinct().select_related("directory_identity").order_by("pk"))
    return [user for user in users if not is_own_request(user, req)]


def _notify_later(approval_id: int) -> None:
    """Queue the approvers' email (SMTP never holds up a web request); a broker that is
    down costs the email only: the request stands and the inbox shows it."""
    if settings.EMAIL_BACKEND.endswith("dummy.EmailBackend"):
        return
    from portal.approvals.tasks import approval_notify as approval_notify_task

    try:
        approval_notify_task.delay(approval_id)
    except Exception as exc:  # kombu raises many kinds
        logger.warning("Approval #%s: email to approvers not queued (%s)", approval_id,
                       exc.__class__.__name__)


def approval_notify(*, approval_id: int) -> int:
    """Email each approver that a request waits for them, when an email backend is configured.

    Runs after the request commits; a mail failure is logged, never undoes the request.
    Returns how many messages were sent.
    """
    if settings.EMAIL_BACKEND.endswith("dummy.EmailBackend"):
        return 0
    req = ApprovalRequest.objects.select_related("requester").filter(pk=approval_id).first()
    if req is None:
        return 0
    recipients = [user.email for user in approvers_for(req) if user.email]
    if not recipients:
        return 0
    path = reverse("approvals:request-detail", kwargs={"approval_id": req.pk})
    link = base.rstrip("/") + path if (base := getattr(settings, "PORTAL_BASE_URL", "")) else path
    subject = f"Approval needed: {registry.label(req.operation)} ({req.target or req.operation})"
    body = (f"{req.requester_name} asks for: {registry.label(req.operation)}\n"
            f"Target: {req.target}\n"
            f"Justification: {req.justification or '(none)'}\n"
            f"Ticket: {req.ticket or '(none)'}\n"
            f"Approvals needed: {req.required_approvals}\n"
            f"Expires: {req.expires:%Y-%m-%d %H:%M} UTC\n\n"
            f"Review and decide: {link}\n")
    try:
        with get_connection() as connection:
            messages = [EmailMessage(subject, body, None, [to], connection=connection)
                        for to in recipients]
            return connection.send_messages(messages) or 0
    except Exception as exc:  # SMTP down: the request stands, the inbox still shows it
        logger.warning("Approval #%s: email to approvers failed (%s)", req.pk,
                       exc.__class__.__name__)
        return 0


def payload_text(payload: dict) -> str:
    """The payload as shown to people: canonical JSON."""
    return canonical_payload(payload)


# Policies ---------------------------------------------------------------------------------

def approval_policy_set(*, name: str, actor, request_id: str = "", operation_pattern: str = "*",
                        role_pattern: str = "*", scope_pattern: str = "*",
                        required_approvers: int = 1, lifetime_hours: int = 24,
                        priority: int = 100):
    """Create or change one approval policy (data). Audited with the old and new values;
    applies to requests made from now on (a request keeps the rule it was made under)."""
    from portal.approvals.models import ApprovalPolicy

    name = _bounded(name, 200, "name", "policy name")
    if not name:
        raise BadInput("Name the policy.", fields={"name": ["Required."]})
    for field, value, low, high in (("required_approvers", required_approvers, 1, 10),
                                    ("lifetime_hours", lifetime_hours, 1, 720),
                                    ("priority", priority, 0, 100000)):
        if not isinstance(value, int) or not low <= value <= high:
            raise BadInput(f"{field.replace('_', ' ').capitalize()} must be from {low} to "
                           f"{high}.", fields={field: [f"{low} to {high}"]})
    values = {"operation_pattern": _bounded(operation_pattern, 100, "operation_pattern",
                                            "operation pattern") or "*",
              "role_pattern": _bounded(role_pattern, 200, "role_pattern", "role pattern") or "*",
              "scope_pattern": _bounded(scope_pattern, 300, "scope_pattern",
                                        "scope pattern") or "*",
              "required_approvers": required_approvers, "lifetime_hours": lifetime_hours,
              "priority": priority}
    with transaction.atomic():
        current = ApprovalPolicy.objects.select_for_update().filter(name=name).first()
        before = ({field: getattr(current, field) for field in values}
                  if current is not None else None)
        policy, _ = ApprovalPolicy.objects.update_or_create(name=name, defaults=values)
        audit_record(actor=actor, action="approval_policy.set", target=f"approval-policy:{name}",
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"before": before, "after": values})
    return policy


def approval_policy_delete(*, name: str, actor, request_id: str = "") -> None:
    """Remove one approval policy. Audited. (With none left, the built-in defaults apply.)"""
    from portal.approvals.models import ApprovalPolicy

    with transaction.atomic():
        policy = ApprovalPolicy.objects.select_for_update().filter(name=name).first()
        if policy is None:
            raise NotFound(f"No approval policy named {name!r}.")
        before = {"operation_pattern": policy.operation_pattern,
                  "role_pattern": policy.role_pattern, "scope_pattern": policy.scope_pattern,
                  "required_approvers": policy.required_approvers,
                  "lifetime_hours": policy.lifetime_hours, "priority": policy.priority}
        policy.delete()
        audit_record(actor=actor, action="approval_policy.delete",
                     target=f"approval-policy:{name}", request_id=request_id,
                     outcome=AuditEvent.Outcome.RECORDED, detail={"before": before})
