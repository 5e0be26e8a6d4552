from django.apps import AppConfig


class KeysAppConfig(AppConfig):
    name = "keys_app"
    verbose_name = "Keys, local RBAC and CMK"
