from rest_framework import serializers

from portal.gateway.models import HsmInstance


class HsmOutput(serializers.ModelSerializer):
    class Meta:
        model = HsmInstance
        fields = ["name", "uri", "arm_resource_id", "region", "role", "created"]


class HsmInput(serializers.Serializer):
    name = serializers.CharField(max_length=24)
    # Checked by the registry's rule (https://<name>.<Managed HSM domain> or a named
    # emulator host), which says in one sentence what is wrong.
    uri = serializers.CharField(max_length=255,
                                help_text="https://<name>.managedhsm.azure.net (the "
                                          "configured cloud's Managed HSM domain)")
    arm_resource_id = serializers.CharField(max_length=512, required=False, default="",
                                            allow_blank=True)
    region = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    role = serializers.ChoiceField(choices=HsmInstance.Role.choices, required=False,
                                   default=HsmInstance.Role.PRIMARY)


class HsmDeregisterInput(serializers.Serializer):
    confirm_name = serializers.CharField(max_length=24, help_text="the HSM's name, typed again")


class HsmDeregisterOutput(serializers.Serializer):
    cached_rows = serializers.IntegerField(help_text="inventory rows removed with the HSM")
    jobs_kept = serializers.IntegerField(help_text="jobs kept, no longer linked to an HSM")
    queued_jobs_failed = serializers.IntegerField(help_text="queued jobs failed before they ran")
