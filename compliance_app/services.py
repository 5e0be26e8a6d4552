"""Posture runs and evidence packs: start (audited, a Job), run (the worker), download."""
from __future__ import annotations

import hashlib
import json

from django.db import transaction
from django.utils import timezone

from compliance_app.checks import CHECKS, FAIL, PASS, Context, run_check
from compliance_app.models import EvidencePack, PostureResult, PostureRun
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result
from portal.errors import Conflict, NotFound
from portal.jobs.models import Job
from portal.jobs.services import (job_create, job_enqueue_on_commit, job_finish, job_progress,
                                  job_target)

POSTURE_KIND, EVIDENCE_KIND = "compliance.posture", "compliance.evidence"


def posture_run_start(*, actor, request_id: str) -> Job:
    """Queue a run of every posture check now (a Job). Audited; the run writes nothing to Azure."""
    from compliance_app.tasks import posture_run as posture_run_task

    with transaction.atomic():
        job = job_create(kind=POSTURE_KIND, actor=actor)
        PostureRun.objects.create(job=job, trigger=PostureRun.Trigger.DEMAND,
                                  actor_name=job.actor_name)
        audit_record(actor=actor, action="posture.run", target=job_target(job),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"kind": job.kind})
        job_enqueue_on_commit(job=job, task=posture_run_task)
    return job


def posture_run_scheduled() -> PostureRun:
    """The beat's run: a Job by the system, run here and now (the beat task is the worker)."""
    from portal.jobs.services import job_claim

    with transaction.atomic():
        job = job_create(kind=POSTURE_KIND, actor=None)
        PostureRun.objects.create(job=job, trigger=PostureRun.Trigger.SCHEDULE, actor_name="system")
        audit_record(actor=None, action="posture.run", target=job_target(job),
                     outcome=AuditEvent.Outcome.RECORDED, detail={"kind": job.kind,
                                                                  "trigger": "schedule"})
    job_claim(job_id=job.pk, token=f"beat-{job.pk}")
    return posture_run_execute(job_id=job.pk)


def _previous(run: PostureRun) -> dict[tuple[str, str], str]:
    before = PostureRun.objects.filter(finished__isnull=False, pk__lt=run.pk).order_by("-pk").first()
    if before is None:
        return {}
    return {(r.check_id, r.hsm_name): r.status for r in before.results.all()}


def posture_run_execute(*, job_id: int) -> PostureRun:
    """Evaluate every registered check for every HSM (and estate-wide ones once), store the
    results with the status each had in the run before. Idempotent: a run that finished is
    returned as it is."""
    from portal.gateway.selectors import hsm_list

    run = PostureRun.objects.select_related("job").get(job_id=job_id)
    if run.finished:
        return run
    run.results.all().delete()  # a redelivered job starts its results again
    previous = _previous(run)
    ctx = Context()
    hsms = list(hsm_list())
    work = [(check, hsm) for check in CHECKS.values() for hsm in (hsms if check.per_hsm else [None])]
    counts = {PASS: 0, FAIL: 0, "other": 0}
    for done, (check, hsm) in enumerate(work, start=1):
        finding = run_check(check, hsm=hsm, ctx=ctx)
        hsm_name = hsm.name if hsm else ""
        PostureResult.objects.create(
            run=run, check_id=check.id, title=check.title, hsm_name=hsm_name,
            status=finding.status, summary=finding.summary[:500], evidence=finding.evidence,
            fix=finding.fix[:500], fix_url=finding.fix_url[:300],
            previous_status=previous.get((check.id, hsm_name), ""))
        counts[finding.status if finding.status in (PASS, FAIL) else "other"] += 1
        job_progress(job_id=job_id, percent=int(done * 100 / max(len(work), 1)),
                     step=f"Checked {check.title}" + (f" on {hsm_name}" if hsm_name else ""))
    PostureRun.objects.filter(pk=run.pk).update(finished=timezone.now(), passed=counts[PASS],
                                                failed=counts[FAIL], other=counts["other"])
    job_finish(job_id=job_id, ok=True, result={"run_id": run.pk, "passed": counts[PASS],
                                               "failed": counts[FAIL], "other": counts["other"]},
               step=f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts['other']} other")
    run.refresh_from_db()
    return run


# -- evidence packs -------------------------------------------------------------------------

def pack_json_bytes(document: dict) -> bytes:
    """The JSON file exactly as downloaded (its SHA-256 is stored with the pack)."""
    return json.dumps(document, indent=2, sort_keys=True).encode()


def evidence_pack_start(*, actor, request_id: str) -> EvidencePack:
    """Queue the making of an evidence pack (PDF + JSON). Audited: intent now, outcome by the job."""
    from compliance_app.tasks import evidence_pack_run as evidence_pack_run_task

    with transaction.atomic():
        job = job_create(kind=EVIDENCE_KIND, actor=actor)
        pack = EvidencePack.objects.create(job=job, requested_by_name=job.actor_name)
        audit_record(actor=actor, action="evidence.generate", target=f"evidence-pack:{pack.pk}",
                     request_id=request_id, detail={"job_id": job.pk})
        job_enqueue_on_commit(job=job, task=evidence_pack_run_task)
    return pack


def _intent_of(pack: EvidencePack) -> AuditEvent | None:
    return AuditEvent.objects.filter(action="evidence.generate", target=f"evidence-pack:{pack.pk}",
                                     outcome=AuditEvent.Outcome.INTENT).order_by("seq").first()


def evidence_pack_run(*, job_id: int) -> EvidencePack:
    """Collect the evidence, draw the PDF, store both with their SHA-256; audit the outcome.
    Idempotent: a ready pack is returned as it is."""
    from compliance_app import evidence

    pack = EvidencePack.objects.get(job_id=job_id)
    if pack.status == EvidencePack.Status.READY:
        return pack
    intent = _intent_of(pack)
    try:
        job_progress(job_id=job_id, percent=10, step="Collecting evidence")
        document = evidence.collect(pack=pack)
        job_progress(job_id=job_id, percent=60, step="Drawing the PDF")
        pdf = evidence.render_pdf(document)
    except Exception as exc:  # the pack fails with a sentence; the job records why
        message = f"The evidence pack could not be made ({exc.__class__.__name__})."
        EvidencePack.objects.filter(pk=pack.pk).update(status=EvidencePack.Status.FAILED,
                                                       error=message, finished=timezone.now())
        if intent is not None:
            audit_result(intent, ok=False, detail={"error": exc.__class__.__name__})
        job_finish(job_id=job_id, ok=False, error=message)
        raise
    body = pack_json_bytes(document)
    with transaction.atomic():
        EvidencePack.objects.filter(pk=pack.pk).update(
            status=EvidencePack.Status.READY, pdf=pdf, document=document, pdf_bytes=len(pdf),
            pdf_sha256=hashlib.sha256(pdf).hexdigest(), json_sha256=hashlib.sha256(body).hexdigest(),
            finished=timezone.now())
        pack.refresh_from_db()
        if intent is not None:
            audit_result(intent, ok=True, detail={"pdf_sha256": pack.pdf_sha256,
                                                  "json_sha256": pack.json_sha256,
                                                  "pdf_bytes": pack.pdf_bytes})
    job_finish(job_id=job_id, ok=True, result={"evidence_pack_id": pack.pk,
                                               "pdf_sha256": pack.pdf_sha256})
    return pack


def evidence_pack_download(*, pack_id: int, fmt: str, actor, request_id: str) -> tuple[bytes, str, str]:
    """(body, content type, file name) of a ready pack; the download is audited."""
    if fmt not in ("pdf", "json"):
        raise NotFound("Evidence packs download as pdf or json.")
    pack = EvidencePack.objects.filter(pk=pack_id).first() if 0 < pack_id < 2**63 else None
    if pack is None:
        raise NotFound(f"No evidence pack {pack_id}.")
    if pack.status != EvidencePack.Status.READY:
        raise Conflict(f"Evidence pack {pack_id} is not ready ({pack.get_status_display().lower()});"
                       " download it when its job has finished.", code="pack_not_ready")
    if fmt == "pdf":
        body, ctype = bytes(pack.pdf), "application/pdf"
    else:
        body, ctype = pack_json_bytes(pack.document), "application/json"
    audit_record(actor=actor, action="evidence.download", target=f"evidence-pack:{pack.pk}",
                 request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                 detail={"format": fmt, "sha256": pack.pdf_sha256 if fmt == "pdf"
                         else pack.json_sha256})
    stamp = pack.created.strftime("%Y%m%d-%H%M")
    return body, ctype, f"evidence-pack-{pack.pk}-{stamp}.{fmt}"
