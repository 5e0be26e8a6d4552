from rest_framework import serializers

from portal.accounts.models import ApiToken


class TokenOutput(serializers.ModelSerializer):
    """A token's metadata; the token itself is never stored, so never shown."""

    user = serializers.CharField(source="user.get_username", read_only=True)
    expired = serializers.BooleanField(source="is_expired", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "user", "prefix", "created", "expires", "expired", "last_used"]
