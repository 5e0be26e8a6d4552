"""The append-only, hash-chained audit trail."""
from django.db import models
from django.db.models.fields.json import KeyTransform


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
            # Timelines and approvals find an approved action's rows by its correlation id.
            models.Index(KeyTransform("correlation_id", "detail"),
                         name="audit_detail_correlation"),
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


class HsmAuditEvent(models.Model):
    """One AuditEvent the HSM itself recorded (diagnostic setting to storage, or Log Analytics).

    Read-only copies: `event_key` (SHA-256 of the event's canonical JSON) is unique, so
    ingesting a blob again, or the same event from both sources, never adds a second row.
    `raw` is the event as Azure wrote it, redacted (no tokens, SAS or key material).
    """

    event_key = models.CharField(max_length=64, unique=True)
    hsm = models.ForeignKey("gateway.HsmInstance", null=True, blank=True,
                            on_delete=models.SET_NULL, related_name="audit_events")
    hsm_name = models.CharField(max_length=64, blank=True)
    resource_id = models.CharField(max_length=512, blank=True)
    time = models.DateTimeField()
    operation = models.CharField(max_length=64)
    result_type = models.CharField(max_length=32, blank=True)
    result_signature = models.CharField(max_length=64, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    caller_oid = models.CharField(max_length=64, blank=True)
    caller_appid = models.CharField(max_length=64, blank=True)
    caller_upn = models.CharField(max_length=256, blank=True)
    caller_ip = models.CharField(max_length=64, blank=True)
    # x-ms-client-request-id as sent; `correlation_key` is it normalised (lower-case hex
    # without dashes when it is a GUID) so it joins the portal's request ids.
    correlation_id = models.CharField(max_length=128, blank=True)
    correlation_key = models.CharField(max_length=128, blank=True, db_index=True)
    request_uri = models.CharField(max_length=1024, blank=True)
    object_id = models.CharField(max_length=1024, blank=True)
    # "keys/<name>" for a key's events, "" otherwise: the key timeline's index.
    key_name = models.CharField(max_length=127, blank=True)
    source = models.CharField(max_length=16, default="storage")
    raw = models.JSONField(default=dict)
    ingested = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [
            models.Index(fields=["hsm_name", "time"], name="hsmaudit_hsm_time"),
            models.Index(fields=["hsm_name", "key_name", "time"], name="hsmaudit_key_time"),
            models.Index(fields=["caller_oid", "time"], name="hsmaudit_oid_time"),
            models.Index(fields=["time"], name="hsmaudit_time"),
        ]

    def __str__(self) -> str:
        return f"{self.hsm_name} {self.operation} {self.result_signature} {self.time:%Y-%m-%d %H:%M:%S}"


class HsmAuditCursor(models.Model):
    """How far ingestion has read one source: an append blob (bytes + etag) or a workspace."""

    source = models.CharField(max_length=1200, unique=True)
    offset = models.BigIntegerField(default=0)
    etag = models.CharField(max_length=128, blank=True)
    watermark = models.DateTimeField(null=True, blank=True)
    events = models.BigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.source} @{self.offset}"


class AuditCheckpoint(models.Model):
    """A signed statement "the chain had hash H at seq N", made with an HSM key.

    kind `head`: the chain head on a schedule; kind `anchor`: the last row a retention purge
    removes, so verification can start from the oldest kept row. The same JSON is stored in
    blob storage (container audit-checkpoints), outside the database it attests.
    """

    class Kind(models.TextChoices):
        HEAD = "head", "Chain head"
        ANCHOR = "anchor", "Retention anchor"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.HEAD)
    seq = models.BigIntegerField(db_index=True)
    hash = models.CharField(max_length=64)
    time = models.DateTimeField()
    key_id = models.CharField(max_length=1024)
    algorithm = models.CharField(max_length=16)
    signature = models.TextField()
    blob_name = models.CharField(max_length=512, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-seq", "-id"]

    def __str__(self) -> str:
        return f"checkpoint {self.kind} #{self.seq}"


class AuditVerification(models.Model):
    """One run of audit_verify: what it checked and the first bad seq it found."""

    started = models.DateTimeField()
    finished = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, default="command")
    actor_name = models.CharField(max_length=150, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    rows = models.BigIntegerField(default=0)
    first_seq = models.BigIntegerField(null=True, blank=True)
    head_seq = models.BigIntegerField(default=0)
    ok = models.BooleanField(null=True)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    checkpoints = models.PositiveIntegerField(default=0)
    checkpoint_problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started", "-id"]

    def __str__(self) -> str:
        return f"verification {self.started:%Y-%m-%d %H:%M} ok={self.ok}"
