"""Signed checkpoints of the audit chain, full verification, and the retention purge.

A checkpoint is the JSON {"chain", "kind", "seq", "hash", "time", "key_id", "algorithm"}
signed (ES256 over SHA-256 of its canonical JSON) by an EC key in an HSM that the portal
creates on first use (AUDIT_CHECKPOINT_KEY, default `portal-audit-checkpoint`, in
AUDIT_CHECKPOINT_HSM or the primary HSM). The signed document goes to blob storage
(container `audit-checkpoints`) and a row to AuditCheckpoint. Someone who can rewrite the
database cannot forge the signature, and cannot reach the copies in storage.

Verification (`audit_verification_run`) reads the checkpoints from storage and the
database, checks every signature with the HSM key, then walks the chain from its oldest
kept row (attested by a signed retention anchor when older rows were purged), comparing each
row a checkpoint names with the checkpoint: a rewritten row, or a tail removed together
with a reset chain head, is found even if every hash was recomputed.
"""
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from portal.audit.chain import GENESIS_HASH, ChainReport, ChainWalker
from portal.audit.models import (AuditChainHead, AuditCheckpoint, AuditEvent,
                                 AuditVerification)
from portal.audit.services import audit_record, audit_result
from portal.errors import BadInput, Conflict, PortalError

logger = logging.getLogger(__name__)

CHAIN_NAME = "mhsm-portal-audit"
CHECKPOINT_ACTION = "audit.checkpoint"
SIGNED_FIELDS = ("chain", "kind", "seq", "hash", "time", "key_id", "algorithm")
VERIFY_BATCH = 5000


def signed_payload(document: dict) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return json.dumps({name: document.get(name) for name in SIGNED_FIELDS}, sort_keys=True,
                      separators=(",", ":")).encode()


def checkpoint_hsm():
    """The HSM whose key signs checkpoints: AUDIT_CHECKPOINT_HSM, else the primary."""
    from portal.gateway.models import HsmInstance

    hsms = HsmInstance.objects.all()
    if settings.AUDIT_CHECKPOINT_HSM:
        hsm = hsms.filter(name=settings.AUDIT_CHECKPOINT_HSM).first()
    else:
        hsm = hsms.filter(role="primary").order_by("name").first() or hsms.order_by("name").first()
    if hsm is None:
        raise Conflict("No HSM is registered to sign audit checkpoints "
                       "(register one, or set AUDIT_CHECKPOINT_HSM).")
    return hsm


def _hsm_for_key(key_id: str):
    from portal.gateway.models import HsmInstance

    for hsm in HsmInstance.objects.all():
        if key_id.lower().startswith(hsm.uri.rstrip("/").lower() + "/keys/"):
            return hsm
    return None


def checkpoint_key_ensure(hsm) -> str:
    """The signing key's current kid, creating the key (audited) the first time."""
    from portal.gateway import audit_logs

    name = settings.AUDIT_CHECKPOINT_KEY
    key = audit_logs.checkpoint_key_get(hsm, name=name)
    if key:
        return key["kid"]
    intent = audit_record(actor=None, action="audit.checkpoint_key.create",
                          target=f"hsm:{hsm.name}/key:{name}",
                          detail={"purpose": "signs audit chain checkpoints", "kty": "EC P-256"})
    try:
        key = audit_logs.checkpoint_key_create(hsm, name=name)
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.message})
        raise
    audit_result(intent, ok=True, detail={"kid": key["kid"]},
                 done=f"The HSM created checkpoint key {name}")
    return key["kid"]


def checkpoint_create(*, kind: str = AuditCheckpoint.Kind.HEAD, seq: int | None = None,
                      hash: str = "", force: bool = False) -> AuditCheckpoint | None:
    """Sign and store one checkpoint (the chain head unless seq/hash are given). Audited.

    A head checkpoint is skipped (None) when nothing but checkpoints happened since the last.
    """
    from portal.gateway import audit_logs

    if seq is None:
        last = AuditCheckpoint.objects.filter(kind=AuditCheckpoint.Kind.HEAD).order_by("-seq").first()
        if not force and last and not AuditEvent.objects.filter(seq__gt=last.seq).exclude(
                action__startswith=CHECKPOINT_ACTION).exists():
            return None
    hsm = checkpoint_hsm()
    key_id = checkpoint_key_ensure(hsm)  # first: its creation rows come under the head
    if seq is None:
        head = AuditChainHead.objects.filter(pk=1).first()
        seq, hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    now = timezone.now()
    document = {"chain": CHAIN_NAME, "kind": str(kind), "seq": seq, "hash": hash,
                "time": now.isoformat(timespec="microseconds"), "key_id": key_id,
                "algorithm": audit_logs.CHECKPOINT_ALGORITHM}
    blob_name = f"{kind}/{seq:015d}-{now:%Y%m%dT%H%M%S%f}.json"
    intent = audit_record(actor=None, action=CHECKPOINT_ACTION, target="audit",
                          detail={"kind": str(kind), "seq": seq, "hash": hash, "key_id": key_id,
                                  "blob": blob_name})
    try:
        document["signature"] = audit_logs.checkpoint_sign(hsm, key_id=key_id,
                                                           payload=signed_payload(document))
        audit_logs.checkpoint_store(name=blob_name, document=document)
        checkpoint = AuditCheckpoint.objects.create(
            kind=kind, seq=seq, hash=hash, time=now, key_id=key_id,
            algorithm=document["algorithm"], signature=document["signature"],
            blob_name=blob_name)
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.message})
        raise
    audit_result(intent, ok=True, detail={"checkpoint_id": checkpoint.pk},
                 done=f"Checkpoint of seq {seq} was signed and stored")
    return checkpoint


def _checkpoint_documents(problems: list) -> list[dict]:
    """Checkpoints from storage and the database, each once (storage's copy wins)."""
    from portal.gateway import audit_logs

    documents = {}
    try:
        for document in audit_logs.checkpoint_documents():
            if document.get("unreadable"):
                problems.append({"seq": None, "problem": f"checkpoint blob {document['blob_name']} "
                                 "is not readable JSON"})
                continue
            documents[document["blob_name"]] = {**document, "in_storage": True}
    except PortalError as exc:
        # No storage configured and no checkpoint ever made: nothing to check yet.
        if exc.code != "storage_not_configured" or AuditCheckpoint.objects.exists():
            problems.append({"seq": None, "problem": "the checkpoint copies in storage could "
                                                     f"not be read: {exc.message}"})
    for row in AuditCheckpoint.objects.order_by("seq"):
        stored = documents.get(row.blob_name)
        mine = {"chain": CHAIN_NAME, "kind": row.kind, "seq": row.seq, "hash": row.hash,
                "time": row.time.isoformat(timespec="microseconds"), "key_id": row.key_id,
                "algorithm": row.algorithm, "signature": row.signature,
                "blob_name": row.blob_name}
        if stored is None:
            problems.append({"seq": row.seq, "problem": "the checkpoint's copy is missing "
                                                        "from storage"})
            documents[row.blob_name or f"db:{row.pk}"] = mine
        elif any(str(stored.get(name)) != str(mine[name])
                 for name in ("kind", "seq", "hash", "signature")):
            problems.append({"seq": row.seq, "problem": "the database row of this checkpoint "
                                                        "differs from its copy in storage"})
    return list(documents.values())


def checkpoints_verified(problems: list) -> tuple[dict[int, str], dict[int, str], int]:
    """Signature-checked checkpoints: ({seq: hash} of heads, {seq: hash} of anchors, count)."""
    from portal.gateway import audit_logs

    heads, anchors, count = {}, {}, 0
    verifiers: dict = {}  # key version -> local verifier (its public key read once)
    for document in _checkpoint_documents(problems):
        count += 1
        seq = document.get("seq")
        hsm = _hsm_for_key(str(document.get("key_id") or ""))
        if hsm is None or not isinstance(seq, int):
            problems.append({"seq": seq, "problem": "the checkpoint's key is not in a "
                                                    "registered HSM"})
            continue
        try:
            if document["key_id"] not in verifiers:
                verifiers[document["key_id"]] = audit_logs.checkpoint_public_key(
                    hsm, key_id=document["key_id"])
            valid = verifiers[document["key_id"]](signed_payload(document),
                                                  str(document.get("signature") or ""))
        except PortalError as exc:
            problems.append({"seq": seq, "problem": f"the signature could not be checked: "
                                                    f"{exc.message}"})
            continue
        if not valid or document.get("chain") != CHAIN_NAME:
            problems.append({"seq": seq, "problem": "the checkpoint's signature is not valid"})
            continue
        target = anchors if document.get("kind") == AuditCheckpoint.Kind.ANCHOR else heads
        if target.get(seq, document["hash"]) != document["hash"]:
            problems.append({"seq": seq, "problem": "two signed checkpoints disagree on this seq"})
        target[seq] = document["hash"]
    return heads, anchors, count


def audit_verification_run(*, trigger: str = "command", actor_name: str = "",
                           job_id: int | None = None, progress=None,
                           batch: int = VERIFY_BATCH,
                           check_checkpoints: bool = True) -> AuditVerification:
    """Verify the chain and its signed checkpoints; record and return the verification.

    `progress(done, total)` is called after each batch. Read-only on the trail itself.
    """
    started = timezone.now()
    problems: list = []
    heads, anchors, count = checkpoints_verified(problems) if check_checkpoints else ({}, {}, 0)
    head = AuditChainHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    first = AuditEvent.objects.order_by("seq").values("seq", "prev_hash").first()
    start_seq, start_prev = 1, GENESIS_HASH
    report = None
    if first and first["seq"] > 1:
        start_seq, start_prev = first["seq"], first["prev_hash"]
        if anchors.get(first["seq"] - 1) != first["prev_hash"]:
            report = ChainReport(0, first["seq"] - 1,
                                 f"rows before seq {first['seq']} are gone and no signed "
                                 "retention anchor attests the hash the oldest row links to")
    total = max(head_seq - start_seq + 1, 1)
    if report is None:
        walker = ChainWalker(start_seq=start_seq, start_prev_hash=start_prev, attested=heads)
        # One server-side cursor, read `batch` rows at a time; progress after each batch.
        rows = AuditEvent.objects.order_by("seq").values(
            "seq", "time", "actor_id", "actor_name", "role", "request_id", "client_request_id",
            "action", "target", "outcome", "detail", "prev_hash", "hash").iterator(
            chunk_size=batch)
        chunk = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                if not walker.feed(chunk):
                    break
                chunk = []
                if progress:
                    progress(walker.checked, total)
        else:
            walker.feed(chunk)
        report = walker.finish(head_seq, head_hash)
    ok = report.ok and not problems
    verification = AuditVerification.objects.create(
        started=started, finished=timezone.now(), trigger=trigger, actor_name=actor_name,
        job_id=job_id, rows=report.checked, first_seq=first["seq"] if first else None,
        head_seq=head_seq, ok=ok, first_bad_seq=report.first_bad_seq,
        reason=(report.reason or (problems[0]["problem"] if problems else ""))[:500],
        checkpoints=count, checkpoint_problems=problems[:100])
    audit_record(actor=None, action="audit.verify", target="audit",
                 outcome=AuditEvent.Outcome.SUCCEEDED if ok else AuditEvent.Outcome.FAILED,
                 detail={"verification_id": verification.pk, "rows": report.checked,
                         "first_bad_seq": report.first_bad_seq, "checkpoints": count,
                         "checkpoint_problems": len(problems), "trigger": trigger})
    return verification


def audit_verify_start(*, actor, request_id: str):
    """Queue "Verify now": a Job that runs audit_verification_run with progress. Audited."""
    from portal.audit.tasks import audit_verify_job
    from portal.jobs.services import job_create, job_enqueue_on_commit, job_target

    with transaction.atomic():
        job = job_create(kind="audit.verify", actor=actor)
        audit_record(actor=actor, action="job.request", target=job_target(job),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"kind": job.kind})
        job_enqueue_on_commit(job=job, task=audit_verify_job)
    return job


def audit_verify_job_run(*, job_id: int):
    """The body of the verify job: progress per batch, the verdict as the job's result."""
    from portal.jobs.models import Job
    from portal.jobs.services import job_finish, job_progress

    job = Job.objects.get(pk=job_id)

    def progress(done: int, total: int) -> None:
        text = f"Verified {done:,} of {total:,} rows"
        job_progress(job_id=job_id, percent=min(99, done * 100 // total), step=text, log=text)

    job_progress(job_id=job_id, percent=0, step="Checking the signed checkpoints")
    try:
        verification = audit_verification_run(trigger="job", actor_name=job.actor_name,
                                               job_id=job_id, progress=progress,
                                               batch=VERIFY_BATCH)
    except PortalError as exc:
        return job_finish(job_id=job_id, ok=False, error=exc.message)
    result = {"verification_id": verification.pk, "rows": verification.rows,
              "ok": verification.ok, "first_bad_seq": verification.first_bad_seq,
              "checkpoints": verification.checkpoints}
    if verification.ok:
        return job_finish(job_id=job_id, ok=True, result=result,
                          step=f"Chain intact: {verification.rows:,} rows, "
                               f"{verification.checkpoints} signed checkpoints")
    where = (f"at seq {verification.first_bad_seq}" if verification.first_bad_seq
             else "in its checkpoints")
    return job_finish(job_id=job_id, ok=False, result=result,
                      step=f"Chain broken {where}", error=verification.reason)


def audit_retention_purge(*, now=None) -> dict:
    """Delete audit rows older than AUDIT_RETENTION_DAYS (never under 180), keeping the
    chain verifiable: the last removed row's hash is first signed as a retention anchor.

    PostgreSQL only: rows leave through audit_purge() (migration 0006), whose trigger
    refuses any younger row. Audited (intent, outcome with the count).
    """
    days = int(settings.AUDIT_RETENTION_DAYS)
    if days < 180:
        raise BadInput("Audit rows are kept at least 180 days.")
    if connection.vendor != "postgresql":
        raise Conflict("The audit retention purge needs PostgreSQL (its guard is a trigger).")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    # Time never decreases along the chain, so the newest old row is the last of a prefix.
    last = (AuditEvent.objects.filter(time__lt=cutoff).order_by("-time", "-seq")
            .values("seq", "hash").first())
    if last is None:
        return {"removed": 0, "cutoff": cutoff.isoformat(), "days": days}
    anchor = (AuditCheckpoint.objects.filter(kind=AuditCheckpoint.Kind.ANCHOR, seq=last["seq"],
                                             hash=last["hash"]).first()
              or checkpoint_create(kind=AuditCheckpoint.Kind.ANCHOR, seq=last["seq"],
                                   hash=last["hash"]))
    intent = audit_record(actor=None, action="audit.retention_purge", target="audit",
                          detail={"through_seq": last["seq"], "days": days,
                                  "cutoff": cutoff.isoformat(), "anchor_id": anchor.pk})
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT audit_purge(%s, %s)", [last["seq"], days])
            removed = cursor.fetchone()[0]
    except Exception as exc:  # the trigger's refusal is the answer: record it
        audit_result(intent, ok=False, detail={"error": str(exc).splitlines()[0][:300]})
        raise Conflict("The purge was refused by the database: "
                       f"{str(exc).splitlines()[0][:300]}") from exc
    audit_result(intent, ok=True, detail={"removed": removed},
                 done=f"{removed} audit rows older than {days} days were removed")
    return {"removed": removed, "through_seq": last["seq"], "cutoff": cutoff.isoformat(),
            "days": days}
