from datetime import timedelta

from django.db import migrations, models

EXISTING_TOKEN_DAYS = 90


def expire_existing(apps, schema_editor):
    """Tokens issued before expiry existed get the default lifetime from their creation."""
    ApiToken = apps.get_model("accounts", "ApiToken")
    for token in ApiToken.objects.filter(expires__isnull=True):
        token.expires = token.created + timedelta(days=EXISTING_TOKEN_DAYS)
        token.save(update_fields=["expires"])


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_sign_in_throttle"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(expire_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="expires",
            field=models.DateTimeField(help_text="After this the token is refused (401)."),
        ),
    ]
