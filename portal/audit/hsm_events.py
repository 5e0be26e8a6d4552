"""Ingesting the HSMs' own AuditEvents (services) and reading them back (selectors).

Incremental and idempotent: per blob the bytes already read and the etag seen are kept in
HsmAuditCursor (an unchanged etag is not read again; a partial last line is read again next
time), and each event's identity (SHA-256 of its canonical JSON) is unique, so reading a
blob twice, losing a cursor or two ingesters racing never stores an event twice.
"""
import hashlib
import json
import logging
import re
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.audit.models import AuditEvent, HsmAuditCursor, HsmAuditEvent
from portal.audit.redaction import redact
from portal.gateway.correlation import correlation_key

logger = logging.getLogger(__name__)

BATCH = 1000
_FRACTION = re.compile(r"(\.\d{6})\d+")
_KEY_PATH = re.compile(r"/(?:keys|deletedkeys)/([0-9A-Za-z-]{1,127})(?:/|$|\?)")
_NOT_KEY_NAMES = {"restore", "import"}


def event_key(event: dict) -> str:
    """The identity of one event: SHA-256 of its canonical JSON."""
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parse_time(value: str) -> datetime:
    text = _FRACTION.sub(r"\1", (value or "").strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return timezone.now()
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)


def _key_name(properties: dict) -> str:
    for url in (properties.get("id") or "", properties.get("requestUri") or ""):
        match = _KEY_PATH.search(str(url))
        if match and match[1].lower() not in _NOT_KEY_NAMES:
            return match[1]
    return ""


def _small_int(value, bound: int) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= bound else None


def event_row(event: dict, *, hsms: dict, source: str) -> HsmAuditEvent:
    """The model row of one AuditEvent dict (as Managed HSM writes it)."""
    properties = event.get("properties") if isinstance(event.get("properties"), dict) else {}
    identity = event.get("identity") if isinstance(event.get("identity"), dict) else {}
    claim = identity.get("claim") if isinstance(identity.get("claim"), dict) else {}
    resource_id = str(event.get("resourceId") or "")
    hsm = hsms.get(resource_id.upper())
    correlation = str(event.get("correlationId") or "")
    return HsmAuditEvent(
        event_key=event_key(event), hsm=hsm,
        hsm_name=hsm.name if hsm else resource_id.rstrip("/").rsplit("/", 1)[-1].lower()[:64],
        resource_id=resource_id[:512], time=_parse_time(str(event.get("time") or "")),
        operation=str(event.get("operationName") or "")[:64],
        result_type=str(event.get("resultType") or "")[:32],
        result_signature=str(event.get("resultSignature") or "")[:64],
        status_code=_small_int(properties.get("httpStatusCode"), 999),
        duration_ms=_small_int(event.get("durationMs"), 2**31 - 1),
        caller_oid=str(claim.get("oid") or "")[:64],
        caller_appid=str(claim.get("appid") or "")[:64],
        caller_upn=str(claim.get("upn") or "")[:256],
        caller_ip=str(event.get("callerIpAddress") or "")[:64],
        correlation_id=correlation[:128], correlation_key=correlation_key(correlation),
        request_uri=redact(str(properties.get("requestUri") or ""))[:1024],
        object_id=str(properties.get("id") or "")[:1024], key_name=_key_name(properties),
        source=source, raw=redact(event))


def _store(rows: list[HsmAuditEvent]) -> int:
    """Insert rows not stored yet; the number inserted."""
    if not rows:
        return 0
    keys = [row.event_key for row in rows]
    known = set(HsmAuditEvent.objects.filter(event_key__in=keys)
                .values_list("event_key", flat=True))
    fresh, seen = [], set(known)
    for row in rows:
        if row.event_key not in seen:
            seen.add(row.event_key)
            fresh.append(row)
    # ignore_conflicts: a concurrent ingester may insert the same events meanwhile.
    HsmAuditEvent.objects.bulk_create(fresh, ignore_conflicts=True, batch_size=BATCH)
    return len(fresh)


def _registered_hsms() -> dict:
    from portal.gateway.models import HsmInstance

    return {hsm.arm_resource_id.upper(): hsm
            for hsm in HsmInstance.objects.exclude(arm_resource_id="")}


def hsm_audit_ingest() -> dict:
    """Read what is new at the configured source into HsmAuditEvent (beat task, command).

    Returns counts {"sources", "read", "stored"}. Audited (hsm_audit.ingest) when anything
    new was stored.
    """
    if settings.HSM_AUDIT_SOURCE == "log_analytics":
        totals = _ingest_log_analytics()
    else:
        totals = _ingest_storage()
    if totals["stored"]:
        from portal.audit.services import audit_record

        audit_record(actor=None, action="hsm_audit.ingest", target="hsm-audit",
                     outcome=AuditEvent.Outcome.RECORDED,
                     detail={"source": settings.HSM_AUDIT_SOURCE, **totals})
    return totals


def _ingest_storage() -> dict:
    from portal.gateway.audit_logs import audit_log_blobs, audit_log_read

    hsms = _registered_hsms()
    totals = {"sources": 0, "read": 0, "stored": 0}
    for blob in audit_log_blobs():
        source = f"blob:{blob['name']}"
        cursor = HsmAuditCursor.objects.filter(source=source).first()
        if cursor and cursor.etag and cursor.etag == blob["etag"]:
            continue  # unchanged since it was read to its end
        if cursor is None:
            HsmAuditCursor.objects.bulk_create([HsmAuditCursor(source=source)],
                                               ignore_conflicts=True)
        with transaction.atomic():
            # One ingester per blob at a time; another skips it this round.
            cursor = (HsmAuditCursor.objects.select_for_update(skip_locked=True)
                      .filter(source=source).first())
            if cursor is None:
                continue
            data, etag = audit_log_read(name=blob["name"], offset=cursor.offset)
            end = data.rfind(b"\n") + 1  # complete lines only; a torn line waits
            rows = []
            for line in data[:end].splitlines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    logger.warning("Skipped an unreadable line in HSM audit log %s", blob["name"])
                    continue
                if isinstance(event, dict):
                    rows.append(event_row(event, hsms=hsms, source="storage"))
            stored = _store(rows)
            cursor.offset += end
            cursor.etag = etag if end == len(data) else ""
            cursor.events += stored
            cursor.save(update_fields=["offset", "etag", "events", "updated"])
        totals["sources"] += 1
        totals["read"] += len(rows)
        totals["stored"] += stored
    return totals


def _ingest_log_analytics() -> dict:
    from portal.gateway.audit_logs import log_analytics_events

    workspace = settings.HSM_AUDIT_WORKSPACE_ID
    if not workspace:
        from portal.errors import BadInput

        raise BadInput("HSM_AUDIT_SOURCE is log_analytics but HSM_AUDIT_WORKSPACE_ID is not set.")
    source = f"workspace:{workspace}"
    HsmAuditCursor.objects.bulk_create([HsmAuditCursor(source=source)], ignore_conflicts=True)
    with transaction.atomic():
        cursor = HsmAuditCursor.objects.select_for_update().get(source=source)
        # Late-arriving rows: read again from 10 minutes before the last event; the unique
        # event identity drops what was already stored.
        since = (cursor.watermark - timedelta(minutes=10)) if cursor.watermark else \
            timezone.now() - timedelta(days=settings.AUDIT_RETENTION_DAYS)
        events = log_analytics_events(workspace_id=workspace, since=since)
        rows = [event_row(event, hsms=_registered_hsms(), source="log_analytics")
                for event in events]
        stored = _store(rows)
        if rows:
            cursor.watermark = max(row.time for row in rows)
        cursor.events += stored
        cursor.save(update_fields=["watermark", "events", "updated"])
    return {"sources": 1, "read": len(rows), "stored": stored}
