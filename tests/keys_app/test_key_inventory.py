"""The inventory cache: sync, drift, leases, list filters, CSV export."""
import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from keys_app import services
from keys_app.models import InventoryState, KeyRecord
from keys_app.tasks import inventory_sync_run
from portal import gateway
from portal.jobs.models import Job

OWNER = {"owner": "payments"}


def run_sync(hsm, admin, full=False) -> Job:
    job = Job.objects.create(kind="keys.inventory_sync", actor=admin, hsm=hsm, params={"full": full})
    inventory_sync_run.apply(args=[job.pk], task_id=f"sync-{job.pk}")
    return Job.objects.get(pk=job.pk)


def test_sync_finds_keys_made_outside_the_portal_and_marks_drift(hsm, admin, key_name):
    client = gateway.keys(hsm)
    client.create_ec_key(f"{key_name}-a", hardware_protected=True, tags=OWNER)
    first = run_sync(hsm, admin)
    assert first.status == "succeeded" and first.progress == 100
    record = KeyRecord.objects.get(hsm=hsm, name=f"{key_name}-a")
    assert record.kty == "EC-HSM" and not record.drift  # the first sync adopts what is there
    # A key that never had a policy reads as the service's default (Notify only, no
    # expiry): the portal shows it as no policy.
    assert not record.has_rotation_policy and record.rotation_policy is None

    client.create_oct_key(f"{key_name}-b", size=256, hardware_protected=True, tags=OWNER)
    client.update_key_properties(f"{key_name}-a", tags={"owner": "someone-else"})
    second = run_sync(hsm, admin)
    # Keys another test changed in the second before the first sync are read again too
    # (one-second resolution), but only these two differ from the cache.
    assert second.result["fetched"] >= 2 and second.result["drift"] == 2
    new = KeyRecord.objects.get(hsm=hsm, name=f"{key_name}-b")
    assert new.drift and new.drift_note == "created outside the portal"
    assert new.key_size == 256
    changed = KeyRecord.objects.get(hsm=hsm, name=f"{key_name}-a")
    assert changed.drift_note == "changed outside the portal"
    assert changed.tags == {"owner": "someone-else"}
    assert InventoryState.objects.get(hsm=hsm).last_synced_at is not None

    third = run_sync(hsm, admin)
    assert third.result["drift"] == 0  # read again (same second), but nothing changed

    # A sync that started after these changes skips them: the sync is incremental.
    InventoryState.objects.filter(hsm=hsm).update(last_synced_at=timezone.now() + timedelta(seconds=2))
    assert run_sync(hsm, admin).result["fetched"] == 0


def test_sync_removes_keys_purged_outside_the_portal(hsm, admin, key_name):
    client = gateway.keys(hsm)
    client.create_oct_key(key_name, size=128, hardware_protected=True, tags=OWNER)
    run_sync(hsm, admin)
    client.begin_delete_key(key_name).wait()
    run_sync(hsm, admin)
    assert KeyRecord.objects.get(hsm=hsm, name=key_name).state == "deleted"
    client.purge_deleted_key(key_name)
    run_sync(hsm, admin)
    assert not KeyRecord.objects.filter(hsm=hsm, name=key_name).exists()


def test_two_syncs_at_once_run_one(hsm, admin):
    other = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, status="running")
    assert services._lease(hsm, other.pk)  # another sync holds the lease
    job = run_sync(hsm, admin)
    assert job.status == "succeeded" and "skipped" in job.result
    InventoryState.objects.filter(hsm=hsm).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert run_sync(hsm, admin).result.get("skipped") is None  # an expired lease is taken over


def test_refresh_button_queues_a_sync_job(client, admin, hsm, django_capture_on_commit_callbacks):
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/hsms/{hsm.name}/keys/refresh/")
    job = Job.objects.get(kind="keys.inventory_sync")
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert len(callbacks) == 1


@pytest.fixture
def inventory(hsm):
    now = timezone.now()
    rows = [
        ("alpha-rsa", "RSA-HSM", now + timedelta(days=10), {"owner": "a", "env": "prod"}, True),
        ("beta-ec", "EC-HSM", now + timedelta(days=200), {"owner": "b"}, False),
        ("gamma-aes", "oct-HSM", now - timedelta(days=1), {"owner": "a", "env": "dev"}, True),
        ("delta-rsa", "RSA-HSM", None, {"owner": "d"}, False),
    ]
    for name, kty, expires, tags, policy in rows:
        KeyRecord.objects.create(drift_note='=HYPERLINK("x")' if name == "delta-rsa" else "",hsm=hsm, name=name, kty=kty, expires=expires, tags=tags,
                                 tags_text="\n".join(f"{k}={v}" for k, v in sorted(tags.items())),
                                 has_rotation_policy=policy, created_on=now, updated_on=now)


@pytest.mark.parametrize("query,names", [
    ({}, ["alpha-rsa", "beta-ec", "delta-rsa", "gamma-aes"]),
    ({"q": "rsa"}, ["alpha-rsa", "delta-rsa"]),
    ({"kty": "EC-HSM"}, ["beta-ec"]),
    ({"tag": "env"}, ["alpha-rsa", "gamma-aes"]),
    ({"tag": "env=prod"}, ["alpha-rsa"]),
    ({"tag": "owner=a"}, ["alpha-rsa", "gamma-aes"]),
    ({"expiry": "30d"}, ["alpha-rsa"]),
    ({"expiry": "expired"}, ["gamma-aes"]),
    ({"expiry": "none"}, ["delta-rsa"]),
    ({"rotation": "no"}, ["beta-ec", "delta-rsa"]),
    ({"sort": "-name"}, ["gamma-aes", "delta-rsa", "beta-ec", "alpha-rsa"]),
])
def test_list_filters(api_as, auditor, inventory, hsm, query, names):
    response = api_as(auditor).get(f"/api/v1/hsms/{hsm.name}/keys/", query)
    assert [k["name"] for k in response.json()["results"]] == names


def test_list_page_marks_expiring_keys_and_shows_cache_age(client, auditor, inventory, hsm):
    client.force_login(auditor)
    html = client.get(f"/hsms/{hsm.name}/keys/").content.decode()
    assert 'class="expiring' in html and 'class="expired' in html
    assert "has not been synced yet" in html


def test_csv_export_is_formula_safe(client, auditor, inventory, hsm):
    client.force_login(auditor)
    response = client.get(f"/hsms/{hsm.name}/keys/", {"export": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 4
    delta = next(r for r in rows if r["name"] == "delta-rsa")
    assert delta["drift_note"] == "'=HYPERLINK(\"x\")"
    assert all(not value.startswith(("=", "+", "-", "@")) for r in rows for value in r.values())


def test_standards_report_names_keys_that_break_the_standards(api_as, auditor, inventory, hsm):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    KeyRecord.objects.filter(name="beta-ec").update(tags={}, tags_text="")
    report = api_as(auditor).get(f"/api/v1/hsms/{hsm.name}/keys/standards-report/").json()
    assert [entry["name"] for entry in report["violations"]] == ["beta-ec"]
    assert "owner" in report["violations"][0]["violations"][0]
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("key_standards_report", stdout=out)
    assert "primary/beta-ec" in out.getvalue()


def test_key_names_are_case_insensitive_like_the_service(api_as, hsm, admin, key_name):
    from portal.audit.models import AuditEvent

    mixed = f"Mixed-{key_name}"
    gateway.keys(hsm).create_oct_key(mixed, size=128, hardware_protected=True, tags=OWNER)
    run_sync(hsm, admin)
    client = api_as(admin)
    detail = client.get(f"/api/v1/hsms/{hsm.name}/keys/{mixed.lower()}/")
    assert detail.status_code == 200 and detail.json()["name"] == mixed
    assert client.post(f"/api/v1/hsms/{hsm.name}/keys/{mixed.upper()}/rotate/").status_code == 200
    assert AuditEvent.objects.filter(action="key.rotate", target=f"hsm:{hsm.name}/key:{mixed}",
                                     outcome="succeeded").exists()
    assert KeyRecord.objects.filter(hsm=hsm, name__iexact=mixed).count() == 1


def test_keys_the_portal_made_are_no_drift_to_the_next_sync(api_as, hsm, admin, key_name):
    run_sync(hsm, admin)
    client = api_as(admin)
    for suffix, policy in (("a", None), ("b", {"expires_after": "P1Y", "lifetime_actions": [
            {"action": "Rotate", "time_after_create": "P90D"}]})):
        response = client.post(f"/api/v1/hsms/{hsm.name}/keys/", {
            "name": f"{key_name}-{suffix}", "preset": "aes", "tags": OWNER,
            "rotation_policy": policy}, format="json")
        assert response.status_code == 201
    client.post(f"/api/v1/hsms/{hsm.name}/keys/{key_name}-a/rotate/")
    job = run_sync(hsm, admin)
    assert job.result["fetched"] >= 2  # both were updated in this second: read again
    assert job.result["drift"] == 0
    assert not KeyRecord.objects.filter(hsm=hsm, drift=True, name__startswith=key_name).exists()
