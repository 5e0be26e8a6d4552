"""The audit intent is committed, visible to anyone, before the HSM is touched."""
import threading
import time

import pytest
from django.db import connection

from keys_app import services
from keys_app.models import KeyRecord
from portal.audit.models import AuditEvent

OWNER = {"owner": "payments"}


@pytest.mark.django_db(transaction=True)
def test_rotation_intent_is_committed_while_the_hsm_call_is_in_flight(hsm, admin, key_name,
                                                                     emulator):
    from keys_app.spec import spec_build

    services.key_create(hsm=hsm, spec=spec_build(name=key_name, kty="oct-HSM", tags=OWNER),
                        actor=admin, request_id="r0")
    emulator.fail("POST", f"/keys/{key_name}/rotate", status=None, count=1, latency_ms=1500)
    outcome = {}

    def rotate():
        try:
            outcome["record"] = services.key_rotate(hsm=hsm, name=key_name, actor=admin,
                                                    request_id="r1")
        finally:
            connection.close()

    worker = threading.Thread(target=rotate)
    worker.start()
    deadline = time.monotonic() + 10
    seen = None
    while seen is None and time.monotonic() < deadline:
        # This thread's own connection: only committed rows are visible here.
        seen = AuditEvent.objects.filter(action="key.rotate", outcome="intent").first()
        time.sleep(0.05)
    versions_while_in_flight = KeyRecord.objects.get(hsm=hsm, name=key_name).version_count
    still_running = worker.is_alive()
    worker.join(timeout=30)

    assert seen is not None and still_running  # committed before the delayed HSM call ended
    assert versions_while_in_flight == 1
    assert outcome["record"].version_count == 2
    assert list(AuditEvent.objects.filter(action="key.rotate").order_by("seq")
                .values_list("outcome", flat=True)) == ["intent", "succeeded"]
