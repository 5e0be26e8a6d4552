"""A real worker process SIGKILLed while it polls the HSM: another worker resumes the same
operation from the stored continuation token, and exactly one backup is started."""
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dr_app import services
from dr_app.models import JobLease
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.dr_app.conftest import folders_in, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _worker(tmp_path: Path, name: str, env: dict) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
         "--concurrency", "1", "--without-heartbeat", "--without-gossip", "--without-mingle",
         "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def start_worker(emulator, settings, tmp_path):
    """`start_worker(name)`: a real worker on this test's database and broker (3-second job
    lease); each one started is stopped after the test."""
    from portal.celery import app
    from portal.gateway.emulator_config import emulator_environment

    settings.DR_JOB_LEASE_SECONDS = 3
    env = {**os.environ, **emulator_environment(emulator.endpoints),
           "DJANGO_SETTINGS_MODULE": "portal.settings.test",
           "TEST_DATABASE_URL": _database_url(),
           "TEST_CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
           "PORTAL_VAR_DIR": str(tmp_path), "AZURE_RETRY_TOTAL": "0",
           "DR_JOB_LEASE_SECONDS": "3"}
    env.pop("DATABASE_OWNER_URL", None)
    app.control.purge()  # nothing left over on this test broker
    started: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        started.append(_worker(tmp_path, name, env))
        return started[-1]

    yield start
    for process in started:
        _stop(process)


def _kill_and_take_over(first: subprocess.Popen, job_pk: int, start, *, what: str) -> Job:
    """SIGKILL the polling worker; beat's dr_tick hands the job to a second one: the job, done."""
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    assert Job.objects.get(pk=job_pk).status == Job.Status.RUNNING
    start("second")
    wait_for(lambda: services.jobs_resume_stale() == [job_pk], timeout=30,
             what="the lease to lapse and the job to be taken over")
    return wait_for(lambda: (j := Job.objects.get(pk=job_pk)).is_finished and j,
                    timeout=180, what=what)


def _backup_jobs(emulator) -> list[dict]:
    return [j for j in emulator.backup_state("primary")["jobs"] if j["kind"] == "backup"]


@pytest.mark.timeout(300)
def test_worker_killed_while_polling_is_resumed_by_another_with_one_backup(
        transactional_db, hsm, admin, container, blobs, emulator, start_worker):
    started_before = len(_backup_jobs(emulator))
    # A slow HSM: the backup stays in progress 20 s, and every status poll takes 1.5 s, so
    # the worker is inside a poll (or between two) when it dies.
    emulator.hold_backup_jobs(20000, hsm="primary")
    emulator.fail("GET", "/backup/*/pending", status=None, latency_ms=1500, hsm="primary")
    first = start_worker("first")
    try:
        job = services.backup_start(hsm=hsm, actor=admin, request_id="r-kill",
                                    container=container)
        # Wait until the worker has the HSM's operation id stored and is polling it.
        wait_for(lambda: "the HSM reports" in Job.objects.get(pk=job.pk).step, timeout=90,
                 what="the first worker to poll the backup")
        stored = Job.objects.get(pk=job.pk)
        operation = stored.external_operation_id
        assert operation and stored.params["ops"]["backup"]["continuation"]
        done = _kill_and_take_over(first, job.pk, start_worker,
                                   what="the second worker to finish the job")

        assert done.status == Job.Status.SUCCEEDED, done.error
        assert done.external_operation_id == operation  # the same HSM operation, resumed
        assert done.claim_token.startswith("resume-")
        assert JobLease.objects.get(job_id=job.pk).takeovers == 1
        assert any("resuming the HSM's operation" in line["text"] for line in done.log)
        # Exactly one backup was started on the HSM, and one folder written.
        assert len(_backup_jobs(emulator)) == started_before + 1
        assert list(folders_in(blobs, container)) == [done.result["folder"]]
        assert AuditEvent.objects.filter(action="job.resume").count() == 1
        assert list(AuditEvent.objects.filter(action="backup.create").values_list(
            "outcome", flat=True).order_by("seq")) == ["intent", "succeeded"]
    finally:
        emulator.hold_backup_jobs(0, hsm="primary")
        emulator.clear_faults()


@pytest.mark.timeout(300)
def test_worker_killed_while_polling_a_restore_is_resumed_with_one_restore(
        transactional_db, hsm, secondary_hsm, admin, container, emulator, start_worker):
    from portal import gateway
    from tests.dr_app.conftest import run_job
    from dr_app import tasks

    name = f"resume-{uuid.uuid4().hex[:8]}"
    gateway.keys(hsm).create_rsa_key(name, size=2048)
    backup = services.backup_start(hsm=hsm, actor=admin, request_id="r", container=container)
    run_job(tasks.backup_run, backup.pk)  # here, before any fault: the folder to restore
    folder = Job.objects.get(pk=backup.pk).result["folder"]

    def restores() -> list[dict]:
        return [j for j in emulator.backup_state("secondary")["jobs"] if j["kind"] == "selective"]
    before = len(restores())
    emulator.hold_backup_jobs(20000, hsm="secondary")
    emulator.fail("GET", "/restore/*/pending", status=None, latency_ms=1500, hsm="secondary")
    first = start_worker("first")
    try:
        job = services.restore_start(hsm_id="secondary", folder=folder, container=container,
                                     key_name=name, actor=admin, request_id="r-kill")
        wait_for(lambda: (j := Job.objects.get(pk=job.pk)).step.startswith("Restore of key")
                 and "the HSM reports" in j.step, timeout=150,
                 what="the first worker to poll the restore")
        done = _kill_and_take_over(first, job.pk, start_worker,
                                   what="the second worker to finish the restore")

        assert done.status == Job.Status.SUCCEEDED, done.error
        assert len(restores()) == before + 1  # one selective restore, resumed not repeated
        assert name in {k.name for k in gateway.keys(secondary_hsm).list_properties_of_keys()}
        assert any("resuming the HSM's operation" in line["text"] for line in done.log)
    finally:
        emulator.hold_backup_jobs(0, hsm="secondary")
        emulator.clear_faults()


@pytest.mark.timeout(300)
def test_two_backups_of_one_hsm_at_once_take_turns(transactional_db, hsm, admin, container,
                                                  blobs, emulator, celery_worker):
    """Two workers, two backups of one HSM: the second waits for the HSM's slot instead of
    hitting the service's one-operation-at-a-time 409."""
    emulator.hold_backup_jobs(3000, hsm="primary")
    try:
        first = services.backup_start(hsm=hsm, actor=admin, request_id="r1", container=container)
        second = services.backup_start(hsm=hsm, actor=admin, request_id="r2",
                                       container=container)
        def finished():
            both = list(Job.objects.filter(pk__in=(first.pk, second.pk)))
            return both if all(j.is_finished for j in both) else None
        jobs = wait_for(finished, timeout=120, what="both backups to finish")
    finally:
        emulator.hold_backup_jobs(0, hsm="primary")
    assert [j.status for j in jobs] == [Job.Status.SUCCEEDED] * 2, [j.error for j in jobs]
    waited = [j for j in jobs if any("is busy with job" in line["text"] for line in j.log)]
    assert len(waited) == 1  # they overlapped, and one took its turn
    assert len(folders_in(blobs, container)) == 2
