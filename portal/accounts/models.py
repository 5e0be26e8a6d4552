"""API tokens (kept only as hashes, with an expiry) and sign-in throttle counts."""
import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX_LEN = 8


def token_digest(raw: str) -> str:
    """SHA-256 of a raw token: what the database keeps (tokens are random, so no salt)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiToken(models.Model):
    """A user's API token. The raw token is shown once; only its hash and prefix are stored."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="api_token")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=TOKEN_PREFIX_LEN)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(help_text="After this the token is refused (401).")
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_expired(self) -> bool:
        return self.expires <= timezone.now()

    @staticmethod
    def new_raw() -> str:
        return secrets.token_urlsafe(32)


class SignInThrottle(models.Model):
    """Failed sign-ins counted for one key: an account, an address, or the pair of both.

    Keys never hold a typed username: an existing account is `user:<id>`, any other name
    an HMAC of its normalised form; a device is a random id from its signed cookie. See portal/accounts/throttle.py for the policy.
    """

    class Scope(models.TextChoices):
        PAIR = "pair", "Account from one address"
        ADDRESS = "address", "Address, all accounts"
        ACCOUNT = "account", "Account, all addresses"
        DEVICE = "device", "Account from a browser that signed in to it before"

    key = models.CharField(max_length=200, unique=True)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    failures = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0, help_text="Attempts refused while blocked.")
    last_failure = models.DateTimeField(null=True, blank=True, db_index=True)
    blocked_until = models.DateTimeField(null=True, blank=True)
    lockout_audited = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.key}: {self.failures} failures"


class TablePreference(models.Model):
    """How one user likes one table: the columns they hid and the row density.

    Display only, never security state; changes are still audited (preference.set) since
    every write the portal makes is.
    """

    class Density(models.TextChoices):
        COMFORTABLE = "comfortable", "Comfortable"
        COMPACT = "compact", "Compact"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="table_preferences")
    table = models.CharField(max_length=32)
    hidden_columns = models.JSONField(default=list, blank=True)
    density = models.CharField(max_length=16, choices=Density.choices,
                               default=Density.COMFORTABLE)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "table"],
                                               name="table_preference_unique")]

    def __str__(self) -> str:
        return f"{self.table} of {self.user_id}"


class DirectoryIdentity(models.Model):
    """Who a portal user is in the directory: Entra ID's object id and tenant id.

    Identity comparisons (maker-checker: "not the requester") use the object id, never a
    username, display name or UPN, so one person reaching the portal through two doors
    (an Entra sign-in and a break-glass account linked to the same object id, a session
    and an API token) is one principal. A user without a row is a local principal of its
    own (`local:<pk>`); see portal/accounts/identity.py.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="directory_identity")
    object_id = models.CharField(max_length=64, db_index=True,
                                 help_text="The directory object id (oid claim).")
    tenant_id = models.CharField(max_length=64, blank=True,
                                 help_text="The directory tenant id (tid claim).")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "directory identities"

    def __str__(self) -> str:
        return f"{self.object_id} ({self.user})"
