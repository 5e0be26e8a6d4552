"""Local RBAC of each HSM as the portal knows it.

- RoleDefinitionRecord and RoleAssignmentRecord are a cache of the HSM (the source of
  truth), synced like the key inventory. An assignment's `first_seen_at` is the "since" of
  effective access: when the portal made it or first saw it.
- AccessRequest is every grant: role R at scope S for principal P, time-boxed, through an
  approval; its `correlation_id` is the audit request id of everything that follows it
  (request -> approval(s) -> assignment -> revocation).
- ReviewCampaign / ReviewItem: access review evidence.
"""
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class RoleDefinitionRecord(models.Model):
    """One role definition of one HSM (built-in or custom)."""

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE,
                            related_name="role_definitions")
    name = models.CharField(max_length=64, help_text="the definition's GUID")
    definition_id = models.CharField(max_length=200)
    role_name = models.CharField(max_length=200)
    role_type = models.CharField(max_length=32)
    description = models.TextField(blank=True)
    permissions = models.JSONField(default=list, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["role_type", "role_name"]
        constraints = [models.UniqueConstraint(fields=["hsm", "name"], name="roledef_unique")]
        permissions = [("sync_roledefinitionrecord", "Can refresh local RBAC from the HSM")]

    def __str__(self) -> str:
        return self.role_name

    @property
    def is_custom(self) -> bool:
        return self.role_type == "CustomRole"

    @property
    def data_actions(self) -> list[str]:
        return [a for p in self.permissions for a in p.get("data_actions", [])]

    @property
    def not_data_actions(self) -> list[str]:
        return [a for p in self.permissions for a in p.get("not_data_actions", [])]


class RoleAssignmentRecord(models.Model):
    """One role assignment of one HSM, present (removed_at None) or gone."""

    class Origin(models.TextChoices):
        PORTAL = "portal", "Granted through the portal"
        DRIFT = "drift", "Made outside the portal"
        ADOPTED = "adopted", "Adopted into a request"
        SELF = "self", "The portal's own identity"

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE,
                            related_name="role_assignments")
    name = models.CharField(max_length=64, help_text="the assignment's name (a GUID)")
    scope = models.CharField(max_length=140)
    principal_id = models.CharField(max_length=64)
    role_definition_id = models.CharField(max_length=200)
    role_name = models.CharField(max_length=200, blank=True)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.PORTAL)
    access_request = models.ForeignKey("AccessRequest", null=True, blank=True,
                                       on_delete=models.SET_NULL, related_name="assignments")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scope", "role_name", "principal_id"]
        constraints = [models.UniqueConstraint(fields=["hsm", "name"], name="roleassignment_unique")]
        indexes = [models.Index(fields=["hsm", "removed_at", "scope"], name="ra_hsm_present_scope")]
        permissions = [("grant_roleassignmentrecord", "Can request and revoke role assignments")]

    def __str__(self) -> str:
        return f"{self.role_name or self.role_definition_id} at {self.scope} for {self.principal_id}"

    @property
    def drift(self) -> bool:
        return self.origin == self.Origin.DRIFT and self.removed_at is None


class AccessRequest(models.Model):
    """A request for role R at scope S for principal P (a grant, or adopting drift)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        GRANTING = "granting", "Being granted"
        ACTIVE = "active", "Active"
        DENIED = "denied", "Denied"
        NOT_GRANTED = "not_granted", "Not granted (approval expired or withdrawn)"
        FAILED = "failed", "Failed"
        REVOKING = "revoking", "Being revoked"
        EXPIRED = "expired", "Expired (removed)"
        REVOKED = "revoked", "Revoked"

    class Kind(models.TextChoices):
        GRANT = "grant", "New grant"
        ADOPT = "adopt", "Adopt an existing assignment"

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE,
                            related_name="access_requests")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.GRANT)
    principal_id = models.CharField(max_length=64)
    principal_name = models.CharField(max_length=256, blank=True)
    role_definition_id = models.CharField(max_length=200)
    role_name = models.CharField(max_length=200)
    scope = models.CharField(max_length=140)
    justification = models.TextField(max_length=2000)
    ticket = models.CharField(max_length=64, blank=True)
    duration_hours = models.PositiveIntegerField()
    # Chosen before anything reaches the HSM: creating it twice is one assignment, and a
    # sync that sees it first links it to this request instead of calling it drift.
    assignment_name = models.CharField(max_length=64, default=uuid.uuid4)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                     on_delete=models.SET_NULL, related_name="+")
    requested_by_name = models.CharField(max_length=150, blank=True)
    correlation_id = models.CharField(max_length=64, db_index=True)
    approval_request_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=500, blank=True)
    # When a worker claimed it (granting/revoking): a claim older than the lease is a worker
    # that died mid-way, and the next beat finishes or releases it.
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    granted_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["hsm", "assignment_name"],
                                               name="access_request_assignment_unique")]
        indexes = [models.Index(fields=["status", "expires_at"], name="access_status_expiry")]

    def __str__(self) -> str:
        return f"access request #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("access:request-detail", kwargs={"access_request_id": self.pk})

    @property
    def status_tone(self) -> str:
        """The status pill's colour (ok, warn, bad, muted)."""
        return STATUS_TONES.get(self.status, "muted")


STATUS_TONES = {"pending": "warn", "granting": "warn", "active": "ok", "denied": "bad",
                "not_granted": "muted", "failed": "bad", "revoking": "warn",
                "expired": "muted", "revoked": "muted"}


class ReviewCampaign(models.Model):
    """An access review of one HSM: every standing assignment re-approved or revoked."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE,
                            related_name="review_campaigns")
    name = models.CharField(max_length=120)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                   on_delete=models.SET_NULL, related_name="+")
    started_by_name = models.CharField(max_length=150, blank=True)
    correlation_id = models.CharField(max_length=64)
    started_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("review_reviewcampaign", "Can answer access reviews")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("access:campaign-detail", kwargs={"campaign_id": self.pk})


class ReviewItem(models.Model):
    """One standing assignment in a campaign, and its owner's answer (the evidence)."""

    class Decision(models.TextChoices):
        PENDING = "pending", "Not answered yet"
        KEEP = "keep", "Re-approved"
        REVOKE = "revoke", "Revoke (sent for approval)"
        EXPIRED = "expired", "Unanswered: revocation sent for approval"

    campaign = models.ForeignKey(ReviewCampaign, on_delete=models.CASCADE, related_name="items")
    assignment = models.ForeignKey(RoleAssignmentRecord, null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    assignment_name = models.CharField(max_length=64)
    principal_id = models.CharField(max_length=64)
    role_name = models.CharField(max_length=200)
    scope = models.CharField(max_length=140)
    owner = models.CharField(max_length=256, help_text="the key's owner tag, or 'HSM admins'")
    decision = models.CharField(max_length=8, choices=Decision.choices, default=Decision.PENDING)
    decided_by_name = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.CharField(max_length=500, blank=True)
    revoke_approval_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["scope", "role_name", "id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "assignment_name"],
                                               name="review_item_unique")]

    def __str__(self) -> str:
        return f"{self.role_name} at {self.scope} for {self.principal_id}"
