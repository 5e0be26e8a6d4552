"""The pages' doors: who may use them, what they start, what they refuse; stuck jobs."""
from datetime import timedelta

import pytest
from django.utils import timezone

from dr_app import selectors, services
from dr_app.models import BackupSchedule
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from portal.jobs.services import job_create

pytestmark = pytest.mark.django_db


def test_each_role_sees_what_it_may(client, personas, hsm, secondary_hsm):
    pages = ["/backups/", "/hsms/primary/backups/", "/dr-drills/"]
    for role in ("admin", "approver", "auditor"):
        client.force_login(personas[role])
        for url in pages:
            assert client.get(url).status_code == 200, (role, url)
        restore = client.get("/hsms/primary/restore/").status_code
        assert restore == (200 if role == "admin" else 403), role
    client.force_login(personas["outsider"])
    for url in pages:
        assert client.get(url).status_code == 403, url
    client.force_login(personas["auditor"])
    response = client.post("/hsms/primary/backups/", {"container": "abc"})
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_back_up_now_from_the_tab_queues_a_job(client, admin, hsm, container,
                                               django_capture_on_commit_callbacks):
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post("/hsms/primary/backups/", {"container": container,
                                                         "auth_mode": "sas"})
    job = Job.objects.get(kind="dr.backup")
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.params["container"] == container and len(queued) == 1
    bad = client.post("/hsms/primary/backups/", {"container": "NO", "auth_mode": "sas"},
                      follow=True)
    assert "container name" in bad.content.decode()
    assert Job.objects.filter(kind="dr.backup").count() == 1


def test_schedule_form_saves_within_bounds_and_refuses_outside(client, admin, hsm):
    client.force_login(admin)
    page = client.post("/hsms/primary/backups/schedules/", {
        "name": "nightly", "every_hours": 500, "at_minute": 0, "auth_mode": "sas"}, follow=True)
    assert "not saved" in page.content.decode() and not BackupSchedule.objects.exists()
    client.post("/hsms/primary/backups/schedules/", {
        "name": "nightly", "every_hours": 24, "at_minute": 30, "auth_mode": "sas",
        "keep_last": 7})
    schedule = BackupSchedule.objects.get()
    assert schedule.next_run.minute == 30 and schedule.keep_last == 7
    assert AuditEvent.objects.filter(action="backup.schedule.create").exists()
    client.post(f"/hsms/primary/backups/schedules/{schedule.pk}/delete/")
    assert not BackupSchedule.objects.exists()


def test_restore_wizard_full_restore_needs_step_up_then_approval(
        client, admin, hsm, django_capture_on_commit_callbacks):
    from portal.accounts import middleware
    from portal.accounts.middleware import SIGNED_IN_AT

    form = {"folder": "mhsm-primary-2026113009151234", "mode": "full", "auth_mode": "sas",
            "action": "start"}
    client.force_login(admin)
    session = client.session
    session[SIGNED_IN_AT] = middleware.clock() - 3600  # signed in an hour ago: too long
    session.save()
    response = client.post("/hsms/primary/restore/", form)
    assert response.status_code == 302 and "reauthenticate" in response["Location"]
    assert not ApprovalRequest.objects.exists()

    session = client.session
    session[SIGNED_IN_AT] = middleware.clock()  # signed in just now
    session.save()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/hsms/primary/restore/", form)
    pending = ApprovalRequest.objects.get(operation="restore.full")
    assert response.status_code == 302
    assert pending.payload == {"hsm_id": "primary", "folder": form["folder"],
                               "container": "mhsm-backups", "auth_mode": "sas"}
    assert not Job.objects.filter(kind="dr.restore").exists()  # nothing runs before approval


def test_restore_wizard_refuses_a_selective_restore_without_a_key(client, admin, hsm):
    client.force_login(admin)
    response = client.post("/hsms/primary/restore/", {
        "folder": "mhsm-primary-2026113009151234", "mode": "selective", "auth_mode": "sas",
        "action": "start"})
    assert response.status_code == 400
    assert "Name the key to restore." in response.content.decode()


def test_jobs_without_a_final_status_after_two_hours_are_flagged(client, admin, hsm):
    fresh = job_create(kind="dr.backup", actor=admin, hsm=hsm)
    stuck = job_create(kind="dr.restore", actor=admin, hsm=hsm)
    other = job_create(kind="keys.inventory_sync", actor=admin, hsm=hsm)
    Job.objects.filter(pk__in=(stuck.pk, other.pk)).update(
        created=timezone.now() - timedelta(hours=3), status=Job.Status.RUNNING)

    assert list(selectors.jobs_needing_attention()) == [stuck]
    assert selectors.jobs_needing_attention_count() == 1
    client.force_login(admin)
    page = client.get("/backups/").content.decode()
    assert "Needs attention" in page and f"Job #{stuck.pk}" in page
    assert f"Job #{fresh.pk}" not in page.split("Needs attention")[1].split("</section>")[0]


def test_dr_tick_runs_due_schedules_and_resumes_nothing_healthy(hsm, admin, container,
                                                                django_capture_on_commit_callbacks):
    schedule = services.schedule_save(hsm=hsm, actor=admin, request_id="r", name="hourly",
                                      every_hours=1, container=container)
    BackupSchedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now())
    with django_capture_on_commit_callbacks(execute=False):
        result = services.dr_tick()
    assert len(result["schedules"]) == 1 and result["resumed"] == []


def test_dashboard_tiles_show_stuck_jobs_and_hsms_without_a_backup(client, admin, hsm,
                                                                    secondary_hsm):
    from dr_app.models import BackupRecord

    stuck = job_create(kind="dr.backup", actor=admin, hsm=hsm)
    Job.objects.filter(pk=stuck.pk).update(created=timezone.now() - timedelta(hours=3))
    BackupRecord.objects.create(hsm=hsm, source_hsm_name="primary", container="c",
                                folder="mhsm-primary-2026113009151234", status="succeeded",
                                finished=timezone.now())
    client.force_login(admin)
    page = client.get("/").content.decode()
    tile = page.split('id="tile-dr-attention"')[1].split("</a>")[0]
    assert '<span class="tile-value">1</span>' in tile
    tile = page.split('id="tile-dr-no-backup"')[1].split("</a>")[0]
    assert '<span class="tile-value">1</span>' in tile  # the secondary has none


def test_a_drill_from_the_page_needs_a_recent_sign_in(client, admin, hsm, secondary_hsm):
    from portal.accounts import middleware
    from portal.accounts.middleware import SIGNED_IN_AT

    client.force_login(admin)
    session = client.session
    session[SIGNED_IN_AT] = middleware.clock() - 3600
    session.save()
    response = client.post("/dr-drills/", {"primary": "primary", "secondary": "secondary",
                                           "confirm_name": "secondary", "auth_mode": "sas"})
    assert response.status_code == 302 and "reauthenticate" in response["Location"]
    assert not Job.objects.filter(kind="dr.drill").exists()


def test_the_approver_sees_the_full_restore_in_context(hsm, admin):
    from dr_app.models import BackupRecord
    from portal.approvals.registry import operation

    BackupRecord.objects.create(hsm=hsm, source_hsm_name="primary", container="c",
                                folder="mhsm-primary-2026113009151234", status="succeeded",
                                key_count=12, started=timezone.now())
    shown = operation("restore.full").describe({"hsm_id": "secondary", "container": "c",
                                                "folder": "mhsm-primary-2026113009151234",
                                                "auth_mode": "sas"})
    assert shown["title"] == "Full restore of secondary from mhsm-primary-2026113009151234"
    assert ("Keys in the backup", 12) in shown["context"]
    assert ("Backup of", "primary") in shown["context"]


def test_restore_page_shows_each_check_and_where_it_stopped(client, admin, secondary_hsm):
    from portal.jobs.services import job_finish
    from tests.e2e.test_every_page import seed_restore

    job = seed_restore(secondary_hsm, admin)
    client.force_login(admin)
    page = client.get(f"/restores/{job.pk}/").content.decode()
    states = [chunk.split('"')[0] for chunk in page.split('data-state="')[1:]]
    assert states == ["passed", "passed", "failed", "skipped", "skipped", "skipped", "skipped"]
    assert "does not exist in container" in page
    backup_job = job_create(kind="dr.backup", actor=admin, hsm=secondary_hsm)
    job_finish(job_id=backup_job.pk, ok=True)
    assert client.get(f"/restores/{backup_job.pk}/").status_code == 404  # restores only
