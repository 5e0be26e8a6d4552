"""manage.py seed_demo_users: the demo admin, approver and auditor for `make run`."""
import os

from django.core.management.base import BaseCommand

from portal.accounts.services import user_ensure
from portal.permissions import ROLES, sync_roles


class Command(BaseCommand):
    help = ("Create the users admin, approver and auditor (one per role) if missing. "
            "Passwords come from PORTAL_DEMO_PASSWORD_<ROLE> or are generated and printed once.")

    def handle(self, *args, **options):
        sync_roles()
        for role in ROLES:
            _, password = user_ensure(username=role, role=role,
                                      password=os.environ.get(f"PORTAL_DEMO_PASSWORD_{role.upper()}"))
            if password:
                self.stdout.write(f"Created user {role!r} (role {role}) with password {password}")
            else:
                self.stdout.write(f"User {role!r} exists; its password is unchanged.")
