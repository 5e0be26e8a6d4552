"""PostgreSQL roles for the audit trail: an owner that migrates, a runtime role that appends.

The runtime role (DATABASE_URL's) gets ordinary privileges on every table except the audit
tables: INSERT and SELECT on events, SELECT and UPDATE on the chain head (the triggers of
migration 0003 let the head move only one appended event forward). The owner role
(DATABASE_OWNER_URL's) owns the tables and is used only by `migrate` and `audit_db_roles`.
"""
from contextlib import contextmanager

import dj_database_url
from django.conf import settings
from django.db import connections

EVENTS, HEAD = "audit_auditevent", "audit_auditchainhead"
CHECKPOINTS = "audit_auditcheckpoint"


class RoleSetupError(Exception):
    """The roles cannot give the separation asked for (same role, superuser, membership)."""


def runtime_grants_sql(*, owner: str, runtime: str, quote=None) -> list[str]:
    """The GRANT/REVOKE statements, run by the owner, that give the runtime role its rights.

    Idempotent; default privileges cover tables that later migrations create, and
    `migrate` re-runs these statements after every run.
    """
    q = quote or (lambda name: '"' + name.replace('"', '""') + '"')
    rt, own = q(runtime), q(owner)
    return [
        f"GRANT USAGE ON SCHEMA public TO {rt}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {rt}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {rt}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {rt}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {rt}",
        # The audit tables: append and read; the head moves forward under its trigger.
        f"REVOKE ALL ON {EVENTS}, {HEAD} FROM PUBLIC, {rt}",
        f"GRANT SELECT, INSERT ON {EVENTS} TO {rt}",
        f"GRANT SELECT, UPDATE ON {HEAD} TO {rt}",
        # Signed checkpoints are evidence too: appended, never changed or removed.
        f"REVOKE ALL ON {CHECKPOINTS} FROM PUBLIC, {rt}",
        f"GRANT SELECT, INSERT ON {CHECKPOINTS} TO {rt}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {rt}",
        # Old rows leave only through audit_purge() (migration 0006), which refuses rows
        # younger than the retention or not covered by a signed anchor.
        "DO $$BEGIN IF to_regprocedure('audit_purge(bigint,integer)') IS NOT NULL THEN "
        f"EXECUTE 'GRANT EXECUTE ON FUNCTION audit_purge(bigint, integer) TO "
        f"{rt.replace(chr(39), chr(39) * 2)}'; END IF; END$$",
    ]


def setup_sql(*, owner: str, runtime: str, database: str) -> str:
    """The whole setup as one psql script for a DBA (roles, ownership, then the grants)."""
    q = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731
    lines = [
        "-- Run once as a superuser (psql), then set both passwords with \\password.",
        f"CREATE ROLE {q(owner)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;",
        f"CREATE ROLE {q(runtime)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;",
        f"ALTER DATABASE {q(database)} OWNER TO {q(owner)};",
        f"\\connect {q(database)}",
        # PostgreSQL 15+ already keeps CREATE on public for the database owner only.
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
        f"ALTER SCHEMA public OWNER TO {q(owner)};",
        "-- Then `manage.py migrate` with DATABASE_URL (runtime) and DATABASE_OWNER_URL",
        "-- (owner) creates the tables as the owner and runs these grants itself:",
    ]
    lines += [f"--   {statement};" for statement in runtime_grants_sql(owner=owner, runtime=runtime)]
    return "\n".join(lines) + "\n"


def runtime_role() -> str:
    """The role the running portal connects as (DATABASE_URL's user)."""
    return settings.DATABASES["default"].get("USER") or ""


def apply_runtime_grants(connection, *, runtime: str) -> list[str]:
    """As the owner, grant `runtime` its privileges (see module docstring); returns the SQL.

    Refuses a runtime role that is the owner, a superuser, or a member of the owner: any
    of those could rewrite the trail whatever is granted.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        owner = cursor.fetchone()[0]
        if runtime == owner:
            raise RoleSetupError(
                f"The runtime role {runtime!r} is the owner role: give DATABASE_URL and "
                "DATABASE_OWNER_URL different roles.")
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [runtime])
        row = cursor.fetchone()
        if row is None:
            raise RoleSetupError(f"The runtime role {runtime!r} does not exist.")
        if row[0]:
            raise RoleSetupError(f"The runtime role {runtime!r} is a superuser, which "
                                 "bypasses every privilege and trigger guard.")
        cursor.execute("SELECT pg_has_role(%s, current_user, 'MEMBER')", [runtime])
        if cursor.fetchone()[0]:
            raise RoleSetupError(f"The runtime role {runtime!r} is a member of the owner "
                                 f"role {owner!r}, so it holds the owner's rights.")
        statements = runtime_grants_sql(owner=owner, runtime=runtime,
                                        quote=connection.ops.quote_name)
        for statement in statements:
            cursor.execute(statement)
    return statements


@contextmanager
def owner_connection(alias: str = "default"):
    """The alias's connection, re-opened as DATABASE_OWNER_URL's role for the block."""
    connection = connections[alias]
    owner = dj_database_url.parse(settings.DATABASE_OWNER_URL)
    if connection.vendor != "postgresql" or "postgresql" not in owner["ENGINE"]:
        raise RoleSetupError("DATABASE_OWNER_URL needs PostgreSQL for both URLs.")
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update({key: owner[key] for key in
                                     ("NAME", "USER", "PASSWORD", "HOST", "PORT")})
    try:
        yield connection
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(original)
