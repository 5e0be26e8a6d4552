from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "portal.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from portal.permissions import ADMIN, role_grant, sync_roles

        # Admins list and revoke everyone's API tokens; others only their own.
        role_grant(ADMIN, "accounts.view_apitoken", "accounts.delete_apitoken")

        # A session's absolute lifetime counts from its sign-in, whatever the door.
        from django.contrib.auth.signals import user_logged_in

        from portal.accounts.middleware import stamp_sign_in
        user_logged_in.connect(stamp_sign_in, dispatch_uid="portal.stamp_sign_in")

        # After every migrate (all apps' permissions exist by the last signal).
        post_migrate.connect(sync_roles, dispatch_uid="portal.sync_roles")
