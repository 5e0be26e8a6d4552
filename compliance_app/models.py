"""Posture runs and their results, and evidence packs for auditors."""
from django.db import models


class PostureRun(models.Model):
    """One evaluation of every registered posture check (scheduled or on demand)."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        DEMAND = "demand", "On demand"

    job = models.OneToOneField("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="posture_run")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.DEMAND)
    actor_name = models.CharField(max_length=150, blank=True)
    started = models.DateTimeField(auto_now_add=True, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    other = models.PositiveIntegerField(default=0, help_text="not applicable or unknown")

    class Meta:
        ordering = ["-started", "-id"]
        permissions = [("run_posture", "Can run the posture checks now")]

    def __str__(self) -> str:
        return f"posture run {self.pk}"


class PostureResult(models.Model):
    """One check's outcome for one HSM (or the estate) in one run, with its evidence."""

    class Status(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        NOT_APPLICABLE = "na", "Not applicable"
        UNKNOWN = "unknown", "Unknown"

    run = models.ForeignKey(PostureRun, on_delete=models.CASCADE, related_name="results")
    check_id = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    hsm_name = models.CharField(max_length=64, blank=True, help_text="'' for estate-wide checks")
    status = models.CharField(max_length=8, choices=Status.choices)
    summary = models.CharField(max_length=500)
    evidence = models.JSONField(default=dict, blank=True)
    fix = models.CharField(max_length=500, blank=True)
    fix_url = models.CharField(max_length=300, blank=True)
    previous_status = models.CharField(max_length=8, blank=True,
                                       help_text="this check's status in the run before")

    class Meta:
        ordering = ["check_id", "hsm_name"]
        constraints = [models.UniqueConstraint(fields=["run", "check_id", "hsm_name"],
                                               name="posture_result_unique")]
        indexes = [models.Index(fields=["check_id", "hsm_name", "-run"], name="posture_check_hist")]

    def __str__(self) -> str:
        return f"{self.check_id} {self.hsm_name or 'estate'}: {self.status}"

    @property
    def flipped(self) -> bool:
        return bool(self.previous_status) and self.previous_status != self.status


class EvidencePack(models.Model):
    """A PDF and JSON for auditors, made by a job; holds no key material or secrets."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    job = models.OneToOneField("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="evidence_pack")
    requested_by_name = models.CharField(max_length=150, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    pdf = models.BinaryField(null=True, blank=True)
    document = models.JSONField(null=True, blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    json_sha256 = models.CharField(max_length=64, blank=True)
    pdf_bytes = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"evidence pack {self.pk}"
