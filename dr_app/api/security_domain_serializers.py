"""Shapes of the security-domain API: inputs with their bounds, outputs without secrets."""
from rest_framework import serializers

from dr_app.models_sd import Custodian, SecurityDomainState


class CustodianInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    certificate = serializers.CharField(max_length=16 * 1024,
                                        help_text="The wrapping certificate, PEM (public).")


class ActivateInput(serializers.Serializer):
    quorum = serializers.IntegerField(min_value=2, max_value=10)
    custodians = CustodianInput(many=True, min_length=3, max_length=10)


class UploadInput(serializers.Serializer):
    value = serializers.CharField(required=False, max_length=None, trim_whitespace=True,
                                  help_text="The prepared security domain as text (JSON body).")
    file = serializers.FileField(required=False,
                                 help_text="The prepared security domain (multipart body).")
    justification = serializers.CharField(required=False, allow_blank=True, max_length=1000,
                                          default="")
    ticket = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    source_hsm = serializers.CharField(required=False, allow_blank=True, max_length=24,
                                       default="",
                                       help_text="The registered HSM the security domain was "
                                                 "saved from: its custodians and quorum are "
                                                 "copied once the restore succeeds.")

    def validate(self, attrs):
        if bool(attrs.get("value")) == bool(attrs.get("file")):
            raise serializers.ValidationError("Give the prepared security domain as `file` "
                                              "(multipart) or as `value` (JSON), not both.")
        return attrs


class QuorumInput(serializers.Serializer):
    quorum = serializers.IntegerField(min_value=2, max_value=10)


class ProveInput(serializers.Serializer):
    challenge = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    signature = serializers.CharField(max_length=4096,
                                      help_text="The RSA SHA-256 signature of the challenge "
                                                "text, base64.")


class CustodianOutput(serializers.ModelSerializer):
    hsm = serializers.SlugRelatedField(slug_field="name", read_only=True)
    custody = serializers.SerializerMethodField()
    stale = serializers.SerializerMethodField()

    class Meta:
        model = Custodian
        fields = ["id", "hsm", "name", "email", "status", "fingerprint_sha256", "subject",
                  "not_after", "key_bits", "added", "added_by_name", "last_proven",
                  "last_proven_by_name", "custody", "stale", "certificate_pem"]

    def get_custody(self, obj) -> str:
        from dr_app.security_domain_selectors import custody_state

        return custody_state(obj)[1]

    def get_stale(self, obj) -> bool:
        from dr_app.security_domain_selectors import custody_state

        return custody_state(obj)[0] in ("warn", "bad")


class FindingOutput(serializers.Serializer):
    hsm_name = serializers.CharField()
    custodian_id = serializers.IntegerField(allow_null=True)
    custodian_name = serializers.CharField()
    problem = serializers.CharField()
    message = serializers.CharField()
    tone = serializers.CharField()


class SecurityDomainOutput(serializers.ModelSerializer):
    hsm = serializers.SlugRelatedField(slug_field="name", read_only=True)
    current_job = serializers.PrimaryKeyRelatedField(read_only=True)
    findings = FindingOutput(many=True, read_only=True)
    custodians = serializers.IntegerField(read_only=True)

    class Meta:
        model = SecurityDomainState
        fields = ["hsm", "activation", "activation_detail", "checked", "quorum", "activated",
                  "recovered", "exchange_key_sha256", "exchange_key_fetched", "current_job",
                  "custodians", "findings"]


class ExchangeKeyOutput(serializers.Serializer):
    sha256 = serializers.CharField()
    pem = serializers.CharField(help_text="The exchange key as the CLI's init-recovery writes "
                                          "it (certificate PEM).")
    jwk = serializers.DictField(help_text="The exchange key as the HSM sent it (public JWK).")


class ChallengeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    expires = serializers.DateTimeField()
    text = serializers.CharField(help_text="The exact text to sign (UTF-8).")
