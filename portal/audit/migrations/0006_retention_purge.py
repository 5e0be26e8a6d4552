"""Retention on PostgreSQL: old audit rows leave only through audit_purge(), never younger ones.

The append-only trigger of migration 0002 keeps refusing UPDATE, and DELETE too, except
inside `audit_purge(cutoff_seq, retention_days)`: a SECURITY DEFINER function owned by the
tables' owner (the runtime role has no DELETE privilege on the events, only EXECUTE on this
function). It deletes the prefix seq <= cutoff_seq in one statement, and the trigger checks
every row it removes:
- the row is older than the retention, never less than 180 days (a floor written here, so a
  setting cannot lower it);
- a retention anchor (an AuditCheckpoint of kind 'anchor', signed with the HSM key) exists at
  or after its seq: verification starts from the oldest kept row, whose prev_hash the anchor
  attests.
One row failing aborts the whole statement: nothing younger is ever deleted, and no hole is
left in the chain (only a prefix goes).
"""
from django.db import migrations

PURGE_SQL = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
DECLARE
    days integer;
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('portal.audit_purge', true) = 'allow' THEN
        days := GREATEST(COALESCE(NULLIF(current_setting('portal.audit_retention_days', true),
                                         '')::integer, 180), 180);
        IF OLD.time >= now() - make_interval(days => days) THEN
            RAISE EXCEPTION 'audit event % is younger than the retention (% days)', OLD.seq, days;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM audit_auditcheckpoint c
                       WHERE c.kind = 'anchor' AND c.seq >= OLD.seq) THEN
            RAISE EXCEPTION 'audit event % is not covered by a signed retention anchor', OLD.seq;
        END IF;
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION audit_purge(cutoff_seq bigint, retention_days integer)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    removed bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 180 THEN
        RAISE EXCEPTION 'an audit retention below 180 days is refused';
    END IF;
    PERFORM set_config('portal.audit_purge', 'allow', true);
    PERFORM set_config('portal.audit_retention_days', retention_days::text, true);
    DELETE FROM audit_auditevent WHERE seq <= cutoff_seq;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('portal.audit_purge', '', true);
    RETURN removed;
END;
$$;
REVOKE ALL ON FUNCTION audit_purge(bigint, integer) FROM PUBLIC;
"""

RESTORE_SQL = """
DROP FUNCTION IF EXISTS audit_purge(bigint, integer);
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
"""


def add_purge(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PURGE_SQL, params=None)


def drop_purge(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RESTORE_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_hsm_events_checkpoints")]
    operations = [migrations.RunPython(add_purge, drop_purge)]
