"""Reads of the security domain and the custody ledger, for pages, the API and posture."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from dr_app.models_sd import Custodian, CustodyChallenge, SecurityDomainFile, SecurityDomainState
from portal.errors import NotFound
from portal.jobs.models import Job

EXPIRY_WARNING_DAYS = 30


def sd_state_get(*, hsm) -> SecurityDomainState:
    """The HSM's security-domain state as last seen (an unsaved blank one if none yet)."""
    return SecurityDomainState.objects.filter(hsm=hsm).select_related("current_job").first() \
        or SecurityDomainState(hsm=hsm)


def custodian_list(*, hsm, include_retired: bool = False) -> QuerySet[Custodian]:
    """The HSM's custodians, active first."""
    rows = Custodian.objects.filter(hsm=hsm).select_related("hsm")
    if not include_retired:
        rows = rows.exclude(status=Custodian.Status.RETIRED)
    return rows.order_by("status", "name", "id")


def custodian_get(*, hsm, custodian_id: int) -> Custodian:
    custodian = Custodian.objects.filter(hsm=hsm, pk=custodian_id).select_related("hsm").first()
    if custodian is None:
        raise NotFound("No such custodian on this HSM.")
    return custodian


def challenge_get(*, custodian, challenge_id: int) -> CustodyChallenge:
    challenge = CustodyChallenge.objects.filter(custodian=custodian, pk=challenge_id).select_related(
        "custodian__hsm").first()
    if challenge is None:
        raise NotFound("No such challenge for this custodian.")
    return challenge


@dataclass(frozen=True)
class CustodyFinding:
    """One custody warning: the HSM, the custodian (or None for the HSM as a whole), what
    is wrong, in words, and a tone (warn, bad)."""

    hsm_name: str
    custodian_id: int | None
    custodian_name: str
    problem: str
    message: str
    tone: str


def custody_state(custodian: Custodian, *, now: datetime | None = None,
                  proof_days: int | None = None) -> tuple[str, str]:
    """(tone, words) for a custodian: ok, or why it is stale/expiring/expired."""
    from dr_app.security_domain import custody_proof_days

    now = now or timezone.now()
    days = proof_days or custody_proof_days()
    if custodian.status == Custodian.Status.RETIRED:
        return "muted", "Retired"
    if custodian.status == Custodian.Status.PENDING:
        return "muted", "Pending activation"
    if custodian.not_after <= now:
        return "bad", "Certificate expired"
    if custodian.last_proven is None:
        return "warn", "Never proven"
    if custodian.last_proven < now - timedelta(days=days):
        return "warn", f"Not proven in {days} days"
    if custodian.not_after <= now + timedelta(days=EXPIRY_WARNING_DAYS):
        return "warn", "Certificate expires soon"
    return "ok", "Proven"


def custody_findings(*, hsm=None, now: datetime | None = None) -> list[CustodyFinding]:
    """Every custody problem (stale or never-proven custody, expired or expiring
    certificates, fewer proven custodians than the quorum), per HSM. Posture reads this."""
    from dr_app.security_domain import custody_proof_days

    now = now or timezone.now()
    days = custody_proof_days()
    custodians = Custodian.objects.filter(status=Custodian.Status.ACTIVE).select_related("hsm")
    states = SecurityDomainState.objects.exclude(quorum__isnull=True).select_related("hsm")
    if hsm is not None:
        custodians, states = custodians.filter(hsm=hsm), states.filter(hsm=hsm)
    findings, proven = [], {}
    for custodian in custodians.order_by("hsm__name", "name"):
        tone, words = custody_state(custodian, now=now, proof_days=days)
        if tone == "ok":
            proven[custodian.hsm_id] = proven.get(custodian.hsm_id, 0) + 1
            continue
        problem = {"Certificate expired": "certificate_expired",
                   "Certificate expires soon": "certificate_expiring",
                   "Never proven": "never_proven"}.get(words, "stale")
        if problem == "certificate_expiring":
            proven[custodian.hsm_id] = proven.get(custodian.hsm_id, 0) + 1
        findings.append(CustodyFinding(custodian.hsm.name, custodian.pk, custodian.name, problem,
                                       f"{custodian.name}: {words}.", tone))
    for state in states.order_by("hsm__name"):
        count = proven.get(state.hsm_id, 0)
        if count < state.quorum:
            findings.append(CustodyFinding(
                state.hsm.name, None, "", "quorum_at_risk",
                f"Only {count} custodian{'s' if count != 1 else ''} proved custody within "
                f"{days} days; recovery needs {state.quorum}.", "bad"))
    return findings


def sd_download_pending(*, hsm, user) -> SecurityDomainFile | None:
    """The activation download waiting for this user on this HSM, if any."""
    from portal.accounts.identity import same_principal

    row = SecurityDomainFile.objects.filter(
        hsm=hsm, purpose=SecurityDomainFile.Purpose.DOWNLOAD, consumed__isnull=True,
        expires__gt=timezone.now()).select_related("job__actor").order_by("-created").first()
    if row is None or row.job is None or row.job.actor is None:
        return None
    return row if same_principal(row.job.actor, user) else None


def sd_jobs(*, hsm, limit: int = 10) -> QuerySet[Job]:
    """The HSM's latest security-domain jobs."""
    return Job.objects.filter(hsm=hsm, kind__startswith="security_domain.").order_by(
        "-created", "-id")[:limit]


@dataclass
class HsmSecurityDomainRow:
    """One HSM on the security-domain overview: what the portal last saw, no HSM call."""

    hsm: object
    state: SecurityDomainState
    custodians: int
    proven: int
    warnings: list


def sd_hsm_overview(*, user) -> list[HsmSecurityDomainRow]:
    """Every HSM the user may see with its last-seen activation, quorum and custody."""
    from portal.gateway.selectors import hsm_list

    hsms = list(hsm_list())
    states = {s.hsm_id: s for s in SecurityDomainState.objects.filter(hsm__in=hsms)}
    findings: dict[str, list] = {}
    for finding in custody_findings():
        findings.setdefault(finding.hsm_name, []).append(finding)
    counts: dict[int, list[int]] = {}
    for custodian in Custodian.objects.filter(status=Custodian.Status.ACTIVE, hsm__in=hsms):
        tone, words = custody_state(custodian)
        entry = counts.setdefault(custodian.hsm_id, [0, 0])
        entry[0] += 1
        entry[1] += tone == "ok" or words == "Certificate expires soon"
    return [HsmSecurityDomainRow(hsm=hsm, state=states.get(hsm.pk) or SecurityDomainState(hsm=hsm),
                                 custodians=counts.get(hsm.pk, [0, 0])[0],
                                 proven=counts.get(hsm.pk, [0, 0])[1],
                                 warnings=findings.get(hsm.name, []))
            for hsm in hsms]


def hsm_security_domain_facts(*, hsm) -> list:
    """The HSM's security domain in its Essentials (as last seen; no HSM call)."""
    from django.urls import reverse

    from portal.objects import Fact

    state = SecurityDomainState.objects.filter(hsm=hsm).first()
    url = reverse("dr:sd-overview", kwargs={"hsm_id": hsm.name})
    if state is None or state.activation == SecurityDomainState.Activation.UNKNOWN:
        return [Fact("Security domain", "Not checked yet", url=url)]
    words = state.get_activation_display()
    if state.quorum:
        words += f", quorum {state.quorum}"
    return [Fact("Security domain", words, url=url, id="hsm-security-domain")]
