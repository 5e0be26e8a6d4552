"""Default approval policies (data), and on PostgreSQL two triggers that hold whatever path
writes (ORM, an admin, SQL): a request whose operation, payload or payload hash changes
after it was made becomes void; a decision by the request's own requester principal is
refused, and decisions, once made, are never changed or deleted."""
from django.db import migrations

# A copy of portal.approvals.policy.DEFAULTS as it was when this migration was written.
DEFAULTS = [
    # (name, operation, role, scope, approvers, priority)
    ("Administrator at / needs two approvers", "*", "Managed HSM Administrator", "/", 2, 10),
    ("Policy Administrator at / needs two approvers", "*", "Managed HSM Policy Administrator",
     "/", 2, 10),
    ("Crypto Officer at / needs two approvers", "*", "Managed HSM Crypto Officer", "/", 2, 10),
    ("Everything else needs one approver", "*", "*", "*", 1, 1000),
]

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION approval_request_void_on_change() RETURNS trigger AS $$
BEGIN
    IF NEW.operation IS DISTINCT FROM OLD.operation
       OR NEW.payload IS DISTINCT FROM OLD.payload
       OR NEW.payload_hash IS DISTINCT FROM OLD.payload_hash THEN
        NEW.status := 'void';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER approval_request_void_on_change
    BEFORE UPDATE ON approvals_approvalrequest
    FOR EACH ROW EXECUTE FUNCTION approval_request_void_on_change();

CREATE OR REPLACE FUNCTION approval_decision_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'approval decisions cannot be changed or deleted (% refused)', TG_OP;
    END IF;
    IF EXISTS (SELECT 1 FROM approvals_approvalrequest r
               WHERE r.id = NEW.request_id
                 AND lower(r.requester_principal) = lower(NEW.approver_principal)) THEN
        RAISE EXCEPTION 'the requester cannot decide their own approval request'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER approval_decision_guard
    BEFORE INSERT OR UPDATE OR DELETE ON approvals_approvaldecision
    FOR EACH ROW EXECUTE FUNCTION approval_decision_guard();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS approval_decision_guard ON approvals_approvaldecision;
DROP FUNCTION IF EXISTS approval_decision_guard();
DROP TRIGGER IF EXISTS approval_request_void_on_change ON approvals_approvalrequest;
DROP FUNCTION IF EXISTS approval_request_void_on_change();
"""


def seed(apps, schema_editor):
    policy = apps.get_model("approvals", "ApprovalPolicy")
    for name, operation, role, scope, approvers, priority in DEFAULTS:
        policy.objects.get_or_create(name=name, defaults={
            "operation_pattern": operation, "role_pattern": role, "scope_pattern": scope,
            "required_approvers": approvers, "lifetime_hours": 24, "priority": priority})


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]
    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
