"""Maker-checker: a request to run an approvable operation, the decisions on it, and the
policies (data) that say how many distinct approvers each operation needs.

A request binds to `payload_hash`, the hash of its operation and canonical payload, taken
when it is made; each decision records the hash it saw. Execution recomputes the hash and
refuses on any difference, and on PostgreSQL a trigger marks a request void whenever its
operation, payload or hash is changed by any path (ORM, admin, SQL): approvals cannot be
carried over to a changed request.
"""
import hashlib
import json
import uuid
from fnmatch import fnmatchcase

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


def canonical_payload(payload: dict) -> str:
    """The one text form of a payload (sorted keys, no spaces); TypeError if not JSON."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def payload_hash(operation: str, payload: dict) -> str:
    """SHA-256 of the operation and its canonical payload: what an approval binds to."""
    text = canonical_payload({"operation": operation, "payload": payload})
    return hashlib.sha256(text.encode()).hexdigest()


# Built-in Managed HSM role names start with this; policies may name roles with or without it.
ROLE_PREFIX = "managed hsm "


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class ApprovalRequest(models.Model):
    """One request to run a registered operation with an exact payload."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"
        EXECUTING = "executing", "Executing"
        EXECUTED = "executed", "Executed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        VOID = "void", "Void (changed after it was made)"

    OPEN = (Status.PENDING, Status.APPROVED)
    FINISHED = (Status.DENIED, Status.EXPIRED, Status.EXECUTED, Status.FAILED, Status.CANCELLED,
                Status.VOID)

    operation = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    payload_hash = models.CharField(max_length=64)
    target = models.CharField(max_length=512, blank=True)
    context = models.JSONField(default=dict, blank=True)
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                  related_name="approval_requests")
    requester_principal = models.CharField(max_length=200, db_index=True)
    requester_name = models.CharField(max_length=150)
    justification = models.TextField(blank=True)
    ticket = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    policy_name = models.CharField(max_length=200, blank=True)
    correlation_id = models.CharField(max_length=32, unique=True, default=new_correlation_id)
    request_id = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    expires = models.DateTimeField()
    decided = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    failure_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status", "expires"], name="approval_status_expires")]
        permissions = [("decide_approvalrequest", "Can approve or deny approval requests")]

    def __str__(self) -> str:
        return f"{self.operation} #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("approvals:request-detail", kwargs={"approval_id": self.pk})

    @property
    def is_expired(self) -> bool:
        return self.status in self.OPEN and self.expires <= timezone.now()

    @property
    def shown_status(self) -> str:
        """The status as people should read it now (an open request past expiry is expired)."""
        return self.Status.EXPIRED.label if self.is_expired else self.get_status_display()

    @property
    def approvals_given(self) -> int:
        """Approve decisions so far (uses prefetched decisions when there are)."""
        return sum(1 for d in self.decisions.all() if d.decision == ApprovalDecision.Decision.APPROVE)

    @property
    def status_now(self) -> str:
        return self.Status.EXPIRED.value if self.is_expired else self.status

    @property
    def operation_label(self) -> str:
        from portal.approvals import registry

        return registry.label(self.operation)

    def hash_is_intact(self) -> bool:
        """Whether the stored payload still hashes to what the request was made with."""
        try:
            return payload_hash(self.operation, self.payload) == self.payload_hash
        except (TypeError, ValueError):
            return False


class ApprovalDecision(models.Model):
    """One person's approve or deny on one request (one per principal per request)."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approved"
        DENY = "deny", "Denied"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE,
                                related_name="decisions")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                 related_name="approval_decisions")
    approver_principal = models.CharField(max_length=200)
    approver_name = models.CharField(max_length=150)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    payload_hash = models.CharField(max_length=64)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "approver_principal"],
                                               name="approval_decision_one_per_principal")]

    def __str__(self) -> str:
        return f"{self.approver_name} {self.decision} #{self.request_id}"


class ApprovalPolicy(models.Model):
    """How many distinct approvers an operation needs and how long a request lives.

    Patterns are shell-style (`*`, `?`), matched case-insensitively against the operation
    name and the request's context (`role`, `scope`); the matching policy with the lowest
    `priority` wins. Seeded: the three most powerful Managed HSM roles at scope `/` need 2,
    everything else 1, every request lives 24 hours.
    """

    name = models.CharField(max_length=200, unique=True)
    operation_pattern = models.CharField(max_length=100, default="*")
    role_pattern = models.CharField(max_length=200, default="*")
    scope_pattern = models.CharField(max_length=300, default="*")
    required_approvers = models.PositiveSmallIntegerField(default=1)
    lifetime_hours = models.PositiveSmallIntegerField(default=24)
    priority = models.PositiveIntegerField(default=100)

    class Meta:
        ordering = ["priority", "id"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.CheckConstraint(condition=models.Q(required_approvers__gte=1,
                                                      required_approvers__lte=10),
                                   name="approval_policy_approvers_1_10"),
            models.CheckConstraint(condition=models.Q(lifetime_hours__gte=1,
                                                      lifetime_hours__lte=720),
                                   name="approval_policy_lifetime_1h_30d"),
        ]

    def __str__(self) -> str:
        return self.name

    def matches(self, operation: str, context: dict) -> bool:
        def fits(value, pattern: str, *, role: bool = False) -> bool:
            if pattern in ("", "*"):
                return True
            value, pattern = str(value or "").lower().strip(), pattern.lower().strip()
            if role:  # "Crypto Officer" and "Managed HSM Crypto Officer" are one role
                value, pattern = (value.removeprefix(ROLE_PREFIX),
                                  pattern.removeprefix(ROLE_PREFIX))
            return fnmatchcase(value, pattern)

        return (fits(operation, self.operation_pattern)
                and fits(context.get("role"), self.role_pattern, role=True)
                and fits(context.get("scope"), self.scope_pattern))
