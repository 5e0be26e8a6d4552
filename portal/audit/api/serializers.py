from rest_framework import serializers

from portal.audit.models import AuditEvent


class AuditEventOutput(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["seq", "time", "actor_id", "actor_name", "role", "request_id",
                  "client_request_id", "action",
                  "target", "outcome", "detail", "prev_hash", "hash"]
