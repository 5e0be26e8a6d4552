from rest_framework import serializers

from portal.gateway.models import HsmInstance


class HsmOutput(serializers.ModelSerializer):
    class Meta:
        model = HsmInstance
        fields = ["name", "uri", "arm_resource_id", "region", "role", "created"]


class HsmInput(serializers.Serializer):
    name = serializers.CharField(max_length=24)
    uri = serializers.URLField(max_length=255)
    arm_resource_id = serializers.CharField(max_length=512, required=False, default="",
                                            allow_blank=True)
    region = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    role = serializers.ChoiceField(choices=HsmInstance.Role.choices, required=False,
                                   default=HsmInstance.Role.PRIMARY)
