from rest_framework import serializers

from portal.approvals import registry
from portal.approvals.models import ApprovalDecision, ApprovalRequest


class ApprovalDecisionOutput(serializers.ModelSerializer):
    class Meta:
        model = ApprovalDecision
        fields = ["approver_name", "approver_principal", "decision", "comment", "created"]


class ApprovalRequestOutput(serializers.ModelSerializer):
    operation_label = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    decisions = ApprovalDecisionOutput(many=True, read_only=True)
    job = serializers.PrimaryKeyRelatedField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = ["id", "operation", "operation_label", "target", "payload", "payload_hash",
                  "context", "requester_name", "requester_principal", "justification",
                  "ticket", "status", "required_approvals", "policy_name", "correlation_id",
                  "created", "expires", "decided", "finished", "job", "failure_reason",
                  "decisions", "url"]

    def get_operation_label(self, obj) -> str:
        return registry.label(obj.operation)

    def get_status(self, obj) -> str:
        """The status now: an open request past its expiry reads 'expired'."""
        return ApprovalRequest.Status.EXPIRED.value if obj.is_expired else obj.status

    def get_url(self, obj) -> str:
        return obj.get_absolute_url()


class ApprovalPendingOutput(serializers.Serializer):
    approval_request = ApprovalRequestOutput()


class ApprovalDecideInput(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000,
                                    default="")
