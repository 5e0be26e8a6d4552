"""Pages: posture (latest or a chosen run, with evidence, fix and what flipped; history) and
evidence packs (generate, list, download)."""
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from compliance_app import selectors, services
from compliance_app.checks import CHECKS
from portal.errors import PortalError
from portal.gateway.views import HsmTabView
from portal.permissions import PortalPermissionMixin

TONES = {"pass": "ok", "fail": "bad", "unknown": "warn", "na": "muted"}


class PostureView(PortalPermissionMixin, View):
    """The posture overview: one run's results (the latest by default), and run history."""

    required_permission = {"GET": "compliance_app.view_posturerun",
                           "POST": "compliance_app.run_posture"}

    def get(self, request):
        run_id = request.GET.get("run", "")
        run = None
        if run_id:
            if not run_id.isdigit() or len(run_id) > 12:
                messages.error(request, "A run is chosen by its number.")
            else:
                try:
                    run = selectors.posture_run_get(run_id=int(run_id))
                except PortalError as exc:
                    messages.error(request, exc.message)
        run = run or selectors.posture_latest()
        results = list(selectors.posture_results(run=run)) if run else []
        for result in results:
            result.tone = TONES.get(result.status, "muted")
            result.previous_label = dict(result.Status.choices).get(result.previous_status, "")
        return render(request, "compliance_app/posture.html", {
            "run": run, "results": results, "flipped": [r for r in results if r.flipped],
            "runs": selectors.posture_runs()[:30], "checks": list(CHECKS.values()),
            "pending": selectors.posture_runs().filter(
                finished__isnull=True, job__status__in=("queued", "running")).first()})

    def post(self, request):
        try:
            job = services.posture_run_start(actor=request.user, request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect("compliance:posture")
        messages.success(request, f"Posture checks queued (job {job.pk}); this page shows the "
                                  "results when it finishes.")
        return redirect(job)


class EvidencePackView(PortalPermissionMixin, View):
    """Evidence packs: generate one (a job), list them, download the ready ones."""

    required_permission = {"GET": "compliance_app.view_evidencepack",
                           "POST": "compliance_app.add_evidencepack"}

    def get(self, request):
        return render(request, "compliance_app/evidence.html",
                      {"packs": selectors.evidence_packs()[:50]})

    def post(self, request):
        try:
            pack = services.evidence_pack_start(actor=request.user, request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect("compliance:evidence")
        messages.success(request, f"Evidence pack {pack.pk} is being made (job {pack.job_id}); "
                                  "download it here when it is ready.")
        return redirect("compliance:evidence")


class EvidencePackDownloadView(PortalPermissionMixin, View):
    """A ready pack's PDF or JSON (the download is audited)."""

    required_permission = "compliance_app.view_evidencepack"

    def get(self, request, pack_id: int, fmt: str):
        try:
            body, ctype, filename = services.evidence_pack_download(
                pack_id=pack_id, fmt=fmt, actor=request.user, request_id=request.id)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect("compliance:evidence")
        response = HttpResponse(body, content_type=ctype)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class HsmPostureView(HsmTabView):
    """The HSM's Posture tab: each check's latest result here and its last runs."""

    required_permission = "compliance_app.view_posturerun"
    tab = "posture"
    template = "compliance_app/hsm_posture.html"

    def tab_context(self, hsm):
        run = selectors.posture_latest()
        rows = []
        if run is not None:
            for result in selectors.posture_results(run=run).filter(hsm_name=hsm.name):
                result.tone = TONES.get(result.status, "muted")
                history = list(selectors.posture_check_history(check_id=result.check_id,
                                                               hsm_name=hsm.name, limit=10))
                for past in history:
                    past.tone = TONES.get(past.status, "muted")
                rows.append({"result": result, "history": history})
        return {"run": run, "rows": rows}
