"""Jobs over the API: list, one job, and starting a self-check."""
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.jobs.api.serializers import JobOutput
from portal.jobs.selectors import job_get, job_list
from portal.jobs.services import selfcheck_start


class JobCursor(CursorPagination):
    ordering = ("-created", "-id")
    page_size = 50


class JobListApi(APIView):
    required_permission = {"GET": "jobs.view_job", "POST": "jobs.add_job"}

    @extend_schema(responses=JobOutput(many=True))
    def get(self, request):
        paginator = JobCursor()
        page = paginator.paginate_queryset(
            job_list(kind=request.query_params.get("kind", ""),
                     status=request.query_params.get("status", "")), request, view=self)
        return paginator.get_paginated_response(JobOutput(page, many=True).data)

    @extend_schema(request=None, responses={202: JobOutput},
                   description="Start a connectivity self-check (database, broker, HSMs).")
    def post(self, request):
        job = selfcheck_start(actor=request.user, request_id=request.id)
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class JobDetailApi(APIView):
    required_permission = "jobs.view_job"

    @extend_schema(responses=JobOutput)
    def get(self, request, job_id: int):
        return Response(JobOutput(job_get(job_id=job_id)).data)
