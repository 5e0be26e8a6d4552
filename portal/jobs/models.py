"""Long-running work (backups, restores, syncs) and its progress."""
from django.conf import settings
from django.db import models
from django.urls import reverse


class Job(models.Model):
    """One piece of long work run by Celery; the page and API show its progress live.

    A worker owns it after `job_claim` (claim_token = the Celery task id, which survives
    retries); an operation started in Azure is remembered in external_operation_id so a
    restarted worker resumes polling instead of starting it again.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

    kind = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=200, blank=True)
    log = models.JSONField(default=list, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150, blank=True)
    hsm = models.ForeignKey("gateway.HsmInstance", null=True, blank=True,
                            on_delete=models.SET_NULL, related_name="jobs")
    claim_token = models.CharField(max_length=255, blank=True)
    external_operation_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status", "kind"], name="job_status_kind")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("jobs:job-detail", kwargs={"job_id": self.pk})

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
