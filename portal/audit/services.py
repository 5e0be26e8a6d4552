"""Appending to the audit trail. Fails closed: no record, no action."""
import logging

from django.db import DatabaseError, transaction
from django.utils import timezone

from portal.audit.chain import GENESIS_HASH, ChainReport, verify_rows, event_hash
from portal.audit.models import AuditChainHead, AuditEvent
from portal.audit.redaction import redact
from portal.errors import AuditUnavailable, BadInput
from portal.gateway.correlation import intent_closed, intent_opened
from portal.middleware import client_request_id_for
from portal.permissions import user_role

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"


class AuditOutcomeUnrecorded(AuditUnavailable):
    """The outcome row of an intent could not be appended, after the action was attempted.

    Unlike a failed intent ("nothing was done"), the action may well have happened: the
    message says so, names the intent's seq, and tells the user not to repeat it blindly.
    """

    code = "audit_outcome_unrecorded"

    def __init__(self, message: str, *, intent_seq: int, acted: bool):
        super().__init__(message)
        self.intent_seq = intent_seq
        self.acted = acted


def actor_fields(actor) -> dict:
    """actor_id, actor_name and role of a user; None is the system (Celery beat, commands)."""
    if actor is None:
        return {"actor_id": "", "actor_name": SYSTEM_ACTOR, "role": ""}
    if not getattr(actor, "is_authenticated", False):
        return {"actor_id": "", "actor_name": "anonymous", "role": ""}
    return {"actor_id": str(actor.pk), "actor_name": actor.get_username(),
            "role": user_role(actor)}


def _append(*, who: dict, action: str, target: str, request_id: str, client_request_id: str,
            outcome: str, detail: dict | None) -> AuditEvent:
    fields = {**who, "request_id": (request_id or "")[:64],
              "client_request_id": (client_request_id or "")[:64], "action": action,
              "target": redact(target or "")[:512], "outcome": outcome,
              "detail": redact(detail or {})}
    try:
        # Inside a caller's transaction no savepoint is needed: a failure here raises
        # AuditUnavailable, which rolls the caller's transaction back too.
        with transaction.atomic(savepoint=False):
            head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
            if head is None:
                # First row ever (or after a test flush): concurrent first writers must
                # not both create the head, so insert-if-absent, then lock it.
                AuditChainHead.objects.bulk_create(
                    [AuditChainHead(pk=1, seq=0, hash=GENESIS_HASH)], ignore_conflicts=True)
                head = AuditChainHead.objects.select_for_update().get(pk=1)
            # Time never goes backwards along the chain (a clock step back keeps the last
            # row's time), so a date range is a seq range: searches stay on (x, seq) indexes.
            now = timezone.now()
            last_time = (AuditEvent.objects.filter(seq=head.seq).values_list("time", flat=True)
                         .first() if head.seq else None)
            fields.update(seq=head.seq + 1, time=max(now, last_time) if last_time else now,
                          prev_hash=head.hash)
            fields["hash"] = event_hash(fields)
            event = AuditEvent.objects.create(**fields)
            AuditChainHead.objects.filter(pk=1).update(seq=event.seq, hash=event.hash)
    except DatabaseError as exc:
        logger.error("Audit write failed for %s: %s", action, exc.__class__.__name__)
        raise AuditUnavailable(
            "The audit trail is unavailable, so nothing was done. Try again later.") from exc
    return event


def audit_record(*, actor, action: str, target: str = "", request_id: str = "",
                 outcome: str = AuditEvent.Outcome.INTENT,
                 detail: dict | None = None) -> AuditEvent:
    """Append one row to the chain and return it (detail and target are redacted first).

    request_id is the server's id of the request (request.id); when it is the request being
    served, the caller's own X-Request-ID goes in the row's client_request_id.
    Serialised on the chain-head row, so concurrent writers get contiguous seqs and one
    chain. Raises AuditUnavailable (503) if the row cannot be written: callers must not
    act then. Joins the caller's transaction when there is one.
    """
    event = _append(who=actor_fields(actor), action=action, target=target,
                    request_id=request_id, client_request_id=client_request_id_for(request_id),
                    outcome=outcome, detail=detail)
    if outcome == AuditEvent.Outcome.INTENT:
        # HSM calls until the outcome carry this request id as x-ms-client-request-id.
        intent_opened(event.seq, event.request_id)
    return event


def audit_result(intent: AuditEvent, *, ok: bool, detail: dict | None = None,
                 outcome: str | None = None, done: str = "") -> AuditEvent:
    """Append the outcome of an intent: a second row by the same actor, never an update.

    If that row cannot be written, raises AuditOutcomeUnrecorded (503), whose message tells
    the truth: with ok=True the action happened (`done` says what, e.g. "The HSM rotated
    key app-key"); with ok=False it did not succeed. Neither says "nothing was done".
    """
    who = {"actor_id": intent.actor_id, "actor_name": intent.actor_name, "role": intent.role}
    intent_closed(intent.seq)
    result = outcome or (AuditEvent.Outcome.SUCCEEDED if ok else AuditEvent.Outcome.FAILED)
    # An approved action's chain (request -> approvals -> action -> outcome) is one
    # correlation id: the outcome carries its intent's.
    linked = ({"correlation_id": intent.detail["correlation_id"]}
              if isinstance(intent.detail, dict) and intent.detail.get("correlation_id") else {})
    try:
        return _append(who=who, action=intent.action, target=intent.target,
                       request_id=intent.request_id,
                       client_request_id=intent.client_request_id, outcome=result,
                       detail={"intent_seq": intent.seq, **linked, **(detail or {})})
    except AuditUnavailable as exc:
        # Operators reconcile from this line: the intent row stands without its outcome.
        logger.error("Audit outcome %s of intent #%s (%s) was not recorded.",
                     result, intent.seq, intent.action)
        if ok:
            what = done or f"{intent.action} on {intent.target or 'the portal'} was carried out"
            message = (f"{what}, but the audit trail could not record the outcome "
                       f"(intent #{intent.seq}). Do not repeat it: check its current state "
                       "and tell an administrator so the trail can be completed.")
        else:
            message = (f"{intent.action} on {intent.target or 'the portal'} did not succeed, "
                       f"and the audit trail could not record that (intent #{intent.seq}). "
                       "Check its current state before trying again.")
        raise AuditOutcomeUnrecorded(message, intent_seq=intent.seq, acted=ok) from exc


def audit_verify(*, batch: int = 5000) -> ChainReport:
    """Re-compute the whole chain and name the first bad seq (read-only)."""
    head = AuditChainHead.objects.filter(pk=1).first()
    rows = (AuditEvent.objects.order_by("seq").values().iterator(chunk_size=batch))
    return verify_rows(rows, head.seq if head else 0, head.hash if head else GENESIS_HASH)


def audit_export(*, actor, filters, fmt: str, request_id: str):
    """Record who exported what, then return the export's lines (CSV or JSON) to stream."""
    from portal.audit import export
    from portal.audit.selectors import audit_event_list_for_export

    if fmt not in ("csv", "json"):
        raise BadInput("Export format must be 'csv' or 'json'.")
    audit_record(actor=actor, action="audit.export", target="audit",
                 request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                 detail={"format": fmt, "filters": {k: str(v) for k, v in vars(filters).items() if v}})
    events = audit_event_list_for_export(filters=filters)
    return export.csv_chunks(events) if fmt == "csv" else export.json_chunks(events)
