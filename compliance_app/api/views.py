"""Posture and evidence packs over the API: the same services and selectors as the pages."""
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance_app import selectors, services
from compliance_app.api.serializers import (EvidencePackOutput, PostureOverviewOutput,
                                            PostureRunDetailOutput, PostureRunOutput)
from portal.gateway.selectors import hsm_get_for_user
from portal.jobs.api.serializers import JobOutput


class PostureApi(APIView):
    required_permission = "compliance_app.view_posturerun"

    @extend_schema(responses=PostureOverviewOutput,
                   parameters=[OpenApiParameter("hsm", OpenApiTypes.STR, required=False,
                                                description="only this HSM's results (and "
                                                            "the estate-wide ones)")],
                   description="The newest finished posture run with every check's result, "
                               "evidence, fix and whether it flipped since the run before.")
    def get(self, request):
        hsm = request.query_params.get("hsm", "")
        if hsm:
            hsm = hsm_get_for_user(user=request.user, hsm_id=hsm[:64]).name
        run = selectors.posture_latest()
        data = PostureRunDetailOutput(run).data if run else None
        if data and hsm:
            data["results"] = [r for r in data["results"] if r["hsm"] in (hsm, "")]
        return Response({"run": data})


class PostureRunListApi(APIView):
    required_permission = {"GET": "compliance_app.view_posturerun",
                           "POST": "compliance_app.run_posture"}

    @extend_schema(responses=PostureRunOutput(many=True),
                   description="Posture runs, newest first (the last 100).")
    def get(self, request):
        return Response(PostureRunOutput(selectors.posture_runs()[:100], many=True).data)

    @extend_schema(request=None, responses={202: JobOutput},
                   description="Run every posture check now (a job: follow it at /api/v1/jobs/{id}/; "
                               "its result names the run).")
    def post(self, request):
        job = services.posture_run_start(actor=request.user, request_id=request.id)
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class PostureRunDetailApi(APIView):
    required_permission = "compliance_app.view_posturerun"

    @extend_schema(responses=PostureRunDetailOutput, description="One posture run and its results.")
    def get(self, request, run_id: int):
        return Response(PostureRunDetailOutput(selectors.posture_run_get(run_id=run_id)).data)


class EvidencePackListApi(APIView):
    required_permission = {"GET": "compliance_app.view_evidencepack",
                           "POST": "compliance_app.add_evidencepack"}

    @extend_schema(responses=EvidencePackOutput(many=True), description="Evidence packs, newest first.")
    def get(self, request):
        return Response(EvidencePackOutput(selectors.evidence_packs()[:100], many=True).data)

    @extend_schema(request=None, responses={202: EvidencePackOutput},
                   description="Make an evidence pack (PDF + JSON) as a job; download it from "
                               "pdf_url / json_url once its status is ready. Audited.")
    def post(self, request):
        pack = services.evidence_pack_start(actor=request.user, request_id=request.id)
        return Response(EvidencePackOutput(pack).data, status=status.HTTP_202_ACCEPTED)


class EvidencePackDetailApi(APIView):
    required_permission = "compliance_app.view_evidencepack"

    @extend_schema(responses=EvidencePackOutput, description="One evidence pack's status and hashes.")
    def get(self, request, pack_id: int):
        return Response(EvidencePackOutput(selectors.evidence_pack_get(pack_id=pack_id)).data)


class EvidencePackDownloadApi(APIView):
    required_permission = "compliance_app.view_evidencepack"

    @extend_schema(operation_id="evidence_pack_download",
                   parameters=[OpenApiParameter("fmt", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                enum=["pdf", "json"])],
                   responses={(200, "application/pdf"): OpenApiTypes.BINARY,
                              (200, "application/json"): OpenApiTypes.OBJECT},
                   description="A ready pack as pdf or json (409 pack_not_ready before). Audited.")
    def get(self, request, pack_id: int, fmt: str):
        body, ctype, filename = services.evidence_pack_download(
            pack_id=pack_id, fmt=fmt, actor=request.user, request_id=request.id)
        response = HttpResponse(body, content_type=ctype)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
