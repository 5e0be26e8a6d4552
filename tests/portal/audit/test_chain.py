"""Tamper detection: modify, delete, insert and swap are each found at the first bad seq."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from portal.audit.chain import event_hash
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_verify


@pytest.fixture
def chain(db):
    for n in range(1, 7):
        audit_record(actor=None, action="key.rotate", target=f"hsm:primary/key:k{n}",
                     request_id=f"req-{n}", detail={"n": n})
    assert audit_verify().ok
    return list(AuditEvent.objects.order_by("seq"))


def _as_dba(sql: str, params=()) -> None:
    """Tamper as someone with direct database access: past the append-only trigger."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def test_intact_chain_verifies(chain):
    report = audit_verify()
    assert report.ok and report.checked == 6
    call_command("audit_verify")  # exits 0


def test_modified_row_is_named(chain):
    _as_dba("UPDATE audit_auditevent SET detail = '{\"n\": 99}' WHERE seq = 3")
    report = audit_verify()
    assert report.first_bad_seq == 3
    assert "content" in report.reason


def test_deleted_row_is_named(chain):
    _as_dba("DELETE FROM audit_auditevent WHERE seq = 4")
    assert audit_verify().first_bad_seq == 4


def test_deleted_tail_is_named(chain):
    _as_dba("DELETE FROM audit_auditevent WHERE seq = 6")
    assert audit_verify().first_bad_seq == 6


def test_inserted_row_is_named(chain):
    # A forger who can compute hashes appends a well-linked row but cannot move the head
    # without it showing; here the head still says 6.
    last = chain[-1]
    forged = {"seq": 7, "time": last.time, "actor_id": "", "actor_name": "mallory", "role": "",
              "request_id": "", "action": "key.purge", "target": "x", "outcome": "succeeded",
              "detail": {}, "prev_hash": last.hash}
    forged["hash"] = event_hash(forged)
    _as_dba("INSERT INTO audit_auditevent (seq, time, actor_id, actor_name, role, request_id, "
            "action, target, outcome, detail, prev_hash, hash) VALUES "
            "(%s, %s, '', 'mallory', '', '', 'key.purge', 'x', 'succeeded', '{}', %s, %s)",
            (7, last.time, last.hash, forged["hash"]))
    assert audit_verify().first_bad_seq == 7


def test_swapped_rows_are_named(chain):
    third, fourth = chain[2], chain[3]
    _as_dba("UPDATE audit_auditevent SET seq = -1 WHERE seq = 3")
    _as_dba("UPDATE audit_auditevent SET seq = 3, prev_hash = %s WHERE seq = 4", (third.prev_hash,))
    _as_dba("UPDATE audit_auditevent SET seq = 4, prev_hash = %s WHERE seq = -1", (fourth.prev_hash,))
    assert audit_verify().first_bad_seq == 3


def test_audit_verify_command_names_the_first_bad_seq(chain):
    _as_dba("UPDATE audit_auditevent SET actor_name = 'someone-else' WHERE seq = 2")
    with pytest.raises(CommandError, match="seq 2"):
        call_command("audit_verify")


def test_rows_cannot_be_updated_or_deleted_through_the_database(chain):
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE audit_auditevent SET outcome = 'failed' WHERE seq = 1")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=1).delete()
    with pytest.raises(RuntimeError):
        chain[0].save()
