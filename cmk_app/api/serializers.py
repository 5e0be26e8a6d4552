from rest_framework import serializers

from cmk_app.models import CmkBinding
from cmk_app.services import IDENTITY_NAME, MAX_DESCRIPTION


class CmkBindingOutput(serializers.ModelSerializer):
    hsm = serializers.SlugRelatedField(slug_field="name", read_only=True)
    job = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = CmkBinding
        fields = ["id", "hsm", "key_name", "resource_id", "kind", "resource_name",
                  "resource_group", "location", "identity_id", "identity_principal_id",
                  "identity_created", "role_assignment", "versionless", "version_in_use",
                  "status", "origin", "error", "job", "last_seen_at", "created", "updated"]


class ReasonInput(serializers.Serializer):
    justification = serializers.CharField(required=False, allow_blank=True, max_length=2000,
                                          default="", help_text="Why, for the approvers")
    ticket = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")


class AttachInput(ReasonInput):
    hsm = serializers.CharField(max_length=24)
    key_name = serializers.CharField(max_length=127)
    resource_id = serializers.CharField(max_length=512,
                                        help_text="A storage account or PostgreSQL/MySQL "
                                                  "flexible server resource id")
    identity_id = serializers.CharField(max_length=512, required=False, allow_blank=True,
                                        default="", help_text="An existing user-assigned "
                                                              "identity; empty: create one")
    identity_name = serializers.RegexField(IDENTITY_NAME, max_length=128, required=False,
                                           allow_blank=True, default="",
                                           help_text="Name of the identity to create")
    grant = serializers.BooleanField(default=True, help_text="Grant Managed HSM Crypto Service "
                                                             "Encryption User at /keys/<key>")


class NetworkInput(ReasonInput):
    public_network_access = serializers.ChoiceField(choices=["Enabled", "Disabled"])


class PrivateEndpointInput(ReasonInput):
    status = serializers.ChoiceField(choices=["Approved", "Rejected"])
    description = serializers.CharField(required=False, allow_blank=True, default="",
                                        max_length=MAX_DESCRIPTION)


class RegionInput(serializers.Serializer):
    region = serializers.RegexField(r"^[A-Za-z][A-Za-z0-9 ]{2,39}$", max_length=40)


class RegionOutput(serializers.Serializer):
    name = serializers.CharField()
    is_primary = serializers.BooleanField()
    provisioning_state = serializers.CharField()


class PrivateEndpointOutput(serializers.Serializer):
    name = serializers.CharField()
    id = serializers.CharField()
    status = serializers.CharField()
    description = serializers.CharField()
    private_endpoint = serializers.CharField()
    provisioning_state = serializers.CharField()


class NetworkAclsOutput(serializers.Serializer):
    default_action = serializers.CharField()
    bypass = serializers.CharField()
    ip_rules = serializers.ListField(child=serializers.CharField())
    virtual_network_rules = serializers.ListField(child=serializers.CharField())


class HsmResourceOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    location = serializers.CharField()
    sku = serializers.CharField()
    provisioning_state = serializers.CharField()
    purge_protection = serializers.BooleanField()
    soft_delete_retention_days = serializers.IntegerField(allow_null=True)
    public_network_access = serializers.CharField()
    network_acls = NetworkAclsOutput()
    private_endpoint_connections = PrivateEndpointOutput(many=True)
    regions = RegionOutput(many=True)
    identity_type = serializers.CharField()
    principal_id = serializers.CharField()
    security_domain = serializers.CharField()
