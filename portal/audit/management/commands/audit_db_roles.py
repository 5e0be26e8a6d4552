"""manage.py audit_db_roles: give the runtime database role only what the audit trail allows."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.audit.roles import (RoleSetupError, apply_runtime_grants, owner_connection,
                                runtime_role, setup_sql)


class Command(BaseCommand):
    help = ("As the owner role (DATABASE_OWNER_URL), grant DATABASE_URL's role ordinary "
            "privileges, but only INSERT/SELECT on audit events and SELECT/UPDATE on the "
            "chain head. --sql prints the one-time role setup for a DBA instead.")

    def add_arguments(self, parser):
        parser.add_argument("--sql", action="store_true",
                            help="print the psql script that creates both roles; run nothing")
        parser.add_argument("--owner", default="portal_owner", help="owner role name (--sql)")
        parser.add_argument("--runtime", default="", help="runtime role name (--sql; "
                            "default: DATABASE_URL's user, else portal_app)")
        parser.add_argument("--database", default="", help="database name (--sql)")

    def handle(self, *args, **options):
        if options["sql"]:
            database = options["database"] or str(settings.DATABASES["default"]["NAME"])
            self.stdout.write(setup_sql(owner=options["owner"],
                                        runtime=options["runtime"] or runtime_role() or "portal_app",
                                        database=database), ending="")
            return
        if not settings.DATABASE_OWNER_URL:
            raise CommandError("Set DATABASE_OWNER_URL to the role that owns the tables "
                               "(DATABASE_URL stays the runtime role).")
        runtime = runtime_role()
        try:
            with owner_connection() as connection:
                statements = apply_runtime_grants(connection, runtime=runtime)
        except RoleSetupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Granted runtime role {runtime!r} ({len(statements)} statements): "
                          "audit events INSERT/SELECT only, chain head SELECT/UPDATE.")
