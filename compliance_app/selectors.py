"""Reads of posture runs and evidence packs (ORM only)."""
from django.db.models import QuerySet

from compliance_app.models import EvidencePack, PostureResult, PostureRun
from portal.errors import NotFound


def posture_runs() -> QuerySet[PostureRun]:
    """Every posture run, newest first."""
    return PostureRun.objects.select_related("job").order_by("-started", "-id")


def posture_latest() -> PostureRun | None:
    """The newest run that finished."""
    return posture_runs().filter(finished__isnull=False).first()


MAX_ID = 2**63 - 1  # ids are bigints: a larger number is no row, not a database error


def posture_failing_count(user=None) -> int:
    """Checks that failed in the newest finished run (the nav badge; two indexed reads)."""
    run = PostureRun.objects.filter(finished__isnull=False).order_by("-started", "-id").only(
        "failed").first()
    return run.failed if run else 0


def posture_run_get(*, run_id: int) -> PostureRun:
    run = posture_runs().filter(pk=run_id).first() if 0 < run_id <= MAX_ID else None
    if run is None:
        raise NotFound(f"No posture run {run_id}.")
    return run


def posture_results(*, run: PostureRun) -> QuerySet[PostureResult]:
    """A run's results: failures first, then by check and HSM."""
    from django.db.models import Case, IntegerField, Value, When

    order = Case(When(status="fail", then=Value(0)), When(status="unknown", then=Value(1)),
                 When(status="pass", then=Value(2)), default=Value(3), output_field=IntegerField())
    return run.results.annotate(rank=order).order_by("rank", "check_id", "hsm_name")


def posture_check_history(*, check_id: str, hsm_name: str, limit: int = 20) -> QuerySet[PostureResult]:
    """One check's results on one HSM over the last runs, newest first."""
    return PostureResult.objects.filter(check_id=check_id, hsm_name=hsm_name).select_related(
        "run").order_by("-run_id")[:limit]


def evidence_packs() -> QuerySet[EvidencePack]:
    """Evidence packs, newest first, without their (large) bodies."""
    return EvidencePack.objects.defer("pdf", "document").select_related("job").order_by("-created", "-id")


def evidence_pack_get(*, pack_id: int) -> EvidencePack:
    pack = evidence_packs().filter(pk=pack_id).first() if 0 < pack_id <= MAX_ID else None
    if pack is None:
        raise NotFound(f"No evidence pack {pack_id}.")
    return pack
