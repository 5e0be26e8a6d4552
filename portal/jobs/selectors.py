"""Reads of Jobs for pages and the API."""
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from portal.jobs.models import Job


def job_list(*, kind: str = "", status: str = "") -> QuerySet[Job]:
    """Jobs newest first, optionally of one kind or status."""
    qs = Job.objects.select_related("hsm")
    if kind:
        qs = qs.filter(kind=kind)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created", "-id")


def job_get(*, job_id: int) -> Job:
    """One job or 404."""
    return get_object_or_404(Job.objects.select_related("hsm"), pk=job_id)
