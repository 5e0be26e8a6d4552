from django.db import migrations, models


class Migration(migrations.Migration):
    """The caller's X-Request-ID in its own column; existing rows get '' (and keep their hashes)."""

    dependencies = [("audit", "0003_guard_truncate_and_head")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="client_request_id",
            field=models.CharField(blank=True, db_default="", db_index=True, default="",
                                   max_length=64),
        ),
    ]
