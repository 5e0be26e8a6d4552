"""Backups, their schedules and DR drills.

The catalog row (BackupRecord) joins what the portal started (its Job) with what the storage
account holds (a folder listing): either side alone can create it. The security-domain
models (helper area `security_domain*`) live in models_sd.py and are imported here so one
app holds one migration history.
"""
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse


class AuthMode(models.TextChoices):
    SAS = "sas", "Shared access signature (SAS)"
    MANAGED_IDENTITY = "managed_identity", "The HSM's managed identity"


class BackupRecord(models.Model):
    """One full backup folder of one HSM (the catalog's row)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        FOUND = "found", "Found in storage"
        DELETED = "deleted", "Deleted"

    hsm = models.ForeignKey("gateway.HsmInstance", null=True, blank=True,
                            on_delete=models.SET_NULL, related_name="backups")
    source_hsm_name = models.CharField(max_length=64, blank=True)
    container = models.CharField(max_length=63)
    folder = models.CharField(max_length=255, blank=True,
                              help_text="The folder name in the container (set once known).")
    folder_url = models.URLField(max_length=512, blank=True)
    auth_mode = models.CharField(max_length=20, choices=AuthMode.choices, default=AuthMode.SAS)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    key_count = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    blob_count = models.PositiveIntegerField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    schedule = models.ForeignKey("dr_app.BackupSchedule", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="backups")
    error = models.TextField(blank=True)
    seen_in_storage = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started", "-id"]
        constraints = [models.UniqueConstraint(
            fields=["container", "folder"], condition=~models.Q(folder=""),
            name="backup_unique_folder")]
        indexes = [models.Index(fields=["hsm", "status", "finished"], name="backup_hsm_status")]
        permissions = [
            ("start_backup", "Can start backups and manage schedules"),
            ("restore_backup", "Can restore (selective or full) and run DR drills"),
        ]

    def __str__(self) -> str:
        return f"{self.source_hsm_name}:{self.folder or '(pending)'}"


class BackupSchedule(models.Model):
    """A recurring backup: every N hours at minute M, with a retention rule."""

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE,
                            related_name="backup_schedules")
    name = models.CharField(max_length=64)
    container = models.CharField(max_length=63)
    auth_mode = models.CharField(max_length=20, choices=AuthMode.choices, default=AuthMode.SAS)
    every_hours = models.PositiveSmallIntegerField(
        default=24, validators=[MinValueValidator(1), MaxValueValidator(168)])
    at_minute = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(59)])
    retention_days = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(3650)])
    keep_last = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    enabled = models.BooleanField(default=True)
    next_run = models.DateTimeField(db_index=True)
    last_run = models.DateTimeField(null=True, blank=True)
    last_job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hsm__name", "name"]
        constraints = [models.UniqueConstraint(fields=["hsm", "name"],
                                               name="backup_schedule_unique_name")]

    def __str__(self) -> str:
        return f"{self.hsm_id}:{self.name}"


class DrDrill(models.Model):
    """One DR drill run: primary backed up and restored into the secondary, then compared."""

    primary = models.ForeignKey("gateway.HsmInstance", null=True, on_delete=models.SET_NULL,
                                related_name="+")
    secondary = models.ForeignKey("gateway.HsmInstance", null=True, on_delete=models.SET_NULL,
                                  related_name="+")
    primary_name = models.CharField(max_length=64)
    secondary_name = models.CharField(max_length=64)
    container = models.CharField(max_length=63)
    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="dr_drill")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    passed = models.BooleanField(null=True)
    rto_seconds = models.FloatField(null=True, blank=True)
    rpo_seconds = models.FloatField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"drill #{self.pk} {self.primary_name}->{self.secondary_name}"

    def get_absolute_url(self) -> str:
        return reverse("dr:drill-detail", kwargs={"drill_id": self.pk})


class JobLease(models.Model):
    """Which worker runs a dr_app job and when it last said so (resume after a worker dies).

    The owner is the Job's claim_token; `beat` moves every few seconds while the worker
    polls the HSM. A lease older than DR_JOB_LEASE_SECONDS lets another worker take the
    job over (a conditional UPDATE on the claim token), and resume polling with the
    operation's stored continuation token.
    """

    job = models.OneToOneField("jobs.Job", primary_key=True, on_delete=models.CASCADE,
                               related_name="dr_lease")
    beat = models.DateTimeField(db_index=True)
    takeovers = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"lease of job {self.job_id}"


class HsmOperationSlot(models.Model):
    """The one backup or restore an HSM runs at a time (the service refuses a second one).

    A job takes its HSM's slot (a conditional UPDATE) before asking the HSM, and frees it
    when the operation ends; a slot held by a finished job is free. Jobs wanting a busy HSM
    wait their turn instead of failing on the HSM's 409.
    """

    hsm = models.OneToOneField("gateway.HsmInstance", primary_key=True,
                               on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"slot of {self.hsm_id}: job {self.job_id}"


from dr_app.models_sd import *  # noqa: E402,F401,F403  (security-domain models, helper 8)
