"""Key API input and output. Inputs parse types; the services enforce the rules."""
from rest_framework import serializers

from keys_app.models import KeyRecord, KeyVersionRecord
from keys_app.spec import KEY_TYPES, PRESETS

OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]


class LifetimeActionIO(serializers.Serializer):
    action = serializers.CharField(max_length=10)
    time_after_create = serializers.CharField(max_length=20, required=False, allow_null=True)
    time_before_expiry = serializers.CharField(max_length=20, required=False, allow_null=True)


class RotationPolicyIO(serializers.Serializer):
    expires_after = serializers.CharField(max_length=20, required=False, allow_null=True,
                                          help_text="ISO-8601, P28D to P100Y")
    lifetime_actions = LifetimeActionIO(many=True)
    confirm_name = serializers.CharField(required=False, write_only=True, help_text=(
        "The key name typed again, when the policy stops automatic rotation"))


class KeyCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="1-127 ASCII letters, digits, hyphens")
    preset = serializers.ChoiceField(choices=list(PRESETS), required=False)
    kty = serializers.CharField(max_length=16, required=False, help_text=", ".join(KEY_TYPES))
    key_size = serializers.IntegerField(required=False, min_value=128, max_value=4096)
    curve = serializers.CharField(max_length=16, required=False)
    public_exponent = serializers.IntegerField(required=False, min_value=3, max_value=65537)
    key_ops = serializers.ListField(child=serializers.CharField(max_length=16), required=False)
    not_before = serializers.DateTimeField(required=False, allow_null=True,
                                           help_text="1970-01-01 to 2099-12-31 (UTC)")
    expires = serializers.DateTimeField(required=False, allow_null=True,
                                        help_text="1970-01-01 to 2099-12-31 (UTC)")
    tags = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=256),
                                 required=False)
    rotation_policy = RotationPolicyIO(required=False, allow_null=True, help_text=(
        "Omit for the standards' default policy; null for none."))
    # Import (BYOK): a JSON Web Key instead of kty/size.
    key = serializers.DictField(required=False, help_text="JWK to import (with private "
                                "members, or key_hsm for a BYOK blob)")

    def request_data(self) -> dict:
        data = dict(self.validated_data)
        if "rotation_policy" in self.initial_data and self.initial_data["rotation_policy"] is None:
            data["rotation_policy"] = "none"
        return data


class KeyUpdateInput(serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    not_before = serializers.DateTimeField(required=False, allow_null=True)
    expires = serializers.DateTimeField(required=False, allow_null=True)
    key_ops = serializers.ListField(child=serializers.CharField(max_length=16), required=False)
    tags = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=256),
                                 required=False)
    confirm_name = serializers.CharField(required=False, help_text="The key name, to disable it")
    justification = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="Why, for the approvers (disabling a key that resources use needs approval)")
    ticket = serializers.CharField(required=False, allow_blank=True, max_length=100)


class ConfirmInput(serializers.Serializer):
    confirm_name = serializers.CharField(help_text="The key name typed again")
    justification = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="Why, for the approvers (actions that need approval)")
    ticket = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                   help_text="Change or incident ticket reference")


class BackupIO(serializers.Serializer):
    value = serializers.CharField(help_text="base64 of the key backup blob")


class KeyVersionOutput(serializers.ModelSerializer):
    class Meta:
        model = KeyVersionRecord
        fields = ["version", "enabled", "not_before", "expires", "created_on", "updated_on"]


class KeyOutput(serializers.ModelSerializer):
    hsm = serializers.CharField(source="hsm.name")

    class Meta:
        model = KeyRecord
        fields = ["hsm", "name", "version", "state", "kty", "key_size", "curve", "key_ops",
                  "enabled", "not_before", "expires", "created_on", "updated_on", "tags",
                  "exportable", "has_release_policy", "recoverable_days", "recovery_level",
                  "rotation_policy", "version_count", "deleted_on", "scheduled_purge_on",
                  "drift", "drift_note", "synced_at"]


class KeyDetailOutput(KeyOutput):
    versions = KeyVersionOutput(many=True, read_only=True)

    class Meta(KeyOutput.Meta):
        fields = KeyOutput.Meta.fields + ["versions"]
