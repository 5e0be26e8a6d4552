"""Job pages: the list, one job, and the htmx partial that keeps its progress live."""
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views import View

from portal.jobs.selectors import job_get, job_list
from portal.jobs.services import selfcheck_start
from portal.permissions import PortalPermissionMixin


class JobListView(PortalPermissionMixin, View):
    required_permission = {"GET": "jobs.view_job", "POST": "jobs.add_job"}

    def get(self, request):
        page = Paginator(job_list(), 50).get_page(request.GET.get("page"))
        return render(request, "jobs/job_list.html", {"page": page})

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
