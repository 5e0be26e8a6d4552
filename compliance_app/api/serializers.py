from rest_framework import serializers

from compliance_app.models import EvidencePack, PostureResult, PostureRun


class PostureResultOutput(serializers.ModelSerializer):
    hsm = serializers.CharField(source="hsm_name", help_text="'' for estate-wide checks")
    check = serializers.CharField(source="check_id")
    flipped = serializers.BooleanField(help_text="its status differs from the run before")

    class Meta:
        model = PostureResult
        fields = ["check", "title", "hsm", "status", "summary", "evidence", "fix", "fix_url",
                  "previous_status", "flipped"]


class PostureRunOutput(serializers.ModelSerializer):
    job = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = PostureRun
        fields = ["id", "job", "trigger", "actor_name", "started", "finished", "passed", "failed",
                  "other"]


class PostureRunDetailOutput(PostureRunOutput):
    results = serializers.SerializerMethodField()

    class Meta(PostureRunOutput.Meta):
        fields = PostureRunOutput.Meta.fields + ["results"]

    def get_results(self, run) -> list[dict]:
        from compliance_app.selectors import posture_results

        return PostureResultOutput(posture_results(run=run), many=True).data


class PostureOverviewOutput(serializers.Serializer):
    run = PostureRunDetailOutput(allow_null=True, help_text="the newest finished run, or null")


class EvidencePackOutput(serializers.ModelSerializer):
    job = serializers.PrimaryKeyRelatedField(read_only=True)
    pdf_url = serializers.SerializerMethodField()
    json_url = serializers.SerializerMethodField()

    class Meta:
        model = EvidencePack
        fields = ["id", "job", "status", "error", "requested_by_name", "created", "finished",
                  "pdf_bytes", "pdf_sha256", "json_sha256", "pdf_url", "json_url"]

    def _url(self, pack, fmt: str) -> str | None:
        from django.urls import reverse

        if pack.status != EvidencePack.Status.READY:
            return None
        return reverse("api:evidence-pack-download", kwargs={"pack_id": pack.pk, "fmt": fmt})

    def get_pdf_url(self, pack) -> str | None:
        return self._url(pack, "pdf")

    def get_json_url(self, pack) -> str | None:
        return self._url(pack, "json")
