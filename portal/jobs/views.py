"""Job pages: the list, one job, and the htmx partial that keeps its progress live."""
from django.shortcuts import redirect, render
from django.views import View

from portal.jobs.selectors import job_get, job_list
from portal.jobs.services import selfcheck_start
from portal.jobs.tables import job_table
from portal.permissions import PortalPermissionMixin


class JobListView(PortalPermissionMixin, View):
    required_permission = {"GET": "jobs.view_job", "POST": "jobs.add_job"}

    def get(self, request):
        return render(request, "jobs/job_list.html",
                      {"table": job_table(request=request, jobs=job_list())})

    def post(self, request):
        job = selfcheck_start(actor=request.user, request_id=request.id)
        return redirect(job)


class JobDetailView(PortalPermissionMixin, View):
    required_permission = "jobs.view_job"

    def get(self, request, job_id: int):
        job = job_get(job_id=job_id)
        template = "jobs/_job_progress.html" if request.headers.get("HX-Request") else \
            "jobs/job_detail.html"
        return render(request, template, {"job": job})
