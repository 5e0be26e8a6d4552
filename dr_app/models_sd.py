"""Security-domain models: each HSM's activation and recovery state, the custody ledger
(who holds which wrapping certificate, when each last proved it), custody challenges, and
the index of short-lived encrypted security-domain files.

No security domain, private key or signature secret is stored here: certificates are
public, a challenge is a random public nonce, and the security-domain blobs themselves
live only encrypted on disk (dr_app/security_domain_stash.py) and are referenced by id.
"""
import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

__all__ = ["SecurityDomainState", "Custodian", "CustodyChallenge", "SecurityDomainFile"]


class SecurityDomainState(models.Model):
    """One HSM's security domain as the portal last saw it, and the quorum it was made with.

    The row is also the lock that serializes activation and recovery of one HSM: services
    take it FOR UPDATE before starting either, so two admins cannot start both at once.
    """

    class Activation(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        NOT_ACTIVATED = "not_activated", "Not activated"
        IN_PROGRESS = "in_progress", "In progress"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"

    hsm = models.OneToOneField("gateway.HsmInstance", on_delete=models.CASCADE,
                               related_name="security_domain")
    quorum = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(2), MaxValueValidator(10)],
        help_text="Custodian keys needed to recover the security domain.")
    activation = models.CharField(max_length=16, choices=Activation.choices,
                                  default=Activation.UNKNOWN)
    activation_detail = models.CharField(max_length=300, blank=True)
    checked = models.DateTimeField(null=True, blank=True)
    activated = models.DateTimeField(null=True, blank=True)
    recovered = models.DateTimeField(null=True, blank=True)
    # The recovery under way: the exchange key's fingerprint (public) binds the upload to it.
    exchange_key_sha256 = models.CharField(max_length=64, blank=True)
    exchange_key_fetched = models.DateTimeField(null=True, blank=True)
    current_job = models.ForeignKey("jobs.Job", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")

    class Meta:
        permissions = [
            ("manage_security_domain",
             "Can activate an HSM, start a recovery and upload a security domain"),
        ]

    def __str__(self) -> str:
        return f"security domain of {self.hsm_id}"


class Custodian(models.Model):
    """A person who holds the private key of one wrapping certificate of an HSM's security
    domain (the certificate is public; the key never leaves the custodian)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending activation"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE,
                            related_name="custodians")
    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    certificate_pem = models.TextField()
    fingerprint_sha256 = models.CharField(max_length=64)
    subject = models.CharField(max_length=300, blank=True)
    not_after = models.DateTimeField()
    key_bits = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    activation_job = models.ForeignKey("jobs.Job", null=True, blank=True,
                                       on_delete=models.SET_NULL, related_name="+")
    added = models.DateTimeField(auto_now_add=True)
    added_by_name = models.CharField(max_length=150, blank=True)
    last_proven = models.DateTimeField(null=True, blank=True)
    last_proven_by_name = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["hsm__name", "name", "id"]
        constraints = [models.UniqueConstraint(
            fields=["hsm", "fingerprint_sha256"], condition=~models.Q(status="retired"),
            name="custodian_unique_certificate")]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint_sha256[:16]})"

    def get_absolute_url(self) -> str:
        return reverse("dr:sd-custodian", kwargs={"hsm_id": self.hsm.name,
                                                  "custodian_id": self.pk})


class CustodyChallenge(models.Model):
    """A random nonce a custodian signs offline to prove they still hold their key. Used
    once; expires."""

    custodian = models.ForeignKey(Custodian, on_delete=models.CASCADE,
                                  related_name="challenges")
    nonce = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    used = models.DateTimeField(null=True, blank=True)
    issued_by_name = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"challenge #{self.pk} for custodian {self.custodian_id}"


class SecurityDomainFile(models.Model):
    """Index of one short-lived, encrypted security-domain file kept outside the database:
    a downloaded security domain waiting for its one download, or an uploaded one waiting
    for approval and upload. Deleted (file and row marked) after use or expiry."""

    class Purpose(models.TextChoices):
        DOWNLOAD = "download", "Downloaded from the HSM"
        UPLOAD = "upload", "To upload to the HSM"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    hsm = models.ForeignKey("gateway.HsmInstance", on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(db_index=True)
    consumed = models.DateTimeField(null=True, blank=True)
    owner_name = models.CharField(max_length=150, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.purpose} {self.sha256[:16]} ({self.hsm_id})"
