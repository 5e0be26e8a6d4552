"""The key inventory cache: what each HSM holds, synced by Celery, refreshed after each write.

The HSM is the source of truth; these rows hold metadata only (never key material, not
even public keys: downloads fetch those from the HSM).
"""
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone


class KeyRecord(models.Model):
    """One key of one HSM (its latest version's attributes), live or soft-deleted."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        DELETED = "deleted", "Deleted (recoverable)"

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=127)
    version = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    kty = models.CharField(max_length=16)
    key_size = models.PositiveIntegerField(null=True, blank=True)
    curve = models.CharField(max_length=16, blank=True)
    key_ops = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    not_before = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    created_on = models.DateTimeField(null=True, blank=True)
    updated_on = models.DateTimeField(null=True, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    tags_text = models.TextField(blank=True, help_text="'name=value' lines, for tag search")
    exportable = models.BooleanField(default=False)
    has_release_policy = models.BooleanField(default=False)
    recoverable_days = models.PositiveIntegerField(null=True, blank=True)
    recovery_level = models.CharField(max_length=64, blank=True)
    rotation_policy = models.JSONField(null=True, blank=True)
    has_rotation_policy = models.BooleanField(default=False, help_text="rotates automatically")
    version_count = models.PositiveIntegerField(default=1)
    deleted_on = models.DateTimeField(null=True, blank=True)
    scheduled_purge_on = models.DateTimeField(null=True, blank=True)
    drift = models.BooleanField(default=False)
    drift_note = models.CharField(max_length=200, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        # The service's key names are case-insensitive.
        constraints = [models.UniqueConstraint("hsm", Lower("name"), name="key_unique_per_hsm")]
        indexes = [
            models.Index(fields=["hsm", "state", "name"], name="key_hsm_state_name"),
            models.Index(fields=["hsm", "state", "expires"], name="key_hsm_state_expires"),
            models.Index(fields=["hsm", "state", "kty"], name="key_hsm_state_kty"),
        ]
        permissions = [
            ("rotate_keyrecord", "Can rotate keys"),
            ("purge_keyrecord", "Can purge deleted keys"),
            ("backup_keyrecord", "Can back up and restore single keys"),
            ("sync_keyrecord", "Can refresh the key inventory"),
        ]

    def __str__(self) -> str:
        return f"{self.hsm_id}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("keys:key-detail", kwargs={"hsm_id": self.hsm.name, "name": self.name})

    @property
    def expires_soon(self) -> bool:
        """Expires within 30 days (or has expired)."""
        return self.expires is not None and self.expires <= timezone.now() + timezone.timedelta(days=30)

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()


class KeyVersionRecord(models.Model):
    """One version of a key."""

    key = models.ForeignKey(KeyRecord, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64)
    enabled = models.BooleanField(default=True)
    not_before = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    created_on = models.DateTimeField(null=True, blank=True)
    updated_on = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_on", "-id"]
        constraints = [models.UniqueConstraint(fields=["key", "version"], name="key_version_unique")]

    def __str__(self) -> str:
        return f"{self.key}/{self.version}"


class InventoryState(models.Model):
    """Per HSM: when the inventory was last synced, and the lease of a running sync."""

    hsm = models.OneToOneField("gateway.HsmInstance", on_delete=models.CASCADE,
                               related_name="inventory_state")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_full_sync_at = models.DateTimeField(null=True, blank=True)
    lease_job_id = models.BigIntegerField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"inventory of {self.hsm_id}"


class KeyNameClaim(models.Model):
    """A key name being created or imported on one HSM right now.

    The service adds a version when a name exists, so "check, then create" must run once
    per name at a time across threads, processes and web nodes. The claim is inserted and
    committed before the HSM is asked and deleted when the call is over; the unique
    constraint turns a second concurrent claim into a 409 at once, and no transaction stays
    open across the HSM call. A claim left by a crashed process expires (services.CLAIM_LEASE).
    """

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=127, help_text="lower-cased: names are case-insensitive")
    claimed_at = models.DateTimeField(default=timezone.now)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hsm", "name"], name="key_name_claim_unique")]

    def __str__(self) -> str:
        return f"claim on {self.hsm_id}/{self.name}"
