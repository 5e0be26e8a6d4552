"""If the audit record cannot be written, the action does not happen and the caller gets 503."""
import contextlib

import pytest
from django.db import connection

from portal.gateway.models import HsmInstance


@contextlib.contextmanager
def audit_table_unavailable():
    """Make the real audit table unwritable for a moment (as a broken database would)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent RENAME TO audit_auditevent_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent_away RENAME TO audit_auditevent")


@pytest.mark.django_db(transaction=True)
def test_api_action_does_not_happen_without_its_audit_record(api_as, admin):
    client = api_as(admin)
    with audit_table_unavailable():
        response = client.post("/api/v1/hsms/", {"name": "extra",
                                                    "uri": "https://extra.managedhsm.azure.net"},
                               format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert not HsmInstance.objects.filter(name="extra").exists()
    # Once the trail is back the same request works.
    response = client.post("/api/v1/hsms/", {"name": "extra",
                                                "uri": "https://extra.managedhsm.azure.net"},
                           format="json")
    assert response.status_code == 201


@pytest.mark.django_db(transaction=True)
def test_page_action_does_not_happen_without_its_audit_record(client, admin):
    from portal.jobs.models import Job

    client.force_login(admin)
    with audit_table_unavailable():
        response = client.post("/jobs/")
    assert response.status_code == 503
    assert b"audit trail is unavailable" in response.content
    assert not Job.objects.exists()
