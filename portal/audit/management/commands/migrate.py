"""manage.py migrate as the owner role when DATABASE_OWNER_URL is set, then the runtime grants.

Django's own migrate otherwise: with DATABASE_OWNER_URL unset (SQLite, tests, one role)
nothing changes.
"""
from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import DEFAULT_DB_ALIAS

from portal.audit.roles import RoleSetupError, apply_runtime_grants, owner_connection, runtime_role


class Command(DjangoMigrate):
    help = (DjangoMigrate.help + " With DATABASE_OWNER_URL set, runs as that role and then "
            "grants DATABASE_URL's role its runtime privileges (see audit_db_roles).")

    def handle(self, *args, **options):
        if not settings.DATABASE_OWNER_URL or options["database"] != DEFAULT_DB_ALIAS:
            return super().handle(*args, **options)
        runtime = runtime_role()
        try:
            with owner_connection() as connection:
                super().handle(*args, **options)
                apply_runtime_grants(connection, runtime=runtime)
        except RoleSetupError as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"]:
            self.stdout.write(f"Granted runtime role {runtime!r}: audit events INSERT/SELECT "
                              "only, chain head SELECT/UPDATE.")
