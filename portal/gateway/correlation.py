"""The correlation id the portal sends to the HSM as x-ms-client-request-id.

Managed HSM logs that header as the AuditEvent's correlationId, so each HSM event joins the
portal row that caused it: inside a web request the id is the request's own (request.id,
the audit rows' request_id); a job or beat task names its own with `correlation_scope`.
Sent in GUID form (what the service documents); `correlation_key` turns either form back
into the portal's (32 lower-case hex digits) for the join.
"""
import re
import uuid
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = "x-ms-client-request-id"
_scoped: ContextVar[str] = ContextVar("portal_correlation_id", default="")
# Intents opened and not yet closed in this context, newest last:
# ((seq, request_id, web request id when opened), ...).
_open_intents: ContextVar[tuple] = ContextVar("portal_open_intents", default=())
_HEX32 = re.compile(r"[0-9a-f]{32}")


def current_correlation_id() -> str:
    """The scope's id, else the request id of the newest open audit intent (a job acting
    for an approval: its correlation id), else the web request's id, else "" (the SDK
    makes one up then)."""
    scoped = _scoped.get()
    if scoped:
        return scoped
    web = _web_request_id()
    # Only intents opened while serving this same request (or, in a worker, since the task
    # began): one left open by an earlier request on this thread does not count.
    intents = [request_id for _seq, request_id, opened_in in _open_intents.get()
               if opened_in == web]
    return intents[-1] if intents else web


def _web_request_id() -> str:
    from portal.middleware import _current_ids

    return _current_ids.get()[0]


@contextmanager
def correlation_scope(correlation_id: str):
    """HSM calls made inside the block carry this id (a job's or task's)."""
    token = _scoped.set(correlation_id or "")
    try:
        yield
    finally:
        _scoped.reset(token)


def intent_opened(seq: int, request_id: str) -> None:
    """An intent row was appended: HSM calls until its outcome carry its request id."""
    if request_id:
        _open_intents.set((_open_intents.get() + ((seq, request_id, _web_request_id()),))[-20:])


def intent_closed(seq: int) -> None:
    """The intent's outcome was appended."""
    intents = _open_intents.get()
    if any(item[0] == seq for item in intents):
        _open_intents.set(tuple(item for item in intents if item[0] != seq))


def forget_intents() -> None:
    """A new task starts in this thread: nothing left open by the previous one applies."""
    _open_intents.set(())


def correlation_key(value: str) -> str:
    """The join form of an id: a GUID (any case, with or without dashes) as 32 hex digits."""
    text = (value or "").strip().lower()
    compact = text.replace("-", "")
    return compact if _HEX32.fullmatch(compact) else text[:128]


def header_value(correlation_id: str) -> str:
    """The header form: the portal's 32-hex ids as a GUID, anything else as it is."""
    if _HEX32.fullmatch(correlation_id or ""):
        return str(uuid.UUID(hex=correlation_id))
    return correlation_id


def correlate_request(pipeline_request) -> None:
    """azure-core raw_request_hook: put the current correlation id on the outgoing call."""
    correlation_id = current_correlation_id()
    if correlation_id:
        pipeline_request.http_request.headers[HEADER] = header_value(correlation_id)
