"""The append-only, hash-chained audit trail."""
from django.db import models


class AuditEvent(models.Model):
    """One audit record. Never updated or deleted; each row's hash covers the previous hash.

    Services append an `intent` row before touching anything external and an outcome row
    (`succeeded`/`failed`/`denied`) after it; one-shot facts are `recorded`.
    """

    class Outcome(models.TextChoices):
        INTENT = "intent", "Intent"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DENIED = "denied", "Denied"
        RECORDED = "recorded", "Recorded"

    seq = models.BigIntegerField(unique=True)
    time = models.DateTimeField(db_index=True)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_name = models.CharField(max_length=150)
    role = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The caller's own X-Request-ID, kept apart from the server's id (hashed when set); the
    # database default lets writers that predate the column still append.
    client_request_id = models.CharField(max_length=64, blank=True, db_index=True,
                                         default="", db_default="")
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=512, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        permissions = [("export_auditevent", "Can export the audit trail")]
        indexes = [
            # Each filter of the auditor's page walks one of these newest-first.
            models.Index(fields=["action", "seq"], name="audit_action_seq"),
            models.Index(fields=["actor_name", "seq"], name="audit_actor_seq"),
            models.Index(fields=["target", "seq"], name="audit_target_seq",
                         opclasses=["varchar_pattern_ops", "int8_ops"]),
            models.Index(fields=["outcome", "seq"], name="audit_outcome_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome} {self.target}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RuntimeError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("Audit events are append-only.")


class AuditChainHead(models.Model):
    """The single row that serialises appends: the last seq and hash of the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"head #{self.seq}"
