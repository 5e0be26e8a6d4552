"""Restores through the portal: full into the secondary (with approval), selective of one
key, the readiness gate, and the 30-minute rule handled by a safety backup."""
import pytest
from azure.core.exceptions import HttpResponseError

from dr_app import services, tasks
from dr_app.models import BackupRecord
from portal import gateway
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.dr_app.conftest import folders_in, run_job

pytestmark = pytest.mark.django_db


def _backup(hsm, admin, container, capture) -> BackupRecord:
    with capture(execute=False):
        job = services.backup_start(hsm=hsm, actor=admin, request_id="r", container=container)
    run_job(tasks.backup_run, job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    return BackupRecord.objects.get(job=job)


def _restore(capture, **kwargs) -> Job:
    with capture(execute=False):
        result = services.restore_start(request_id="r-restore", **kwargs)
    assert isinstance(result, Job), result
    run_job(tasks.restore_run, result.pk)
    result.refresh_from_db()
    return result


def _key_names(hsm) -> set[str]:
    return {k.name for k in gateway.keys(hsm).list_properties_of_keys()}


def test_selective_restore_of_one_key_into_the_secondary(
        hsm, secondary_hsm, admin, container, make_key, django_capture_on_commit_callbacks):
    wanted, other = make_key(), make_key()
    source = _backup(hsm, admin, container, django_capture_on_commit_callbacks)
    assert wanted not in _key_names(secondary_hsm)

    job = _restore(django_capture_on_commit_callbacks, hsm_id="secondary", folder=source.folder,
                   container=container, key_name=wanted, actor=admin)

    assert job.status == Job.Status.SUCCEEDED, job.error
    on_secondary = _key_names(secondary_hsm)
    assert wanted in on_secondary and other not in on_secondary
    primary_versions = [v.version for v in gateway.keys(hsm).list_properties_of_key_versions(wanted)]
    secondary_versions = [v.version for v in
                          gateway.keys(secondary_hsm).list_properties_of_key_versions(wanted)]
    assert sorted(primary_versions) == sorted(secondary_versions)
    # Every gate check passed and is recorded on the job, in order.
    assert [c["check"] for c in job.params["gate"]][:5] == list(services.GATE_CHECKS[:5])
    assert all(c["ok"] for c in job.params["gate"])
    assert [c["check"] for c in job.params["gate"]] == list(services.GATE_CHECKS)
    assert job.result["readiness"].startswith("All 6 checks passed")
    assert list(AuditEvent.objects.filter(action="restore.selective").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "succeeded"]


def test_full_restore_into_the_secondary_needs_approval_then_replaces_its_keys(
        hsm, secondary_hsm, admin, approver, container, make_key,
        django_capture_on_commit_callbacks):
    from portal.approvals.models import ApprovalRequest
    from portal.approvals.services import approval_decide

    on_primary = make_key()
    only_on_secondary = make_key(secondary_hsm)
    source = _backup(hsm, admin, container, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=False):
        pending = services.restore_start(hsm_id="secondary", folder=source.folder,
                                         container=container, actor=admin, request_id="r1")
    assert isinstance(pending, ApprovalRequest)
    assert not Job.objects.filter(kind="dr.restore").exists()  # nothing runs before approval
    with django_capture_on_commit_callbacks(execute=False):
        approval_decide(approval_id=pending.pk, actor=approver, decision="approve")
    # The approvals engine's job runs the registered service with the stored payload.
    from portal.approvals.services import approval_execute

    execution = Job.objects.get(kind="approval.execute")
    with django_capture_on_commit_callbacks(execute=False):
        approval_execute(job_id=execution.pk)
    pending.refresh_from_db()
    assert pending.status == "executed", pending.failure_reason
    job = Job.objects.get(kind="dr.restore")
    assert job.actor == admin and job.params["approval"] == pending.pk
    run_job(tasks.restore_run, job.pk)
    job.refresh_from_db()

    assert job.status == Job.Status.SUCCEEDED, job.error
    names = _key_names(secondary_hsm)
    assert on_primary in names
    assert only_on_secondary not in names  # the secondary returned to the backup's state
    assert names == _key_names(hsm)  # nothing was created on the primary since its backup
    assert list(AuditEvent.objects.filter(action="restore.full").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "succeeded"]


def test_gate_takes_the_safety_backup_the_30_minute_rule_needs(
        hsm, secondary_hsm, admin, container, blobs, emulator, make_key,
        django_capture_on_commit_callbacks):
    wanted = make_key()
    source = _backup(hsm, admin, container, django_capture_on_commit_callbacks)
    # Every earlier backup of the secondary is older than 30 minutes: the service's rule
    # now refuses a full restore, as a direct SDK call shows.
    emulator.age_backups(3600, hsm="secondary")
    from portal.gateway import backups as storage

    folder_url = storage.storage_folder_url(container, source.folder)
    with pytest.raises(HttpResponseError):
        gateway.backup(secondary_hsm).begin_restore(
            folder_url, sas_token=storage.storage_sas(container, purpose="restore")).result()

    # The portal's restore takes a backup of the secondary first, waits for it, restores.
    with django_capture_on_commit_callbacks(execute=False):
        job = services.restore_start(hsm_id="secondary", folder=source.folder,
                                     container=container, key_name=wanted, actor=admin,
                                     request_id="r")
    run_job(tasks.restore_run, job.pk)
    job.refresh_from_db()

    assert job.status == Job.Status.SUCCEEDED, job.error
    ops = job.params["ops"]
    assert ops["safety_backup"]["done"] and ops["restore"]["done"]
    assert ops["safety_backup"]["finished_at"] <= ops["restore"]["requested_at"]
    safety = BackupRecord.objects.get(job=job, hsm=secondary_hsm)
    assert safety.status == BackupRecord.Status.SUCCEEDED
    assert safety.folder in folders_in(blobs, container)
    assert any("taking a safety backup" in line["text"] for line in job.log)
    assert job.params["gate"][-1]["detail"].startswith("safety backup taken")
    assert "safety backup taken" in job.result["readiness"]

    # A second restore right after finds that recent backup and takes no other.
    with django_capture_on_commit_callbacks(execute=False):
        again = services.restore_start(hsm_id="secondary", folder=source.folder,
                                       container=container, key_name=wanted, actor=admin,
                                       request_id="r2")
    run_job(tasks.restore_run, again.pk)
    again.refresh_from_db()
    assert again.status == Job.Status.SUCCEEDED, again.error
    assert "safety_backup" not in again.params["ops"]
    assert not BackupRecord.objects.filter(job=again).exists()


def test_gate_stops_before_anything_when_the_folder_is_missing(
        hsm, secondary_hsm, admin, container, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = services.restore_start(hsm_id="secondary", folder="mhsm-primary-2020010100000000",
                                     container=container, key_name="some-key", actor=admin,
                                     request_id="r")
    run_job(tasks.restore_run, job.pk)
    job.refresh_from_db()

    assert job.status == Job.Status.FAILED
    assert job.error.startswith("Not ready to restore — Folder exists and is complete")
    assert "ops" not in job.params  # nothing was asked of the HSM
    assert [c["ok"] for c in job.params["gate"]] == [True, True, False]
    assert not AuditEvent.objects.filter(action__in=("restore.full", "restore.selective",
                                                     "backup.create")).exists()


def test_restore_api_full_answers_202_with_the_approval_request(
        hsm, secondary_hsm, admin, auditor, api_as, container, django_capture_on_commit_callbacks):
    client = api_as(admin)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/api/v1/hsms/secondary/restores/",
                               {"folder": "mhsm-primary-2026113009151234",
                                "container": container}, format="json")
    # A full restore needs step-up first (an API token session has no recent browser sign-in)
    # or answers 202 with the approval request.
    assert response.status_code in (202, 401), response.content
    if response.status_code == 202:
        assert "approval_request" in response.json()
    else:
        assert response.json()["error"]["code"] == "step_up_required"

    bad = client.post("/api/v1/hsms/secondary/restores/",
                      {"folder": "../etc", "key_name": "k"}, format="json")
    assert bad.status_code == 400 and "folder" in bad.json()["error"]["fields"]
    assert api_as(auditor).post("/api/v1/hsms/secondary/restores/",
                                {"folder": "x", "key_name": "k"}, format="json").status_code == 403


def test_an_operation_asked_but_never_recorded_is_not_started_again(
        hsm, admin, container, emulator, django_capture_on_commit_callbacks):
    """A worker died between the HSM accepting the backup and storing its token: the next
    worker must not start a second backup; it fails the job with what to check."""
    with django_capture_on_commit_callbacks(execute=False):
        job = services.backup_start(hsm=hsm, actor=admin, request_id="r", container=container)
    Job.objects.filter(pk=job.pk).update(params={**job.params, "ops": {"backup": {
        "requested_at": "2026-11-30T09:00:00+00:00"}}})
    before = len(emulator.backup_state("primary")["jobs"])

    run_job(tasks.backup_run, job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "was not started again" in job.error
    assert len(emulator.backup_state("primary")["jobs"]) == before


def test_selective_restore_with_the_managed_identity(
        hsm, secondary_hsm, admin, container, emulator, make_key,
        django_capture_on_commit_callbacks):
    from tests.dr_app.test_backup import _give_hsm_managed_identity

    wanted = make_key()
    source = _backup(hsm, admin, container, django_capture_on_commit_callbacks)
    _give_hsm_managed_identity(emulator, "secondary")

    job = _restore(django_capture_on_commit_callbacks, hsm_id="secondary", folder=source.folder,
                   container=container, key_name=wanted, actor=admin,
                   auth_mode="managed_identity")

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert wanted in _key_names(secondary_hsm)


def test_the_sas_given_to_the_hsm_is_least_privilege_and_short_lived(azure_settings, storage,
                                                                     container):
    from datetime import datetime, timedelta, timezone
    from urllib.parse import parse_qs

    from portal.gateway import backups as storage_gateway

    azure_settings.DR_SAS_MINUTES = 30
    for purpose, permissions in (("backup", "cw"), ("restore", "rl")):
        fields = {k: v[0] for k, v in parse_qs(storage_gateway.storage_sas(
            container, purpose=purpose)).items()}
        assert fields["sp"] == permissions
        assert fields["sr"] == "c" and fields["spr"] == "https"  # one container, HTTPS only
        expiry = datetime.fromisoformat(fields["se"].replace("Z", "+00:00"))
        assert timedelta(minutes=29) < expiry - datetime.now(timezone.utc) <= timedelta(minutes=30)
