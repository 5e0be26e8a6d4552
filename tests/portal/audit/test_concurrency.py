"""Concurrent writers on PostgreSQL: contiguous seqs, one chain, no forks."""
import threading

import pytest
from django.db import connection

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record, audit_verify

WRITERS, EACH = 20, 5


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_writers_make_one_contiguous_chain():
    start = threading.Barrier(WRITERS)
    errors = []

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(EACH):
                audit_record(actor=None, action="test.write", target=f"writer:{n}",
                             detail={"i": i})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, WRITERS * EACH + 1))
    prev_hashes = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(set(prev_hashes)) == len(prev_hashes)  # no two rows claim the same parent
    assert audit_verify().ok
