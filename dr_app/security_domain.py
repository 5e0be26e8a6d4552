"""Security domain services: activation (download with custodian certificates + quorum),
recovery (init-recovery: the exchange key; then upload of the custodians' blob, with
approval), activation status, and the custody ledger (custodians, proof of possession).

Rules kept here so both doors (pages and API) obey them:
- The portal never sees a custodian's private key: it takes certificates (public) and
  signatures; the recovery blob is prepared offline and only uploaded here.
- A security domain is never stored in the database or logged: it rests only in the
  encrypted, short-lived stash (dr_app/security_domain_stash.py), referenced by id and
  bound by its SHA-256.
- Activation and recovery of one HSM are serialized on its SecurityDomainState row
  (SELECT ... FOR UPDATE), across processes.
- The upload needs approval (`security_domain.upload`, bound to the blob's SHA-256).
- Every verb is audited: intent before, outcome after.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dr_app import security_domain_stash as stash
from dr_app.models_sd import Custodian, CustodyChallenge, SecurityDomainFile, SecurityDomainState
from portal.accounts.identity import same_principal
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_result
from portal.errors import BadInput, Conflict, NotAllowed, NotFound, PortalError
from portal.gateway import security_domain as sd_gateway
from portal.gateway.models import HsmInstance
from portal.jobs.models import Job
from portal.jobs.services import job_create, job_enqueue_on_commit, job_finish, job_progress

ACTIVATE_KIND = "security_domain.activate"
UPLOAD_KIND = "security_domain.upload"
UPLOAD_OPERATION = "security_domain.upload"
MIN_CERTIFICATES, MAX_CERTIFICATES = 3, 10
MIN_QUORUM = 2
MAX_CERTIFICATE_BYTES = 16 * 1024
MIN_KEY_BITS, MAX_KEY_BITS = 2048, 4096
CHALLENGE_SECONDS = 7 * 24 * 3600
POLL_INTERVAL_SECONDS = 1.0


def custody_proof_days() -> int:
    """Days after which an unproven custody is stale (PORTAL_CUSTODY_PROOF_DAYS)."""
    return int(getattr(settings, "PORTAL_CUSTODY_PROOF_DAYS", 180))


def file_seconds() -> int:
    """How long a security-domain file may wait in the stash (PORTAL_SD_FILE_SECONDS)."""
    return int(getattr(settings, "PORTAL_SD_FILE_SECONDS", 24 * 3600))


def poll_seconds() -> int:
    """How long a job waits for the HSM to finish activating or restoring."""
    return int(getattr(settings, "PORTAL_SD_POLL_SECONDS", 240))


def sd_target(hsm: HsmInstance) -> str:
    """Audit target of an HSM's security domain."""
    return f"hsm:{hsm.name}/security-domain"


def custodian_target(custodian: Custodian) -> str:
    return f"hsm:{custodian.hsm.name}/custodian:{custodian.pk}"


def state_for(hsm: HsmInstance, *, lock: bool = False) -> SecurityDomainState:
    """The HSM's state row (created on first use); locked FOR UPDATE when asked, inside the
    caller's transaction."""
    SecurityDomainState.objects.get_or_create(hsm=hsm)
    rows = SecurityDomainState.objects.select_for_update() if lock else SecurityDomainState.objects
    return rows.get(hsm=hsm)


# -- certificates --------------------------------------------------------------------------

@dataclass(frozen=True)
class ParsedCertificate:
    """A custodian's wrapping certificate, checked: RSA 2048-4096 bits, valid now."""

    pem: str
    der: bytes
    fingerprint_sha256: str
    subject: str
    not_after: datetime
    key_bits: int
    n: int
    e: int


def certificate_parse(pem, *, field: str = "certificate") -> ParsedCertificate:
    """Parse and check one PEM certificate; BadInput with a sentence naming the field."""
    if isinstance(pem, str):
        pem = pem.encode()
    if not pem or len(pem) > MAX_CERTIFICATE_BYTES:
        raise BadInput(f"The {field} must be one PEM certificate of at most "
                       f"{MAX_CERTIFICATE_BYTES // 1024} KiB.", fields={field: ["Empty or too large."]})
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise BadInput(f"The {field} is not a PEM certificate (-----BEGIN CERTIFICATE-----).",
                       fields={field: ["Not a PEM certificate."]}) from None
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise BadInput(f"The {field} must hold an RSA public key (the security domain wraps "
                       "with RSA-OAEP-256).", fields={field: ["Not an RSA certificate."]})
    bits = public.key_size
    if not MIN_KEY_BITS <= bits <= MAX_KEY_BITS:
        raise BadInput(f"The {field}'s key has {bits} bits; use {MIN_KEY_BITS} to "
                       f"{MAX_KEY_BITS}.", fields={field: ["Key size out of range."]})
    not_after = cert.not_valid_after_utc
    if not_after <= datetime.now(dt_timezone.utc):
        raise BadInput(f"The {field} expired on {not_after:%Y-%m-%d}.",
                       fields={field: ["Expired."]})
    der = cert.public_bytes(serialization.Encoding.DER)
    numbers = public.public_numbers()
    return ParsedCertificate(
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(), der=der,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        subject=cert.subject.rfc4514_string()[:300], not_after=not_after, key_bits=bits,
        n=numbers.n, e=numbers.e)


def _certificates_checked(custodians: list[dict], quorum) -> list[ParsedCertificate]:
    if not MIN_CERTIFICATES <= len(custodians) <= MAX_CERTIFICATES:
        raise BadInput(f"Give {MIN_CERTIFICATES} to {MAX_CERTIFICATES} custodian certificates "
                       f"(got {len(custodians)}).", fields={"custodians": ["3 to 10 needed."]})
    try:
        quorum = int(quorum)
    except (TypeError, ValueError):
        raise BadInput("The quorum must be a whole number.",
                       fields={"quorum": ["Not a number."]}) from None
    if not MIN_QUORUM <= quorum <= len(custodians):
        raise BadInput(f"The quorum must be from {MIN_QUORUM} to the number of certificates "
                       f"({len(custodians)}).", fields={"quorum": ["Out of range."]})
    parsed, seen, names = [], set(), set()
    for index, item in enumerate(custodians):
        name = (item.get("name") or "").strip()
        if not name or len(name) > 100:
            raise BadInput(f"Custodian {index + 1} needs a name (at most 100 characters).",
                           fields={f"custodians.{index}.name": ["A name is required."]})
        if name.lower() in names:
            raise BadInput(f"Two custodians are named {name}; give each person one line.",
                           fields={f"custodians.{index}.name": ["Duplicate name."]})
        names.add(name.lower())
        cert = certificate_parse(item.get("certificate"), field=f"custodians.{index}.certificate")
        if cert.fingerprint_sha256 in seen:
            raise BadInput(f"Custodian {name}'s certificate is given twice; each custodian "
                           "needs their own key.",
                           fields={f"custodians.{index}.certificate": ["Duplicate certificate."]})
        seen.add(cert.fingerprint_sha256)
        parsed.append(cert)
    return parsed


# -- activation status ---------------------------------------------------------------------

_IN_PROGRESS = {"inprogress", "in_progress", "running", "pending"}


def _activation_from(download: dict, upload: dict) -> tuple[str, str]:
    states = [(item.get("status") or "").lower() for item in (download, upload)]
    if any(state in sd_gateway.SUCCEEDED for state in states):
        return SecurityDomainState.Activation.ACTIVE, ""
    if any(state in _IN_PROGRESS for state in states):
        return SecurityDomainState.Activation.IN_PROGRESS, \
            download.get("detail") or upload.get("detail") or ""
    if any(state in sd_gateway.FAILED for state in states):
        return SecurityDomainState.Activation.FAILED, \
            upload.get("detail") or download.get("detail") or ""
    return SecurityDomainState.Activation.NOT_ACTIVATED, ""


def _read_status(call, hsm) -> dict:
    try:
        return call(hsm)
    except (NotFound, BadInput):  # no such operation yet on this HSM
        return {"status": "", "detail": ""}


def security_domain_status_refresh(*, hsm: HsmInstance) -> SecurityDomainState:
    """Ask the HSM for its activation (download and upload status) and remember the answer.

    A read of the HSM; the row is a cache of what it said, so this is not audited. Raises
    HsmUnavailable (and the like) when the HSM cannot be asked."""
    download = _read_status(sd_gateway.download_status, hsm)
    upload = _read_status(sd_gateway.upload_status, hsm)
    activation, detail = _activation_from(download, upload)
    with transaction.atomic():
        state = state_for(hsm, lock=True)
        state.activation, state.activation_detail = activation, detail[:300]
        state.checked = timezone.now()
        state.save(update_fields=["activation", "activation_detail", "checked"])
        if activation == SecurityDomainState.Activation.ACTIVE and state.activated is None:
            _pending_custodians_record(hsm=hsm, state=state)
    return state


def _pending_custodians_record(*, hsm: HsmInstance, state: SecurityDomainState) -> None:
    """The HSM turned out active after an activation job lost sight of it: its pending
    custodians (of the latest activation that received a security domain) hold its keys."""
    pending = Custodian.objects.filter(hsm=hsm, status=Custodian.Status.PENDING,
                                       activation_job__isnull=False).order_by("-activation_job_id")
    latest = pending.first()
    if latest is None or not latest.activation_job.is_finished or not \
            SecurityDomainFile.objects.filter(job_id=latest.activation_job_id,
                                              purpose=SecurityDomainFile.Purpose.DOWNLOAD).exists():
        return  # none, or its job still runs and records them itself
    job = latest.activation_job
    quorum = int(job.params.get("quorum") or 0) or None
    Custodian.objects.filter(hsm=hsm, status=Custodian.Status.ACTIVE).update(
        status=Custodian.Status.RETIRED)
    count = Custodian.objects.filter(activation_job=job, status=Custodian.Status.PENDING).update(
        status=Custodian.Status.ACTIVE)
    state.quorum, state.activated = quorum, timezone.now()
    state.save(update_fields=["quorum", "activated"])
    audit_record(actor=None, action="custody.activate", target=sd_target(hsm),
                 outcome=AuditEvent.Outcome.RECORDED,
                 detail={"job": job.pk, "custodians": count, "quorum": quorum,
                         "reason": "the HSM reported itself active after the job ended"})


# -- activation (download) -----------------------------------------------------------------

def _busy(state: SecurityDomainState) -> None:
    job = state.current_job
    if job is not None and not job.is_finished:
        raise Conflict(f"Job {job.pk} ({job.kind}) is already running on this HSM's security "
                       "domain; wait for it to finish.", code="security_domain_busy")


def security_domain_activate_start(*, hsm: HsmInstance, custodians: list[dict], quorum,
                                   actor, request_id: str) -> Job:
    """Queue the activation of an un-activated HSM: download its security domain wrapped to
    3-10 custodian certificates with a quorum. Records the custodians (pending until the
    HSM has activated). Audited; one activation or recovery per HSM at a time."""
    certificates = _certificates_checked(custodians, quorum)
    quorum = int(quorum)
    from dr_app.security_domain_tasks import security_domain_activate_run as run_task

    try:  # a fresh answer for the check below; the HSM itself refuses a second download
        security_domain_status_refresh(hsm=hsm)
    except PortalError:
        pass

    with transaction.atomic():
        state = state_for(hsm, lock=True)
        _busy(state)
        if state.activation == SecurityDomainState.Activation.ACTIVE:
            raise Conflict(f"HSM {hsm.name} is already activated; its security domain was "
                           "downloaded then. Use recovery to move it to a new HSM.",
                           code="already_activated")
        job = job_create(kind=ACTIVATE_KIND, actor=actor, hsm=hsm,
                         params={"quorum": quorum, "certificates": len(certificates)})
        audit_record(actor=actor, action="security_domain.activate", target=sd_target(hsm),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"job": job.pk, "quorum": quorum, "fingerprints": [
                         cert.fingerprint_sha256 for cert in certificates]})
        Custodian.objects.filter(hsm=hsm, status=Custodian.Status.PENDING).update(
            status=Custodian.Status.RETIRED)
        for item, cert in zip(custodians, certificates, strict=True):
            Custodian.objects.create(
                hsm=hsm, name=item["name"].strip(), email=(item.get("email") or "").strip(),
                certificate_pem=cert.pem, fingerprint_sha256=cert.fingerprint_sha256,
                subject=cert.subject, not_after=cert.not_after, key_bits=cert.key_bits,
                status=Custodian.Status.PENDING, activation_job=job,
                added_by_name=actor.get_username())
        state.current_job = job
        state.save(update_fields=["current_job"])
        job_enqueue_on_commit(job=job, task=run_task)
    return job


def _wait(job_id: int, read, *, what: str, start: int, end: int) -> dict:
    """Poll read() until the operation ends or the deadline passes; progress between
    start and end percent. Returns the last status."""
    deadline = time.monotonic() + poll_seconds()
    polls = 0
    while True:
        status = read()
        state = sd_gateway.operation_state(status["status"])
        if state in ("succeeded", "failed"):
            return status
        polls += 1
        job_progress(job_id=job_id, percent=min(end, start + polls),
                     step=f"Waiting for the HSM to finish {what}")
        if time.monotonic() > deadline:
            return status
        time.sleep(POLL_INTERVAL_SECONDS)


def _mark_operation(job_id: int, operation: str) -> None:
    # Stored before the HSM is asked: a worker that restarts sees it and does not blindly
    # start a second operation.
    Job.objects.filter(pk=job_id).update(external_operation_id=operation)


def security_domain_activate_run(*, job_id: int) -> Job:
    """Run a claimed activation job: download the security domain (kept encrypted for one
    download by its requester), then wait for the HSM to report it active. Resumable: the
    operation is marked on the job before the HSM is asked."""
    job = Job.objects.select_related("hsm").get(pk=job_id)
    hsm = job.hsm
    custodians = list(Custodian.objects.filter(activation_job=job).order_by("id"))
    quorum = int(job.params.get("quorum") or 0)
    try:
        kept = SecurityDomainFile.objects.filter(
            job=job, purpose=SecurityDomainFile.Purpose.DOWNLOAD).first()
        if kept is None:
            if job.external_operation_id:
                # A worker stopped after asking. If the HSM did not take the request, ask
                # again; if it did, its answer (the security domain) is lost.
                status = _read_status(sd_gateway.download_status, hsm)
                if sd_gateway.operation_state(status["status"]) in ("running", "succeeded"):
                    return _activate_fail(job, custodians, (
                        "The worker stopped after the HSM returned its security domain and "
                        "before the portal kept it. The HSM may now be activated with a "
                        "security domain nobody holds: check its activation status, and if "
                        "it is active, create a new HSM and activate that one."))
            _mark_operation(job_id, "securitydomain/download")
            job_progress(job_id=job_id, percent=10, step="Asking the HSM for its security domain",
                         log=f"Wrapping to {len(custodians)} certificates, quorum {quorum}.")
            blob = sd_gateway.download_begin(hsm, quorum=quorum, certificates=[
                sd_gateway.certificate_jwk(der=_der(c), n=_numbers(c)[0], e=_numbers(c)[1],
                                           kid=f"{c.name}-{c.fingerprint_sha256[:16]}")
                for c in custodians])
            with transaction.atomic():
                kept = stash.stash_put(hsm=hsm, purpose=SecurityDomainFile.Purpose.DOWNLOAD,
                                       blob=blob.encode(), seconds=file_seconds(),
                                       owner_name=job.actor_name, job=job)
            del blob
            job_progress(job_id=job_id, percent=40,
                         step="Security domain received; waiting for activation",
                         log=f"Security domain received (SHA-256 {kept.sha256}); kept encrypted "
                             "for one download.")
        else:
            job_progress(job_id=job_id, percent=40, step="Resuming: waiting for activation",
                         log="Resumed by another worker: polling the activation status.")
        status = _wait(job_id, lambda: sd_gateway.download_status(hsm), what="activating",
                       start=40, end=95)
    except PortalError as exc:
        received = SecurityDomainFile.objects.filter(
            job=job, purpose=SecurityDomainFile.Purpose.DOWNLOAD).exists()
        if received:
            return _activate_fail(job, custodians, (
                f"The HSM returned its security domain, then the portal lost sight of the "
                f"activation: {exc.message} Download the security domain from the Security "
                f"domain tab anyway, and check the HSM's activation status there."),
                maybe_activated=True)
        return _activate_fail(job, custodians, exc.message)
    outcome = sd_gateway.operation_state(status["status"])
    if outcome != "succeeded":
        detail = status.get("detail") or ("still activating when the portal stopped waiting"
                                          if outcome != "failed" else "activation failed")
        return _activate_fail(job, custodians, f"The HSM did not activate: {detail}.",
                              maybe_activated=outcome != "failed")
    now = timezone.now()
    with transaction.atomic():
        state = state_for(hsm, lock=True)
        state.quorum, state.activated, state.checked = quorum, now, now
        state.activation, state.activation_detail = SecurityDomainState.Activation.ACTIVE, ""
        state.save(update_fields=["quorum", "activated", "checked", "activation",
                                  "activation_detail"])
        Custodian.objects.filter(hsm=hsm, status=Custodian.Status.ACTIVE).exclude(
            activation_job=job).update(status=Custodian.Status.RETIRED)
        Custodian.objects.filter(activation_job=job).update(status=Custodian.Status.ACTIVE)
    return job_finish(job_id=job_id, ok=True, result={
        "activation": "Active", "quorum": quorum, "custodians": len(custodians),
        "security_domain_sha256": kept.sha256,
        "download": f"{job.actor_name or 'The requester'} downloads it once from the Security "
                    f"domain tab of {hsm.name}, until {kept.expires:%Y-%m-%d %H:%M} UTC"})


def _der(custodian: Custodian) -> bytes:
    return x509.load_pem_x509_certificate(custodian.certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER)


def _numbers(custodian: Custodian) -> tuple[int, int]:
    numbers = x509.load_pem_x509_certificate(
        custodian.certificate_pem.encode()).public_key().public_numbers()
    return numbers.n, numbers.e


def _activate_fail(job: Job, custodians: list[Custodian], message: str, *,
                   maybe_activated: bool = False) -> Job:
    """End a failed activation job. When the HSM may still activate with the security
    domain it returned (the portal lost sight of it, e.g. it stopped answering while the
    job waited), that security domain stays offered for download and the custodians stay
    pending, since they may well hold its keys; the next status check that finds the HSM
    active records them (security_domain_status_refresh). Otherwise both are dropped."""
    if not maybe_activated:
        for row in SecurityDomainFile.objects.filter(job=job, consumed__isnull=True):
            stash.stash_delete(file_id=row.pk)
        Custodian.objects.filter(pk__in=[c.pk for c in custodians],
                                 status=Custodian.Status.PENDING).update(
            status=Custodian.Status.RETIRED)
    return job_finish(job_id=job.pk, ok=False, error=message)


def security_domain_download_fetch(*, hsm: HsmInstance, job_id: int, actor,
                                   request_id: str) -> tuple[bytes, str]:
    """Hand the downloaded security domain to the admin who activated the HSM, once.

    Audited as downloaded (SHA-256 and size, never the content); the encrypted file is
    deleted as it is handed over. A second fetch is a 409; another user gets 403."""
    job = Job.objects.filter(pk=job_id, hsm=hsm, kind=ACTIVATE_KIND).select_related(
        "actor").first()
    if job is None:
        raise NotFound("No such activation job on this HSM.")
    if job.actor is None or not same_principal(job.actor, actor):
        raise NotAllowed("Only the administrator who activated the HSM may download its "
                         "security domain.", code="not_requester")
    row = SecurityDomainFile.objects.filter(
        job=job, purpose=SecurityDomainFile.Purpose.DOWNLOAD).first()
    if row is None:
        raise NotFound("This activation has no security domain to download.")
    intent = audit_record(actor=actor, action="security_domain.download", target=sd_target(hsm),
                          request_id=request_id,
                          detail={"job": job.pk, "sha256": row.sha256, "size": row.size})
    try:
        blob = stash.stash_read(file_id=row.pk, purpose=row.purpose)
        if not stash.stash_consume(file_id=row.pk, purpose=row.purpose):
            raise Conflict("The security domain was downloaded already; it is offered once.",
                           code="already_downloaded")
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.code})
        if isinstance(exc, NotFound):
            raise Conflict("The security domain was downloaded already or expired; it is "
                           "offered once.", code="already_downloaded") from None
        raise
    stash.stash_delete(file_id=row.pk)
    audit_result(intent, ok=True, detail={"sha256": row.sha256, "size": row.size},
                 done=f"The security domain of {hsm.name} was handed over")
    return blob, f"{hsm.name}-security-domain.json"


# -- recovery ------------------------------------------------------------------------------

def exchange_key_pem(jwk: dict) -> str:
    """The exchange key as the CLI's init-recovery writes it: the certificate in x5c as PEM,
    or the bare public key when the HSM sent no certificate."""
    x5c = jwk.get("x5c") or []
    if x5c:
        body = "\n".join(x5c[0][i:i + 64] for i in range(0, len(x5c[0]), 64))
        return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"

    def number(name: str) -> int:
        value = jwk[name]
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    public = rsa.RSAPublicNumbers(number("e"), number("n")).public_key()
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _jwk_fingerprint(jwk: dict) -> str:
    x5c = jwk.get("x5c") or []
    if x5c:
        return hashlib.sha256(base64.b64decode(x5c[0])).hexdigest()
    return hashlib.sha256(f"{jwk.get('n')}.{jwk.get('e')}".encode()).hexdigest()


def security_domain_recovery_init(*, hsm: HsmInstance, actor, request_id: str) -> dict:
    """Init-recovery: fetch the new HSM's exchange (transfer) key, the public key the
    custodians re-wrap the security domain to, offline. Remembers its fingerprint so the
    upload names the exchange key it was prepared for. Audited. Returns pem, jwk, sha256."""
    with transaction.atomic():
        state = state_for(hsm, lock=True)
        _busy(state)
        intent = audit_record(actor=actor, action="security_domain.init_recovery",
                              target=sd_target(hsm), request_id=request_id)
    try:
        jwk = sd_gateway.transfer_key(hsm)
        pem = exchange_key_pem(jwk)
    except PortalError as exc:
        audit_result(intent, ok=False, detail={"error": exc.code})
        raise
    except (KeyError, ValueError, binascii.Error):
        audit_result(intent, ok=False, detail={"error": "bad_exchange_key"})
        raise BadInput("The HSM's exchange key could not be read as an RSA key.",
                       code="bad_exchange_key") from None
    fingerprint = _jwk_fingerprint(jwk)
    with transaction.atomic():
        state = state_for(hsm, lock=True)
        state.exchange_key_sha256, state.exchange_key_fetched = fingerprint, timezone.now()
        state.save(update_fields=["exchange_key_sha256", "exchange_key_fetched"])
        audit_result(intent, ok=True, detail={"exchange_key_sha256": fingerprint})
    return {"pem": pem, "jwk": jwk, "sha256": fingerprint}


def _blob_text(blob: bytes) -> str:
    if not blob:
        raise BadInput("The security-domain file is empty.", fields={"file": ["Empty file."]})
    limit = settings.PORTAL_MAX_BODY_BYTES
    if len(blob) > limit:
        raise BadInput(f"The security-domain file is larger than {limit} bytes.",
                       fields={"file": ["Too large."]})
    try:
        return blob.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadInput("The security-domain file must be the text file the custodians' tool "
                       "wrote (az keyvault security-domain restore-blob).",
                       fields={"file": ["Not a text file."]}) from None


def security_domain_upload_request(*, hsm: HsmInstance, blob: bytes, actor, request_id: str,
                                   justification: str = "", ticket: str = "",
                                   source_hsm: str = ""):
    """Accept the custodians' prepared security domain for this HSM's recovery: keep it
    encrypted in the stash, then ask for approval bound to its SHA-256 (or, once approved,
    queue the upload job). Returns an ApprovalRequest (pending) or the upload Job.

    `source_hsm` (optional) names the registered HSM the security domain was saved from:
    after the restore, its custodians and quorum are copied to this HSM's custody ledger."""
    text = _blob_text(blob)
    source_hsm = (source_hsm or "").strip()
    if source_hsm and (source_hsm == hsm.name
                       or not HsmInstance.objects.filter(name=source_hsm).exists()):
        raise BadInput("The source HSM must be another registered HSM.",
                       fields={"source_hsm": ["Not another registered HSM."]})
    state = state_for(hsm)
    if not state.exchange_key_sha256:
        raise Conflict("Start the recovery first: download this HSM's exchange key "
                       "(init-recovery), have the custodians prepare the security domain for "
                       "it, then upload that file.", code="recovery_not_started")
    with transaction.atomic():
        row = stash.stash_put(hsm=hsm, purpose=SecurityDomainFile.Purpose.UPLOAD,
                              blob=text.encode(), seconds=file_seconds(),
                              owner_name=actor.get_username())
        audit_record(actor=actor, action="security_domain.upload_received",
                     target=sd_target(hsm), request_id=request_id,
                     outcome=AuditEvent.Outcome.RECORDED,
                     detail={"sha256": row.sha256, "size": row.size, "file": str(row.pk),
                             "expires": row.expires.isoformat(timespec="seconds")})
    return security_domain_upload(
        actor=actor, hsm=hsm.name, file_id=str(row.pk), blob_sha256=row.sha256, size=row.size,
        exchange_key_sha256=state.exchange_key_sha256, request_id=request_id,
        justification=justification, ticket=ticket,
        **({"source_hsm": source_hsm} if source_hsm else {}))


def security_domain_upload(*, actor, hsm: str, file_id: str, blob_sha256: str, size: int,
                           exchange_key_sha256: str, request_id: str = "", approval=None,
                           justification: str = "", ticket: str = "", source_hsm: str = "",
                           **_ignored):
    """Upload a prepared security domain to an HSM (the approvable operation
    `security_domain.upload`; the payload names the stashed file and binds its SHA-256).

    Without an approval for exactly this payload it returns the pending ApprovalRequest;
    with one, it queues the upload Job (audited) and returns it."""
    from portal.approvals.services import approval_require

    instance = HsmInstance.objects.filter(name=hsm).first()
    if instance is None:
        raise NotFound(f"HSM {hsm} is not registered.")
    payload = {"hsm": hsm, "file_id": file_id, "blob_sha256": blob_sha256, "size": size,
               "exchange_key_sha256": exchange_key_sha256,
               **({"source_hsm": source_hsm} if source_hsm else {})}
    pending = approval_require(operation=UPLOAD_OPERATION, actor=actor, payload=payload,
                               target=sd_target(instance), request_id=request_id,
                               approval=approval, justification=justification, ticket=ticket,
                               context={"hsm": hsm, "scope": "/"})
    if pending is not None:
        return pending
    from dr_app.security_domain_tasks import security_domain_upload_run as run_task

    with transaction.atomic():
        state = state_for(instance, lock=True)
        _busy(state)
        row = SecurityDomainFile.objects.select_for_update().filter(
            pk=file_id, hsm=instance, purpose=SecurityDomainFile.Purpose.UPLOAD,
            consumed__isnull=True).first()
        if row is None or row.sha256 != blob_sha256 or row.expires <= timezone.now():
            raise Conflict("The approved security-domain file is gone (used or expired); "
                           "upload it again.", code="security_domain_file_gone")
        if state.exchange_key_sha256 != exchange_key_sha256:
            # The HSM would refuse a blob wrapped to an exchange key it no longer uses.
            raise Conflict("This HSM's exchange key changed after the file was prepared (a "
                           "newer init-recovery, or a finished recovery): have the custodians "
                           "prepare it for the current exchange key and upload it again.",
                           code="exchange_key_changed")
        job = job_create(kind=UPLOAD_KIND, actor=actor, hsm=instance,
                         params={"file_id": file_id, "blob_sha256": blob_sha256,
                                 "approval": getattr(approval, "pk", None),
                                 "source_hsm": source_hsm})
        row.job = job
        row.save(update_fields=["job"])
        audit_record(actor=actor, action="security_domain.upload", target=sd_target(instance),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"job": job.pk, "sha256": blob_sha256, "size": size,
                             "approval": getattr(approval, "pk", None)})
        state.current_job = job
        state.save(update_fields=["current_job"])
        job_enqueue_on_commit(job=job, task=run_task)
    return job


def security_domain_upload_run(*, job_id: int) -> Job:
    """Run a claimed upload job: POST the stashed security domain (deleted from the stash as
    soon as the HSM accepted it), then wait until the HSM reports the restore done.
    Resumable: a file still in the stash means it was not accepted yet, so it is sent
    (again); a used file means it was, so only the status is polled."""
    job = Job.objects.select_related("hsm").get(pk=job_id)
    hsm = job.hsm
    file_id = job.params.get("file_id")
    try:
        row = SecurityDomainFile.objects.filter(pk=file_id).first()
        if row is not None and row.consumed is None:
            text = stash.stash_read(file_id=row.pk, purpose=row.purpose).decode()
            if row.sha256 != job.params.get("blob_sha256"):
                raise Conflict("The stashed file is not the approved one.",
                               code="security_domain_file_bad")
            _mark_operation(job_id, "securitydomain/upload")
            job_progress(job_id=job_id, percent=10, step="Uploading the security domain",
                         log=f"Sending the security domain (SHA-256 {row.sha256}, "
                             f"{row.size} bytes) to {hsm.name}.")
            sd_gateway.upload_begin(hsm, security_domain_text=text)
            del text
            stash.stash_delete(file_id=row.pk)
            job_progress(job_id=job_id, percent=30, step="The HSM accepted it; restoring",
                         log="The HSM accepted the security domain; the portal's copy was deleted.")
        elif job.external_operation_id:
            job_progress(job_id=job_id, percent=30, step="Resuming: waiting for the restore",
                         log="Resumed by another worker: polling the upload status.")
        else:
            raise Conflict("The security-domain file to upload is gone (expired).",
                           code="security_domain_file_gone")
        status = _wait(job_id, lambda: sd_gateway.upload_status(hsm), what="restoring",
                       start=30, end=95)
    except PortalError as exc:
        return job_finish(job_id=job_id, ok=False, error=exc.message)
    outcome = sd_gateway.operation_state(status["status"])
    if outcome != "succeeded":
        detail = status.get("detail") or ("still restoring when the portal stopped waiting"
                                          if outcome == "running" else "the upload failed")
        return job_finish(job_id=job_id, ok=False, error=f"The HSM did not restore the "
                                                         f"security domain: {detail}.")
    now = timezone.now()
    with transaction.atomic():
        state = state_for(hsm, lock=True)
        state.activation, state.activation_detail = SecurityDomainState.Activation.ACTIVE, ""
        state.recovered = state.checked = now
        state.exchange_key_sha256 = ""
        state.save(update_fields=["activation", "activation_detail", "recovered", "checked",
                                  "exchange_key_sha256"])
        copied = _custody_copy(source_name=job.params.get("source_hsm") or "", target=hsm,
                               state=state, job=job)
    result = {"activation": "Active", "security_domain_sha256": job.params.get("blob_sha256")}
    if copied is not None:
        result["custody"] = (f"{copied} custodian{'s' if copied != 1 else ''} and the quorum "
                             f"copied from {job.params['source_hsm']}")
    return job_finish(job_id=job_id, ok=True, result=result)


def _custody_copy(*, source_name: str, target: HsmInstance, state: SecurityDomainState,
                  job: Job) -> int | None:
    """After a recovery from `source_name`'s security domain, the same custodians hold its
    keys: copy them (with when each last proved custody) and the quorum to the target's
    ledger, retiring the target's previous custodians. Audited. None when no source."""
    source = HsmInstance.objects.filter(name=source_name).first() if source_name else None
    if source is None:
        return None
    source_state = SecurityDomainState.objects.filter(hsm=source).first()
    Custodian.objects.filter(hsm=target).exclude(status=Custodian.Status.RETIRED).update(
        status=Custodian.Status.RETIRED)
    copied = 0
    for custodian in Custodian.objects.filter(hsm=source, status=Custodian.Status.ACTIVE):
        Custodian.objects.create(
            hsm=target, name=custodian.name, email=custodian.email,
            certificate_pem=custodian.certificate_pem,
            fingerprint_sha256=custodian.fingerprint_sha256, subject=custodian.subject,
            not_after=custodian.not_after, key_bits=custodian.key_bits,
            status=Custodian.Status.ACTIVE, added_by_name=job.actor_name,
            last_proven=custodian.last_proven,
            last_proven_by_name=custodian.last_proven_by_name)
        copied += 1
    if source_state is not None and source_state.quorum:
        state.quorum = source_state.quorum
        state.save(update_fields=["quorum"])
    audit_record(actor=None, action="custody.copy", target=sd_target(target),
                 outcome=AuditEvent.Outcome.RECORDED,
                 detail={"from": source.name, "custodians": copied, "quorum": state.quorum,
                         "job": job.pk})
    return copied


# -- housekeeping --------------------------------------------------------------------------

def security_domain_jobs_resume(*, now=None) -> list[int]:
    """Hand running security-domain jobs whose worker died to a new worker (beat).

    A job still running PORTAL_SD_POLL_SECONDS + 5 minutes after it started has outlived
    any worker that ran it (the job gives up waiting at the poll deadline). It gets a new
    claim token by a conditional UPDATE (one takeover per lapse, across processes), audited,
    and its task is queued again under that token: it resumes from the operation marked on
    the job (polls; never a second download or upload of the same file)."""
    from datetime import timedelta as _timedelta

    from dr_app import security_domain_tasks as tasks
    from portal.jobs.services import job_target

    now = now or timezone.now()
    cutoff = now - _timedelta(seconds=poll_seconds() + 300)
    task_for = {ACTIVATE_KIND: tasks.security_domain_activate_run,
                UPLOAD_KIND: tasks.security_domain_upload_run}
    resumed = []
    for job in Job.objects.filter(kind__in=list(task_for), status=Job.Status.RUNNING,
                                  started__lt=cutoff):
        new_token = f"resume-{secrets.token_hex(16)}"
        with transaction.atomic():
            taken = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING,
                                       claim_token=job.claim_token).update(
                claim_token=new_token, started=now)
            if not taken:
                continue
            audit_record(actor=None, action="job.resume", target=job_target(job),
                         outcome=AuditEvent.Outcome.RECORDED,
                         detail={"kind": job.kind, "operation": job.external_operation_id})
            job_progress(job_id=job.pk, percent=job.progress,
                         log="The worker stopped; another worker resumes the job.")
            transaction.on_commit(lambda j=job.pk, t=new_token, task=task_for[job.kind]:
                                  task.apply_async(args=[j], task_id=t))
        resumed.append(job.pk)
    return resumed


def security_domain_housekeeping() -> dict:
    """Beat: resume jobs whose worker died, delete expired security-domain files."""
    return {"resumed": security_domain_jobs_resume(), "files_removed": stash.stash_sweep()}


# -- custody ledger ------------------------------------------------------------------------

def custodian_add(*, hsm: HsmInstance, name: str, email: str = "", certificate,
                  actor, request_id: str) -> Custodian:
    """Record a custodian and the wrapping certificate they hold (e.g. for an HSM activated
    outside the portal). Audited; one live entry per certificate per HSM."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise BadInput("The custodian needs a name (at most 100 characters).",
                       fields={"name": ["A name is required."]})
    cert = certificate_parse(certificate)
    with transaction.atomic():
        if Custodian.objects.filter(hsm=hsm, fingerprint_sha256=cert.fingerprint_sha256).exclude(
                status=Custodian.Status.RETIRED).exists():
            raise Conflict("That certificate is already in this HSM's custody ledger.",
                           code="custodian_exists", fields={"certificate": ["Already recorded."]})
        custodian = Custodian.objects.create(
            hsm=hsm, name=name, email=(email or "").strip(), certificate_pem=cert.pem,
            fingerprint_sha256=cert.fingerprint_sha256, subject=cert.subject,
            not_after=cert.not_after, key_bits=cert.key_bits, status=Custodian.Status.ACTIVE,
            added_by_name=actor.get_username())
        audit_record(actor=actor, action="custody.add", target=custodian_target(custodian),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"name": name, "fingerprint": cert.fingerprint_sha256})
    return custodian


def custodian_retire(*, custodian: Custodian, actor, request_id: str) -> Custodian:
    """Take a custodian out of the ledger (their certificate no longer wraps this HSM's
    security domain). Audited."""
    with transaction.atomic():
        changed = Custodian.objects.filter(pk=custodian.pk).exclude(
            status=Custodian.Status.RETIRED).update(status=Custodian.Status.RETIRED)
        if not changed:
            raise Conflict("That custodian is already retired.", code="custodian_retired")
        audit_record(actor=actor, action="custody.retire", target=custodian_target(custodian),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"name": custodian.name,
                             "fingerprint": custodian.fingerprint_sha256})
    custodian.refresh_from_db()
    return custodian


def quorum_record(*, hsm: HsmInstance, quorum, actor, request_id: str) -> SecurityDomainState:
    """Record the quorum of an HSM activated outside the portal (2-10). Audited."""
    try:
        quorum = int(quorum)
    except (TypeError, ValueError):
        raise BadInput("The quorum must be a whole number.",
                       fields={"quorum": ["Not a number."]}) from None
    if not MIN_QUORUM <= quorum <= MAX_CERTIFICATES:
        raise BadInput("The quorum must be from 2 to 10.", fields={"quorum": ["Out of range."]})
    with transaction.atomic():
        state = state_for(hsm, lock=True)
        audit_record(actor=actor, action="custody.quorum", target=sd_target(hsm),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"quorum": quorum, "was": state.quorum})
        state.quorum = quorum
        state.save(update_fields=["quorum"])
    return state


def challenge_text(challenge: CustodyChallenge) -> bytes:
    """The exact bytes the custodian signs (the downloaded challenge file)."""
    custodian = challenge.custodian
    return ("mhsm-portal custody challenge\n"
            f"hsm: {custodian.hsm.name}\n"
            f"custodian: {custodian.name}\n"
            f"certificate-sha256: {custodian.fingerprint_sha256}\n"
            f"nonce: {challenge.nonce}\n"
            f"expires: {challenge.expires.astimezone(dt_timezone.utc):%Y-%m-%dT%H:%M:%SZ}\n"
            ).encode()


def custody_challenge_issue(*, custodian: Custodian, actor, request_id: str) -> CustodyChallenge:
    """Issue a one-time challenge for a custodian to sign offline with their private key
    (valid for 7 days). Audited."""
    if custodian.status != Custodian.Status.ACTIVE:
        raise Conflict("Only an active custodian can prove custody.", code="custodian_inactive")
    with transaction.atomic():
        challenge = CustodyChallenge.objects.create(
            custodian=custodian, nonce=secrets.token_hex(32),
            expires=timezone.now() + timedelta(seconds=CHALLENGE_SECONDS),
            issued_by_name=actor.get_username())
        audit_record(actor=actor, action="custody.challenge", target=custodian_target(custodian),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"challenge": challenge.pk})
    return challenge


def _signature_bytes(signature) -> bytes:
    if isinstance(signature, str):
        signature = signature.encode()
    signature = bytes(signature or b"")
    if len(signature) > 4096:
        raise BadInput("The signature file is too large for an RSA signature.",
                       fields={"signature": ["Too large."]})
    stripped = signature.strip()
    if stripped and all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n-_"
                        for c in stripped) and len(stripped) > 64:
        try:  # openssl ... | base64, or the API's JSON string
            return base64.b64decode(stripped.replace(b"-", b"+").replace(b"_", b"/")
                                    + b"=" * (-len(stripped) % 4))
        except binascii.Error:
            pass
    return signature


def _verifies(public: rsa.RSAPublicKey, signature: bytes, message: bytes) -> bool:
    for pad in (padding.PKCS1v15(),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)):
        try:
            public.verify(signature, message, pad, hashes.SHA256())
            return True
        except InvalidSignature:
            continue
    return False


def custody_prove(*, custodian: Custodian, challenge_id: int, signature, actor,
                  request_id: str) -> Custodian:
    """Check a custodian's signature (RSA SHA-256, PKCS#1 v1.5 or PSS, as
    `openssl dgst -sha256 -sign`) over a challenge against their certificate; if it
    verifies, the custody is proven now and the challenge is used. Audited either way."""
    raw = _signature_bytes(signature)
    intent = audit_record(actor=actor, action="custody.prove", target=custodian_target(custodian),
                          request_id=request_id, detail={"challenge": challenge_id})
    with transaction.atomic():
        challenge = CustodyChallenge.objects.select_for_update().select_related(
            "custodian__hsm").filter(pk=challenge_id, custodian=custodian).first()
        reason = ""
        if challenge is None:
            reason = "That challenge was not issued for this custodian."
        elif challenge.used is not None:
            reason = "That challenge was used already; issue a new one."
        elif challenge.expires <= timezone.now():
            reason = "That challenge expired; issue a new one."
        elif custodian.status != Custodian.Status.ACTIVE:
            reason = "Only an active custodian can prove custody."
        else:
            public = x509.load_pem_x509_certificate(
                custodian.certificate_pem.encode()).public_key()
            if not raw or not _verifies(public, raw, challenge_text(challenge)):
                reason = ("The signature does not verify against the custodian's certificate: "
                          "sign the challenge file exactly as downloaded, with the private key "
                          "of certificate " + custodian.fingerprint_sha256[:16] + "….")
        if not reason:
            now = timezone.now()
            challenge.used = now
            challenge.save(update_fields=["used"])
            Custodian.objects.filter(pk=custodian.pk).update(
                last_proven=now, last_proven_by_name=actor.get_username())
    if reason:
        audit_result(intent, ok=False, detail={"reason": reason[:200]})
        raise BadInput(reason, code="custody_not_proven", fields={"signature": [reason]})
    audit_result(intent, ok=True, detail={"fingerprint": custodian.fingerprint_sha256})
    custodian.refresh_from_db()
    return custodian
