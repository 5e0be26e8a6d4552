"""On PostgreSQL, below the ORM: TRUNCATE of the audit tables is refused, every inserted event
must extend the chain head, and the head only moves one appended event forward.

Together with the runtime role's privileges (`manage.py audit_db_roles`: INSERT and SELECT on
events, SELECT and UPDATE on the head) this leaves someone holding the runtime credentials
able to append, never to rewrite, drop or reset the trail.

TRUNCATE stays possible for the tables' owner (the migration role, or a superuser) in a
session that sets `portal.audit_truncate = 'allow'`: the test suite's flush does, through its
connection options. Anyone may set a custom setting, so the owner check is what keeps the
runtime role out; the setting keeps an owner's stray `manage.py flush` from emptying the trail.
"""
from django.db import migrations

GUARD_SQL = """
CREATE OR REPLACE FUNCTION audit_truncate_guard() RETURNS trigger AS $$
BEGIN
    IF current_setting('portal.audit_truncate', true) = 'allow' AND pg_has_role(
            current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit trail cannot be truncated (% on %)', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate_guard();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_auditchainhead
    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate_guard();

CREATE OR REPLACE FUNCTION audit_event_extends_head() RETURNS trigger AS $$
DECLARE
    head record;
BEGIN
    SELECT seq, hash INTO head FROM audit_auditchainhead WHERE id = 1;
    IF NOT FOUND OR NEW.seq <> head.seq + 1 OR NEW.prev_hash <> head.hash THEN
        RAISE EXCEPTION 'audit event % does not extend the chain head', NEW.seq;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_extends_head BEFORE INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_extends_head();

CREATE OR REPLACE FUNCTION audit_head_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the audit chain head cannot be deleted';
    ELSIF TG_OP = 'INSERT' THEN
        -- Only a genesis head, and never under existing events (a reset chain).
        IF NEW.id <> 1 OR NEW.seq <> 0 OR NEW.hash <> repeat('0', 64) OR (
                EXISTS (SELECT 1 FROM audit_auditevent)
                AND NOT EXISTS (SELECT 1 FROM audit_auditchainhead)) THEN
            RAISE EXCEPTION 'a new audit chain head must be the genesis of an empty chain';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
            SELECT 1 FROM audit_auditevent e
            WHERE e.seq = NEW.seq AND e.hash = NEW.hash AND e.prev_hash = OLD.hash) THEN
        RAISE EXCEPTION 'the audit chain head only moves forward, onto the event appended after it';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_head_forward_only BEFORE INSERT OR UPDATE OR DELETE ON audit_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS audit_head_forward_only ON audit_auditchainhead;
DROP TRIGGER IF EXISTS audit_event_extends_head ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_auditchainhead;
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_head_forward_only();
DROP FUNCTION IF EXISTS audit_event_extends_head();
DROP FUNCTION IF EXISTS audit_truncate_guard();
"""


def add_guards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARD_SQL, params=None)


def drop_guards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]
    operations = [migrations.RunPython(add_guards, drop_guards)]
