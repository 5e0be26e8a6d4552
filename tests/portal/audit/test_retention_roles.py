"""Retention against the runtime database role: it reaches old rows only through
audit_purge(), which refuses young rows and short retentions; checkpoints are append-only."""
import pytest

from portal.audit.models import AuditEvent
from tests.portal.audit.test_db_roles import _connect, _refused, make_role, runtime  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_runtime_role_deletes_nothing_but_through_audit_purge(runtime):  # noqa: F811
    count = AuditEvent.objects.count()
    with _connect(runtime) as conn:
        assert "permission denied" in _refused(conn, "DELETE FROM audit_auditevent")
        assert "permission denied" in _refused(conn, "DELETE FROM audit_auditcheckpoint")
        assert "permission denied" in _refused(
            conn, "UPDATE audit_auditcheckpoint SET hash = 'x'")
        # The purge function is reachable, and its guard refuses these young rows ...
        assert "younger than the retention" in _refused(conn, "SELECT audit_purge(1, 180)")
        # ... and any retention under the 180-day floor.
        assert "below 180 days" in _refused(conn, "SELECT audit_purge(1, 30)")
        # Claiming the purge flag by hand does not give DELETE.
        conn.execute("SELECT set_config('portal.audit_purge', 'allow', false)")
        assert "permission denied" in _refused(conn, "DELETE FROM audit_auditevent")
        conn.execute("INSERT INTO audit_auditcheckpoint (kind, seq, hash, time, key_id, "
                     "algorithm, signature, blob_name, created) VALUES ('head', 1, 'h', now(), "
                     "'k', 'ES256', 's', '', now())")  # appending stays possible
    assert AuditEvent.objects.count() == count
