"""Local RBAC API input and output. Inputs parse types; the services enforce the rules."""
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from access_app.models import AccessRequest, ReviewCampaign, ReviewItem, RoleAssignmentRecord, \
    RoleDefinitionRecord
from portal.gateway.rbac import DATA_ACTIONS

# One choice set for data actions and not-data actions (named in SPECTACULAR_SETTINGS).
DATA_ACTION_CHOICES = list(DATA_ACTIONS)


class PermissionOutput(serializers.Serializer):
    actions = serializers.ListField(child=serializers.CharField())
    not_actions = serializers.ListField(child=serializers.CharField())
    data_actions = serializers.ListField(child=serializers.CharField())
    not_data_actions = serializers.ListField(child=serializers.CharField())


class RoleDefinitionOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="definition_id")
    permissions = PermissionOutput(many=True)

    class Meta:
        model = RoleDefinitionRecord
        fields = ["name", "id", "role_name", "role_type", "description", "permissions",
                  "synced_at"]


class RoleDefinitionInput(serializers.Serializer):
    role_name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                        default="")
    data_actions = serializers.ListField(
        child=serializers.ChoiceField(choices=DATA_ACTION_CHOICES), max_length=len(DATA_ACTIONS),
        help_text="Managed HSM data actions, e.g. Microsoft.KeyVault/managedHsm/keys/read/action")
    not_data_actions = serializers.ListField(
        child=serializers.ChoiceField(choices=DATA_ACTION_CHOICES), max_length=len(DATA_ACTIONS),
        required=False, default=list)


class ConfirmInput(serializers.Serializer):
    confirm_name = serializers.CharField(max_length=200, help_text="The role name typed again")


class RoleAssignmentOutput(serializers.ModelSerializer):
    principal_name = serializers.SerializerMethodField()
    drift = serializers.BooleanField(read_only=True)
    access_request = serializers.PrimaryKeyRelatedField(read_only=True)
    expires_at = serializers.SerializerMethodField()

    class Meta:
        model = RoleAssignmentRecord
        fields = ["name", "scope", "principal_id", "principal_name", "role_definition_id",
                  "role_name", "origin", "drift", "access_request", "first_seen_at",
                  "expires_at"]

    def get_principal_name(self, row) -> str:
        return (self.context.get("names") or {}).get(row.principal_id.lower(), "")

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_expires_at(self, row):
        request = row.access_request
        return request.expires_at.isoformat() if request and request.expires_at else None


class EffectiveAccessOutput(serializers.Serializer):
    assignment = serializers.CharField(source="assignment.name")
    scope = serializers.CharField(source="assignment.scope")
    principal_id = serializers.CharField(source="assignment.principal_id")
    principal_name = serializers.CharField()
    role_name = serializers.CharField(source="assignment.role_name")
    can_unwrap = serializers.BooleanField()
    since = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class AccessRequestInput(serializers.Serializer):
    principal_id = serializers.CharField(max_length=64, help_text="Directory object id (GUID)")
    role = serializers.CharField(max_length=200, help_text="Role definition name (GUID), id, "
                                                           "or role name")
    scope = serializers.CharField(max_length=140, help_text="/, /keys or /keys/<key name>")
    justification = serializers.CharField(max_length=2000)
    ticket = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    duration_hours = serializers.IntegerField(min_value=1, max_value=8760,
                                              help_text="1 to ACCESS_MAX_DURATION_HOURS")


class AccessRequestCreateInput(AccessRequestInput):
    hsm = serializers.CharField(max_length=64)


class AdoptInput(serializers.Serializer):
    justification = serializers.CharField(max_length=2000)
    ticket = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    duration_hours = serializers.IntegerField(min_value=1, max_value=8760)


class RevokeInput(serializers.Serializer):
    justification = serializers.CharField(max_length=2000, required=False, allow_blank=True,
                                          default="")


class AccessRequestOutput(serializers.ModelSerializer):
    hsm = serializers.CharField(source="hsm.name")

    class Meta:
        model = AccessRequest
        fields = ["id", "hsm", "kind", "principal_id", "principal_name", "role_definition_id",
                  "role_name", "scope", "justification", "ticket", "duration_hours",
                  "assignment_name", "requested_by_name", "correlation_id",
                  "approval_request_id", "status", "error", "created_at", "granted_at",
                  "expires_at", "ended_at"]


class ReviewItemOutput(serializers.ModelSerializer):
    class Meta:
        model = ReviewItem
        fields = ["id", "assignment_name", "principal_id", "role_name", "scope", "owner",
                  "decision", "decided_by_name", "decided_at", "comment", "revoke_approval_id"]


class CampaignOutput(serializers.ModelSerializer):
    hsm = serializers.CharField(source="hsm.name")
    items = ReviewItemOutput(many=True, read_only=True)

    class Meta:
        model = ReviewCampaign
        fields = ["id", "hsm", "name", "started_by_name", "started_at", "ends_at", "status",
                  "closed_at", "correlation_id", "items"]


class CampaignInput(serializers.Serializer):
    hsm = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=120)
    days = serializers.IntegerField(min_value=1, max_value=90)


class ReviewAnswerInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["keep", "revoke"])
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
