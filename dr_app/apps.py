from django.apps import AppConfig


class DrAppConfig(AppConfig):
    name = "dr_app"
    verbose_name = "Backup, restore and disaster recovery"
