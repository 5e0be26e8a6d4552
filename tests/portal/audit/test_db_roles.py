"""Audit integrity against someone holding the runtime database credentials (PostgreSQL).

The runtime role appends and reads; it cannot rewrite, delete, truncate or reset the trail,
by privileges (audit_db_roles) and, should it be granted more, by triggers (migration 0003).
"""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from portal.audit.chain import event_hash
from portal.audit.models import AuditChainHead, AuditEvent
from portal.audit.roles import RoleSetupError, apply_runtime_grants
from portal.audit.services import audit_record, audit_verify

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.django_db(transaction=True)


def _server() -> dict:
    params = connection.settings_dict
    return {"host": params["HOST"] or "127.0.0.1", "port": params["PORT"] or 5432}


def _connect(user: str, dbname: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(user=user, dbname=dbname or connection.settings_dict["NAME"],
                           autocommit=True, **_server(), **kwargs)


def _url(user: str, dbname: str) -> str:
    server = _server()
    return f"postgres://{user}@{server['host']}:{server['port']}/{dbname}"


def _superuser() -> psycopg.Connection:
    return _connect(connection.settings_dict["USER"], "postgres")


@pytest.fixture
def make_role():
    """Create LOGIN, non-superuser roles with unique names; drop them and their grants after."""
    created = []

    def _make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with _superuser() as admin:
            admin.execute(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        created.append(name)
        return name

    yield _make
    with _connect(connection.settings_dict["USER"]) as here:
        for name in created:
            here.execute(f'DROP OWNED BY "{name}"')
    with _superuser() as admin:
        for name in created:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def runtime(make_role):
    """A runtime role granted what audit_db_roles grants, on a chain of three events."""
    for n in range(3):
        audit_record(actor=None, action="key.rotate", target=f"hsm:primary/key:k{n}")
    role = make_role("h3rt")
    apply_runtime_grants(connection, runtime=role)
    return role


def _refused(conn: psycopg.Connection, sql: str, params=()) -> str:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, params)
    return str(caught.value)


def _append_in_portal(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The portal's own audit_record, in a process connected as DATABASE_URL's role."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.base",
           "DATABASE_URL": database_url, "PORTAL_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_OWNER_URL", None)
    code = ("import django; django.setup()\n"
            "from portal.audit.services import audit_record\n"
            "print('appended', audit_record(actor=None, action='test.append', target='rt').seq)")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_runtime_role_appends_but_cannot_rewrite_truncate_or_move_the_head(runtime, tmp_path):
    with _connect(runtime) as rt:
        rt.execute("SET portal.audit_truncate = 'allow'")  # the opt-in is the owner's only
        assert "permission denied" in _refused(rt, "UPDATE audit_auditevent SET outcome = 'failed'")
        assert "permission denied" in _refused(rt, "DELETE FROM audit_auditevent")
        assert "permission denied" in _refused(rt, "TRUNCATE audit_auditevent")
        assert "permission denied" in _refused(rt, "DELETE FROM audit_auditchainhead")
        assert "permission denied" in _refused(rt, "TRUNCATE audit_auditchainhead")
        assert "moves forward" in _refused(rt, "UPDATE audit_auditchainhead SET seq = 0, "
                                               "hash = repeat('0', 64)")
        assert rt.execute("SELECT count(*) FROM audit_auditevent").fetchone() == (3,)

    result = _append_in_portal(_url(runtime, connection.settings_dict["NAME"]), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "appended 4" in result.stdout
    assert AuditEvent.objects.get(seq=4).action == "test.append"
    assert AuditChainHead.objects.get(pk=1).seq == 4
    assert audit_verify().ok


def test_triggers_hold_even_if_the_runtime_role_is_granted_everything(runtime):
    with connection.cursor() as cursor:
        cursor.execute(f'GRANT ALL ON audit_auditevent, audit_auditchainhead TO "{runtime}"')
    head = AuditChainHead.objects.get(pk=1)
    third = AuditEvent.objects.get(seq=3)
    with _connect(runtime) as rt:
        rt.execute("SET portal.audit_truncate = 'allow'")
        assert "append-only" in _refused(rt, "UPDATE audit_auditevent SET outcome = 'failed'")
        assert "append-only" in _refused(rt, "DELETE FROM audit_auditevent WHERE seq = 3")
        assert "cannot be truncated" in _refused(rt, "TRUNCATE audit_auditevent")
        assert "cannot be truncated" in _refused(rt, "TRUNCATE audit_auditchainhead")
        assert "cannot be deleted" in _refused(rt, "DELETE FROM audit_auditchainhead")
        # The head moves one appended event forward, never back, never past, never elsewhere.
        assert "moves forward" in _refused(rt, "UPDATE audit_auditchainhead SET seq = 2, hash = %s",
                                           [third.prev_hash])
        assert "moves forward" in _refused(rt, "UPDATE audit_auditchainhead SET seq = 9")
        assert "moves forward" in _refused(rt, "UPDATE audit_auditchainhead SET hash = %s",
                                           ["f" * 64])
        assert "genesis" in _refused(rt, "INSERT INTO audit_auditchainhead (id, seq, hash) "
                                         "VALUES (2, 0, repeat('0', 64))")
        # An event must extend the head: no gaps, no forks.
        insert = ("INSERT INTO audit_auditevent (seq, time, actor_id, actor_name, role, "
                  "request_id, action, target, outcome, detail, prev_hash, hash) VALUES "
                  "(%s, %s, '', 'mallory', '', '', 'key.purge', 'x', 'succeeded', '{}', %s, %s)")
        assert "does not extend" in _refused(rt, insert, [5, third.time, head.hash, "a" * 64])
        assert "does not extend" in _refused(rt, insert, [4, third.time, third.prev_hash, "b" * 64])
        # A well-linked append and a one-step head move are what the portal itself does.
        row = {"seq": 4, "time": third.time, "actor_id": "", "actor_name": "mallory", "role": "",
               "request_id": "", "action": "key.purge", "target": "x", "outcome": "succeeded",
               "detail": {}, "prev_hash": head.hash}
        row["hash"] = event_hash(row)
        with rt.transaction():
            rt.execute(insert, [4, third.time, head.hash, row["hash"]])
            rt.execute("UPDATE audit_auditchainhead SET seq = 4, hash = %s", [row["hash"]])
    assert audit_verify().ok and audit_verify().checked == 4


def test_the_owner_truncates_only_with_the_session_opt_in(runtime):
    owner = connection.settings_dict["USER"]
    with _connect(owner) as conn:
        assert "cannot be truncated" in _refused(conn, "TRUNCATE audit_auditevent")
        assert "cannot be truncated" in _refused(conn, "TRUNCATE audit_auditchainhead")
        assert AuditEvent.objects.count() == 3
    # The test suite's flush connects with this option (portal/settings/test.py).
    with _connect(owner, options="-c portal.audit_truncate=allow") as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("TRUNCATE audit_auditevent, audit_auditchainhead")
            assert conn.execute("SELECT count(*) FROM audit_auditevent").fetchone() == (0,)


def test_grants_refuse_a_runtime_role_that_is_the_owner(db):
    with pytest.raises(RoleSetupError, match="is the owner role"):
        apply_runtime_grants(connection, runtime=connection.settings_dict["USER"])


def test_migrate_runs_as_the_owner_and_leaves_the_runtime_role_append_only(make_role, tmp_path):
    owner, runtime_name = make_role("h3own"), make_role("h3rt")
    dbname = f"h3roles_{uuid.uuid4().hex[:10]}"
    with _superuser() as admin:
        admin.execute(f'CREATE DATABASE "{dbname}" OWNER "{owner}"')
    try:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.base",
               "DATABASE_URL": _url(runtime_name, dbname),
               "DATABASE_OWNER_URL": _url(owner, dbname), "PORTAL_VAR_DIR": str(tmp_path)}
        result = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Granted runtime role '{runtime_name}'" in result.stdout

        with _connect(owner, dbname) as conn:
            owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables "
                                  "WHERE schemaname = 'public'").fetchall()
        assert owners == [(owner,)]

        appended = _append_in_portal(_url(runtime_name, dbname), tmp_path)
        assert appended.returncode == 0, appended.stderr
        assert "appended 1" in appended.stdout
        with _connect(runtime_name, dbname) as rt:
            assert rt.execute("SELECT count(*) FROM auth_user").fetchone() == (0,)
            rt.execute("INSERT INTO django_session (session_key, session_data, expire_date) "
                       "VALUES ('k', 'd', now())")  # ordinary tables stay writable
            assert "permission denied" in _refused(rt, "UPDATE audit_auditevent SET target = 'x'")
            assert "permission denied" in _refused(rt, "TRUNCATE audit_auditevent")
            assert "permission denied" in _refused(rt, "CREATE TABLE evil (id int)")
    finally:
        with _superuser() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
