"""The HSMs the portal manages."""
from django.core.validators import RegexValidator
from django.db import models

HSM_NAME = RegexValidator(r"^[a-z][a-z0-9-]{0,23}$",
                          "Lower-case letters, digits and hyphens, starting with a letter "
                          "(at most 24).")


class HsmInstance(models.Model):
    """One Managed HSM: where its data plane is, and its ARM resource for CMK and settings."""

    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary"
        SECONDARY = "secondary", "Secondary"

    name = models.CharField(max_length=24, unique=True, validators=[HSM_NAME])
    uri = models.URLField(max_length=255, unique=True)
    arm_resource_id = models.CharField(max_length=512, blank=True)
    region = models.CharField(max_length=64, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.PRIMARY)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "HSM"

    def __str__(self) -> str:
        return self.name
