"""A dummy approvable operation whose runs are counted in the database, and helpers."""
import pytest
from django.db import connection

from portal.approvals import registry
from portal.approvals.services import approval_require


def _ensure_table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS approvals_test_runs "
                       "(id serial PRIMARY KEY, approval_id int, note text)")


def test_operation(*, actor, request_id: str, note: str, approval=None, **_):
    """Needs approval; when approved, appends one row per run (what the tests count)."""
    pending = approval_require(operation="test.record", actor=actor, payload={"note": note},
                               target=f"test:{note}", request_id=request_id,
                               approval=approval, context={"scope": "/keys/x"})
    if pending is not None:
        return pending
    _ensure_table()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO approvals_test_runs (approval_id, note) VALUES (%s, %s)",
                       [approval.pk, note])
    return None


test_operation.__test__ = False
registry.register("test.record", test_operation, label="Record a test note",
                  describe=lambda payload: {"context": [("Note now", "nothing recorded")]})


def runs(approval_id=None) -> int:
    _ensure_table()
    with connection.cursor() as cursor:
        if approval_id is None:
            cursor.execute("SELECT count(*) FROM approvals_test_runs")
        else:
            cursor.execute("SELECT count(*) FROM approvals_test_runs WHERE approval_id = %s",
                           [approval_id])
        return cursor.fetchone()[0]


@pytest.fixture
def approver2(db):
    from tests.factories import user_in_role

    return user_in_role("erin-approver", "approver")
