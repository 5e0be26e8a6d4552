"""Serializers of dr_app's API: bounded inputs, outputs of catalog rows, schedules, drills."""
from rest_framework import serializers

from dr_app.models import AuthMode, BackupRecord, BackupSchedule, DrDrill

CONTAINER = {"max_length": 63, "required": False, "allow_blank": True,
             "help_text": "Blob container (default DR_BACKUP_CONTAINER)."}


class BackupStartInput(serializers.Serializer):
    container = serializers.CharField(**CONTAINER)
    auth_mode = serializers.ChoiceField(choices=AuthMode.choices, default=AuthMode.SAS,
                                        help_text="How the HSM reaches storage: a short-lived "
                                                  "SAS made by the portal, or its managed "
                                                  "identity.")


class RestoreStartInput(BackupStartInput):
    folder = serializers.CharField(max_length=128,
                                   help_text="Backup folder, e.g. mhsm-myhsm-2026113009151234.")
    key_name = serializers.CharField(max_length=127, required=False, allow_blank=True,
                                     help_text="Restore only this key (selective); empty "
                                               "restores the whole HSM (needs approval).")
    approval_id = serializers.IntegerField(required=False, min_value=1,
                                           help_text="An approved request for this restore.")
    justification = serializers.CharField(max_length=500, required=False, allow_blank=True)


class RestoreCheckInput(BackupStartInput):
    folder = serializers.CharField(max_length=128)


class CheckOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()


class BackupOutput(serializers.ModelSerializer):
    hsm = serializers.SlugRelatedField(slug_field="name", read_only=True)
    job = serializers.PrimaryKeyRelatedField(read_only=True)
    schedule = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = BackupRecord
        fields = ["id", "hsm", "source_hsm_name", "container", "folder", "folder_url",
                  "auth_mode", "status", "key_count", "size_bytes", "blob_count", "started",
                  "finished", "job", "schedule", "error", "seen_in_storage"]


class ScheduleInput(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    every_hours = serializers.IntegerField(min_value=1, max_value=168)
    at_minute = serializers.IntegerField(min_value=0, max_value=59, default=0)
    container = serializers.CharField(**CONTAINER)
    auth_mode = serializers.ChoiceField(choices=AuthMode.choices, default=AuthMode.SAS)
    retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False,
                                              allow_null=True)
    keep_last = serializers.IntegerField(min_value=1, max_value=1000, required=False,
                                         allow_null=True)
    enabled = serializers.BooleanField(default=True)


class ScheduleOutput(serializers.ModelSerializer):
    hsm = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = BackupSchedule
        fields = ["id", "hsm", "name", "container", "auth_mode", "every_hours", "at_minute",
                  "retention_days", "keep_last", "enabled", "next_run", "last_run", "last_job"]


class DrillStartInput(serializers.Serializer):
    primary = serializers.CharField(max_length=24)
    secondary = serializers.CharField(max_length=24)
    confirm_name = serializers.CharField(max_length=24,
                                         help_text="The secondary's name: its keys are replaced.")
    container = serializers.CharField(**CONTAINER)
    auth_mode = serializers.ChoiceField(choices=AuthMode.choices, default=AuthMode.SAS)


class DrillOutput(serializers.ModelSerializer):
    job = serializers.PrimaryKeyRelatedField(read_only=True)
    status = serializers.CharField(source="job.status", read_only=True)
    progress = serializers.IntegerField(source="job.progress", read_only=True)
    step = serializers.CharField(source="job.step", read_only=True)

    class Meta:
        model = DrDrill
        fields = ["id", "primary_name", "secondary_name", "container", "job", "status",
                  "progress", "step", "created", "finished", "passed", "rto_seconds",
                  "rpo_seconds", "report"]
