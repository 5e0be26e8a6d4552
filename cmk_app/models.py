"""Which resources use which HSM key as their customer-managed key (CMK), and how."""
from django.db import models


class CmkBinding(models.Model):
    """One Azure resource (storage account, PostgreSQL or MySQL flexible server) whose
    encryption uses one HSM key. Made by the attach wizard, or found by the usage scan.

    One row per resource (unique resource id): a second attach of the same resource waits
    for the first (the row is the lock). `identity_created` and `role_assignment` say what
    the wizard made, so that undoing a failed attach removes exactly that and no more.
    """

    class Kind(models.TextChoices):
        STORAGE = "storage", "Storage account"
        POSTGRESQL = "postgresql", "PostgreSQL flexible server"
        MYSQL = "mysql", "MySQL flexible server"

    class Status(models.TextChoices):
        ATTACHING = "attaching", "Attaching"
        ACTIVE = "active", "In use"
        FAILED = "failed", "Attach failed"
        DETACHING = "detaching", "Detaching"
        DETACHED = "detached", "Detached"

    class Origin(models.TextChoices):
        WIZARD = "wizard", "Attached through the portal"
        SCAN = "scan", "Found by the usage scan"

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE,
                            related_name="cmk_bindings")
    key_name = models.CharField(max_length=127)
    resource_id = models.CharField(max_length=512, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    resource_name = models.CharField(max_length=128)
    resource_group = models.CharField(max_length=128, blank=True)
    location = models.CharField(max_length=64, blank=True)
    identity_id = models.CharField(max_length=512, blank=True)
    identity_principal_id = models.CharField(max_length=64, blank=True)
    identity_created = models.BooleanField(default=False)
    role_assignment = models.CharField(max_length=64, blank=True,
                                       help_text="the local RBAC assignment the wizard made")
    versionless = models.BooleanField(default=True)
    version_in_use = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ATTACHING)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.WIZARD)
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key_name", "resource_name"]
        indexes = [models.Index(fields=["hsm", "key_name", "status"], name="cmk_hsm_key_status")]
        permissions = [("attach_cmkbinding", "Can attach and detach customer-managed keys"),
                       ("view_hsmresource", "Can view an HSM's Azure resource"),
                       ("change_hsmresource", "Can change an HSM's Azure resource")]

    def __str__(self) -> str:
        return f"{self.resource_name} uses {self.key_name} on {self.hsm_id}"

    @property
    def in_use(self) -> bool:
        return self.status in (self.Status.ACTIVE, self.Status.DETACHING)

    @property
    def version_words(self) -> str:
        if self.versionless:
            return "Latest (follows rotation)"
        return f"Pinned to {self.version_in_use}"
