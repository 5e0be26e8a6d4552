"""The DR drill runbook end to end against the emulator: backups, restore into the
secondary, comparison, RTO/RPO report, history (page and API)."""
import pytest

from dr_app import services, tasks
from dr_app.models import BackupRecord, DrDrill
from portal import gateway
from portal.audit.models import AuditEvent
from portal.errors import BadInput
from portal.jobs.models import Job
from tests.dr_app.conftest import run_job

pytestmark = pytest.mark.django_db


def test_drill_restores_the_primary_into_the_secondary_and_reports_rto_rpo(
        hsm, secondary_hsm, admin, container, make_key, api_as,
        django_capture_on_commit_callbacks):
    key = make_key()
    make_key(secondary_hsm)  # something the restore must remove
    with django_capture_on_commit_callbacks(execute=False):
        drill = services.drill_start(primary=hsm, secondary=secondary_hsm, actor=admin,
                                     request_id="r-drill", container=container,
                                     confirm_name="secondary")

    run_job(tasks.drill_run, drill.job_id)

    drill.refresh_from_db()
    job = Job.objects.get(pk=drill.job_id)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert drill.passed is True and job.progress == 100
    report = drill.report
    comparison = report["comparison"]
    assert comparison["keys_primary"] == comparison["keys_secondary"] >= 1
    assert comparison["versions_primary"] == comparison["versions_secondary"]
    assert comparison["role_assignments_primary"] == comparison["role_assignments_secondary"] >= 1
    assert not comparison["keys_missing"] and not comparison["keys_extra"]
    assert key in {k.name for k in gateway.keys(secondary_hsm).list_properties_of_keys()}
    # RTO runs from the simulated loss to the verified secondary; RPO is the age of the
    # restored backup at the loss: both measured, both positive, RPO < RTO here.
    assert 0 < drill.rpo_seconds < drill.rto_seconds < 600
    assert report["rto_seconds"] == round(drill.rto_seconds, 1)
    # The runbook's steps, in order: primary backup, secondary safety backup, restore.
    ops = job.params["ops"]
    assert ops["primary_backup"]["finished_at"] <= ops["secondary_backup"]["requested_at"] \
        <= ops["restore"]["requested_at"]
    assert BackupRecord.objects.filter(job=job, hsm=secondary_hsm,
                                       status="succeeded").exists()
    assert report["source_folder"] == BackupRecord.objects.get(job=job, hsm=hsm).folder
    assert AuditEvent.objects.filter(action="drill.report", outcome="succeeded").exists()

    history = api_as(admin).get("/api/v1/dr-drills/").json()["results"]
    assert [d["id"] for d in history] == [drill.pk]
    assert history[0]["passed"] is True and history[0]["rto_seconds"] > 0
    detail = api_as(admin).get(f"/api/v1/dr-drills/{drill.pk}/").json()
    assert detail["report"]["comparison"]["keys_primary"] == comparison["keys_primary"]


def test_drill_needs_two_hsms_and_the_typed_name(hsm, secondary_hsm, admin):
    with pytest.raises(BadInput):
        services.drill_start(primary=hsm, secondary=hsm, actor=admin, request_id="r",
                             confirm_name="primary")
    with pytest.raises(BadInput) as refused:
        services.drill_start(primary=hsm, secondary=secondary_hsm, actor=admin,
                             request_id="r", confirm_name="primary")
    assert "confirm_name" in refused.value.fields
    assert not DrDrill.objects.exists()


def test_drill_api_refuses_readers_and_bad_input(hsm, secondary_hsm, admin, auditor, api_as):
    assert api_as(auditor).get("/api/v1/dr-drills/").status_code == 200
    assert api_as(auditor).post("/api/v1/dr-drills/", {}, format="json").status_code == 403
    bad = api_as(admin).post("/api/v1/dr-drills/", {"primary": "primary",
                                                    "secondary": "secondary",
                                                    "confirm_name": "nope"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["confirm_name"]
