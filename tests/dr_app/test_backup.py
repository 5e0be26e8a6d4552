"""Full backups through the portal: SAS and managed identity, catalog, audit, API, schedules,
retention. The emulator and its Azurite are real; blobs are read with azure-storage-blob."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from dr_app import services, tasks
from dr_app.models import BackupRecord, BackupSchedule
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.dr_app.conftest import folders_in, run_job

pytestmark = pytest.mark.django_db


def _backup(hsm, admin, container, auth_mode="sas", django_capture_on_commit_callbacks=None):
    with django_capture_on_commit_callbacks(execute=False):
        job = services.backup_start(hsm=hsm, actor=admin, request_id="r-backup",
                                    container=container, auth_mode=auth_mode)
    run_job(tasks.backup_run, job.pk)
    job.refresh_from_db()
    return job


def test_backup_via_sas_writes_a_folder_listed_by_azure_storage_blob(
        hsm, admin, container, blobs, make_key, django_capture_on_commit_callbacks):
    names = {make_key(), make_key()}

    job = _backup(hsm, admin, container, django_capture_on_commit_callbacks=
                  django_capture_on_commit_callbacks)

    assert job.status == Job.Status.SUCCEEDED, job.error
    record = BackupRecord.objects.get(job=job)
    assert record.status == BackupRecord.Status.SUCCEEDED
    assert re.fullmatch(r"mhsm-primary-\d{16}", record.folder)
    assert job.result["folder"] == record.folder
    # The HSM's operation id was stored on the job (the resumable part).
    assert re.fullmatch(r"[0-9a-f]{32}", job.external_operation_id)
    assert job.params["ops"]["backup"]["operation_id"] == job.external_operation_id
    # What an operator sees in the storage account: one folder, with its manifest and data.
    listing = folders_in(blobs, container)
    assert list(listing) == [record.folder]
    assert "manifest.json" in listing[record.folder]
    assert any(name.startswith("keys-") for name in listing[record.folder])
    assert record.key_count is not None and record.key_count >= len(names)
    assert record.size_bytes and record.size_bytes > 0
    assert record.blob_count == len(listing[record.folder])
    actions = list(AuditEvent.objects.filter(action__startswith="backup.").order_by("seq")
                   .values_list("action", "outcome"))
    assert actions == [("backup.request", "recorded"), ("backup.create", "intent"),
                       ("backup.create", "succeeded")]
    # The SAS given to the HSM is in no row: not the job, not the audit trail.
    assert "sig=" not in str(job.params) and "sig=" not in str(job.log)
    assert not AuditEvent.objects.filter(detail__icontains="sig=").exists()


def test_backup_via_managed_identity(hsm, admin, container, blobs, emulator,
                                     django_capture_on_commit_callbacks):
    _give_hsm_managed_identity(emulator, "primary")

    job = _backup(hsm, admin, container, auth_mode="managed_identity",
                  django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)

    assert job.status == Job.Status.SUCCEEDED, job.error
    record = BackupRecord.objects.get(job=job)
    assert record.auth_mode == "managed_identity"
    assert list(folders_in(blobs, container)) == [record.folder]


def _give_hsm_managed_identity(emulator, name: str) -> None:
    """Set a user-assigned identity on the HSM through the emulator's Resource Manager, as
    `az keyvault update-hsm --mi-user-assigned` does (azure-mgmt-keyvault, an ARM LRO)."""
    import uuid

    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.keyvault.models import (ManagedHsm, ManagedServiceIdentity,
                                            UserAssignedIdentity)

    group = emulator.endpoints["resource_group"]
    subscription = emulator.endpoints["hsm_resource_ids"][name].split("/")[2]
    mgmt = KeyVaultManagementClient(emulator.credential(), subscription,
                                    base_url=emulator.endpoints["arm"],
                                    credential_scopes=["https://management.azure.com/.default"],
                                    connection_verify=emulator.ca_bundle)
    identity = (f"/subscriptions/{subscription}/resourceGroups/identities/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/portal-dr-{uuid.uuid4().hex[:6]}")
    mgmt.managed_hsms.begin_update(group, name, ManagedHsm(
        location="westeurope", identity=ManagedServiceIdentity(
            type="UserAssigned", user_assigned_identities={identity: UserAssignedIdentity()}))
    ).result()


def test_backup_failure_is_a_failed_job_with_a_sentence(hsm, admin, container, emulator,
                                                        django_capture_on_commit_callbacks):
    emulator.fail("POST", "/backup", status=403, count=-1)

    job = _backup(hsm, admin, container, django_capture_on_commit_callbacks=
                  django_capture_on_commit_callbacks)

    assert job.status == Job.Status.FAILED
    assert "refused" in job.error
    assert BackupRecord.objects.get(job=job).status == BackupRecord.Status.FAILED
    assert list(AuditEvent.objects.filter(action="backup.create").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "failed"]


def test_catalog_adds_folders_found_in_storage(hsm, admin, container, blobs,
                                               django_capture_on_commit_callbacks):
    job = _backup(hsm, admin, container, django_capture_on_commit_callbacks=
                  django_capture_on_commit_callbacks)
    folder = job.result["folder"]
    BackupRecord.objects.all().delete()  # as if the portal had not run it

    assert services.catalog_refresh(hsm=hsm, container=container, actor=admin) == 1

    found = BackupRecord.objects.get(folder=folder)
    assert found.status == BackupRecord.Status.FOUND and found.hsm == hsm
    assert found.key_count is not None and found.size_bytes > 0
    assert services.catalog_refresh(hsm=hsm, container=container) == 0  # idempotent
    assert found.started is not None and found.finished >= found.started  # from the manifest
    # A folder deleted outside the portal is marked so at the next read.
    blobs.get_container_client(container).delete_blobs(*[
        b.name for b in blobs.get_container_client(container).list_blobs()])
    services.catalog_refresh(hsm=hsm, container=container)
    found.refresh_from_db()
    assert found.status == BackupRecord.Status.DELETED and "outside the portal" in found.error
    assert list(AuditEvent.objects.filter(action="backup.catalog.refresh").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "succeeded"] * 3


def test_pre_backup_check(hsm, admin, container):
    assert services.pre_backup_check(hsm=hsm, actor=admin, request_id="r",
                                     container=container)["ok"] is True
    assert list(AuditEvent.objects.filter(action="backup.precheck").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "succeeded"]


def test_api_starts_a_backup_and_refuses_others(hsm, admin, auditor, api_as, container,
                                                django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = api_as(admin).post("/api/v1/hsms/primary/backups/",
                                      {"container": container, "auth_mode": "sas"},
                                      format="json")
    assert response.status_code == 202, response.content
    assert response.json()["kind"] == "dr.backup"

    bad = api_as(admin).post("/api/v1/hsms/primary/backups/", {"container": "Bad_Name!"},
                             format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_input"
    assert "container" in bad.json()["error"]["fields"]

    assert api_as(auditor).post("/api/v1/hsms/primary/backups/", {}, format="json") \
        .status_code == 403
    assert api_as(auditor).get("/api/v1/hsms/primary/backups/").status_code == 200


def test_schedule_bounds_and_one_start_per_due_time(hsm, admin, container,
                                                    django_capture_on_commit_callbacks):
    from portal.errors import BadInput

    with pytest.raises(BadInput):
        services.schedule_save(hsm=hsm, actor=admin, request_id="r", name="x", every_hours=0)
    with pytest.raises(BadInput):
        services.schedule_save(hsm=hsm, actor=admin, request_id="r", name="x", every_hours=2,
                               keep_last=0)
    schedule = services.schedule_save(hsm=hsm, actor=admin, request_id="r", name="hourly",
                                      every_hours=1, container=container, keep_last=1)
    BackupSchedule.objects.filter(pk=schedule.pk).update(
        next_run=timezone.now() - timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=False):
        first = services.schedules_run_due()
        second = services.schedules_run_due()  # the same due time is claimed once

    assert len(first) == 1 and second == []
    schedule.refresh_from_db()
    assert schedule.next_run > timezone.now()
    assert Job.objects.get(pk=first[0]).params["schedule"] == schedule.pk


def test_retention_keeps_the_last_n_and_audits_each_deletion(
        hsm, admin, container, blobs, django_capture_on_commit_callbacks):
    schedule = services.schedule_save(hsm=hsm, actor=admin, request_id="r", name="keep2",
                                      every_hours=24, container=container, keep_last=2)
    folders = []
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=False):
            job = services.backup_start(hsm=hsm, actor=admin, request_id="r",
                                        container=container, schedule=schedule)
        run_job(tasks.backup_run, job.pk)
        folders.append(Job.objects.get(pk=job.pk).result["folder"])
    assert len(folders_in(blobs, container)) == 3

    deleted = services.retention_apply(schedule=schedule)

    assert deleted == [folders[0]]
    assert sorted(folders_in(blobs, container)) == sorted(folders[1:])
    assert BackupRecord.objects.get(folder=folders[0]).status == BackupRecord.Status.DELETED
    assert list(AuditEvent.objects.filter(action="backup.delete").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "succeeded"]


def test_a_busy_hsm_makes_the_next_backup_wait_not_collide(
        hsm, admin, container, emulator, settings, django_capture_on_commit_callbacks):
    from dr_app.models import HsmOperationSlot

    settings.DR_SLOT_WAIT_SECONDS = 1
    holder = Job.objects.create(kind="dr.restore", status=Job.Status.RUNNING, hsm=hsm)
    HsmOperationSlot.objects.create(hsm=hsm, job=holder)
    before = len(emulator.backup_state("primary")["jobs"])

    job = _backup(hsm, admin, container, django_capture_on_commit_callbacks=
                  django_capture_on_commit_callbacks)

    assert job.status == Job.Status.FAILED and f"busy with job {holder.pk}" in job.error
    assert len(emulator.backup_state("primary")["jobs"]) == before  # the HSM was not asked
    # Once the holder has finished, the slot is free for the next job.
    Job.objects.filter(pk=holder.pk).update(status=Job.Status.SUCCEEDED)
    job = _backup(hsm, admin, container, django_capture_on_commit_callbacks=
                  django_capture_on_commit_callbacks)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert HsmOperationSlot.objects.get(hsm=hsm).job is None  # freed when done
