from rest_framework import serializers

from portal.jobs.models import Job


class JobOutput(serializers.ModelSerializer):
    hsm = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Job
        fields = ["id", "kind", "status", "progress", "step", "log", "params", "result", "error",
                  "actor_name", "hsm", "external_operation_id", "created", "started", "finished"]
