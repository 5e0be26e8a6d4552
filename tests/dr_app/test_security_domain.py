"""Security domain through the portal, against the emulator through the official
SecurityDomainClient: activation of an un-activated HSM (download with custodian
certificates + quorum, handed over once), init-recovery (exchange key) on a fresh HSM,
upload of the blob the custodians prepared offline (approval + step-up), activation status.

The custodians' side (private keys, restore-blob) is tests/support/sd_custodian.py, which
does what `az keyvault security-domain restore-blob` does; the portal never sees the keys.
"""
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization

from dr_app import security_domain as services
from dr_app.models_sd import Custodian, SecurityDomainFile, SecurityDomainState
from dr_app.security_domain_tasks import security_domain_activate_run, security_domain_upload_run
from portal.approvals.models import ApprovalRequest
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.factories import user_in_role
from tests.support.approvals import approve_and_run
from tests.support.sd_custodian import make_custodians, restore_blob
from tests.support.sessions import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def sd_emulator(tmp_path_factory):
    """An emulator of its own with two HSMs that start un-activated (each test provisions
    the one it uses again, so tests do not depend on each other)."""
    from tests.support.emulator import EmulatorProcess

    process = EmulatorProcess(tmp_path_factory.mktemp("sd-emulator"), hsms=("source", "target"),
                              unactivated=("source", "target"), extra_args=("--no-storage",))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def sd_settings(settings, sd_emulator, tmp_path):
    from portal import gateway
    from portal.gateway.emulator_config import apply_to_settings

    apply_to_settings(settings, sd_emulator.endpoints)
    settings.AZURE_RETRY_TOTAL = 0
    settings.VAR_DIR = tmp_path  # the encrypted stash lives here
    settings.PORTAL_SD_POLL_SECONDS = 60
    gateway.reset_clients()
    yield settings
    gateway.reset_clients()


def _hsm(sd_emulator, name):
    from portal.gateway.models import HsmInstance

    sd_emulator.provision(name)
    return HsmInstance.objects.create(name=name, uri=sd_emulator.endpoints["hsms"][name],
                                      region="emulator")


@pytest.fixture
def source(db, sd_settings, sd_emulator):
    return _hsm(sd_emulator, "source")


@pytest.fixture
def target(db, sd_settings, sd_emulator):
    return _hsm(sd_emulator, "target")


@pytest.fixture
def custodians():
    return make_custodians(3)


def pem(custodian) -> str:
    return custodian.certificate.public_bytes(serialization.Encoding.PEM).decode()


def activate(client, hsm, custodians, quorum=2) -> Job:
    """Activation through the API, its job run here as a worker would."""
    body = {"quorum": quorum, "custodians": [
        {"name": c.name, "email": f"{c.name}@example.test", "certificate": pem(c)}
        for c in custodians]}
    response = client.post(f"/api/v1/hsms/{hsm.name}/security-domain/download/", body,
                           content_type="application/json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    security_domain_activate_run.apply(args=[job_id], task_id=f"activate-{job_id}")
    return Job.objects.get(pk=job_id)


def test_un_activated_hsm_is_activated_through_the_portal(client, admin, source, custodians):
    signed_in(client, admin)
    status = client.get(f"/api/v1/hsms/{source.name}/security-domain/").json()
    assert status["activation"] == "not_activated"

    job = activate(client, source, custodians, quorum=2)

    assert job.status == Job.Status.SUCCEEDED, job.error
    state = SecurityDomainState.objects.get(hsm=source)
    assert (state.activation, state.quorum) == ("active", 2)
    assert list(Custodian.objects.filter(hsm=source).values_list("status", flat=True)) == \
        ["active"] * 3
    assert client.get(f"/api/v1/hsms/{source.name}/security-domain/").json()["activation"] == \
        "active"
    # The security domain is handed over once, to the activating admin, and it is the real
    # one: the custodians' keys open it (restore_blob decrypts a quorum of its shares).
    url = f"/api/v1/hsms/{source.name}/security-domain/download/{job.pk}/"
    other = user_in_role("erin-admin", "admin")
    assert signed_in(client, other).post(url).status_code == 403
    first = signed_in(client, admin).post(url)
    assert first.status_code == 200 and first["Cache-Control"] == "no-store"
    document = json.loads(first.content)
    assert {"SharedKeys", "EncData"} <= set(document)
    second = client.post(url)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "already_downloaded"
    assert not SecurityDomainFile.objects.filter(consumed__isnull=True).exists()
    downloads = list(AuditEvent.objects.filter(action="security_domain.download")
                     .order_by("seq").values_list("outcome", flat=True))
    assert downloads == ["intent", "succeeded", "intent", "failed"]
    # Audited without the content: no audit row or job row carries the security domain.
    sd_text = first.content.decode()
    for detail in AuditEvent.objects.values_list("detail", flat=True):
        assert document["EncData"]["data"][0]["compact_jwe"] not in json.dumps(detail)
    assert sd_text[:40] not in json.dumps(list(Job.objects.values("params", "result", "log")))


def test_activation_bounds_are_sentences(client, admin, source, custodians):
    signed_in(client, admin)
    url = f"/api/v1/hsms/{source.name}/security-domain/download/"
    two = {"quorum": 2, "custodians": [{"name": c.name, "certificate": pem(c)}
                                       for c in custodians[:2]]}
    assert client.post(url, two, content_type="application/json").status_code == 400
    too_high = {"quorum": 4, "custodians": [{"name": c.name, "certificate": pem(c)}
                                            for c in custodians]}
    response = client.post(url, too_high, content_type="application/json")
    assert response.status_code == 400
    assert "quorum" in response.json()["error"]["fields"]
    twice = {"quorum": 2, "custodians": [{"name": f"p{i}", "certificate": pem(custodians[0])}
                                         for i in range(3)]}
    response = client.post(url, twice, content_type="application/json")
    assert response.status_code == 400 and "given twice" in response.json()["error"]["message"]
    not_pem = {"quorum": 2, "custodians": [{"name": f"p{i}", "certificate": "hello"}
                                           for i in range(3)]}
    assert client.post(url, not_pem, content_type="application/json").status_code == 400
    assert not Job.objects.filter(kind=services.ACTIVATE_KIND).exists()


def test_recovery_moves_the_security_domain_to_a_fresh_hsm(
        client, admin, source, target, custodians, django_capture_on_commit_callbacks):
    signed_in(client, admin)
    job = activate(client, source, custodians, quorum=2)
    saved = client.post(f"/api/v1/hsms/{source.name}/security-domain/download/{job.pk}/").content

    # 1. init-recovery on the fresh HSM: its exchange key (PEM, as the CLI writes it).
    assert client.get(f"/api/v1/hsms/{target.name}/security-domain/").json()["activation"] == \
        "not_activated"
    key = client.post(f"/api/v1/hsms/{target.name}/security-domain/init-recovery/")
    assert key.status_code == 200, key.content
    exchange_pem = key.json()["pem"]
    assert exchange_pem.startswith("-----BEGIN CERTIFICATE-----")
    # 2. Offline, two custodians (the quorum) prepare the blob for that exchange key.
    blob = restore_blob(saved.decode(), exchange_pem, custodians[:2])
    # 3. Upload: it waits for approval, bound to the blob's SHA-256.
    with django_capture_on_commit_callbacks(execute=False):
        pending = client.post(f"/api/v1/hsms/{target.name}/security-domain/upload/",
                              {"value": blob, "justification": "DR test",
                               "source_hsm": source.name},
                              content_type="application/json")
    assert pending.status_code == 202, pending.content
    request = pending.json()["approval_request"]
    assert request["operation"] == "security_domain.upload"
    stashed = SecurityDomainFile.objects.get(purpose="upload", consumed__isnull=True)
    approval = ApprovalRequest.objects.get(pk=request["id"])
    assert approval.payload["blob_sha256"] == stashed.sha256
    assert blob[:40] not in json.dumps(approval.payload)
    assert not Job.objects.filter(kind=services.UPLOAD_KIND).exists()  # nothing ran yet

    with django_capture_on_commit_callbacks(execute=False) as queued:
        approve_and_run(approval)
    upload_job = Job.objects.get(kind=services.UPLOAD_KIND)
    assert queued, "the upload job was not queued"
    security_domain_upload_run.apply(args=[upload_job.pk], task_id=f"upload-{upload_job.pk}")

    upload_job.refresh_from_db()
    assert upload_job.status == Job.Status.SUCCEEDED, upload_job.error
    assert [line["text"] for line in upload_job.log][0].startswith("Sending the security domain")
    status = client.get(f"/api/v1/hsms/{target.name}/security-domain/").json()
    assert status["activation"] == "active"
    # The blob is gone from the portal once the HSM took it.
    stashed.refresh_from_db()
    assert stashed.consumed is not None
    assert not list(sd_settings_folder(client).glob("*.enc"))
    # The same custodians hold the recovered HSM's keys: the ledger says so.
    assert approval.payload["source_hsm"] == source.name
    assert sorted(Custodian.objects.filter(hsm=target, status="active").values_list(
        "fingerprint_sha256", flat=True)) == sorted(Custodian.objects.filter(
            hsm=source, status="active").values_list("fingerprint_sha256", flat=True))
    assert SecurityDomainState.objects.get(hsm=target).quorum == 2
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert "custody.copy" in actions
    assert {"security_domain.activate", "security_domain.download",
            "security_domain.init_recovery", "security_domain.upload_received",
            "approval.request", "security_domain.upload"} <= actions


def sd_settings_folder(_client):
    from django.conf import settings

    return settings.VAR_DIR / "security-domain"


def test_upload_needs_a_recent_sign_in_and_a_started_recovery(client, settings, admin, target):
    signed_in(client, admin, seconds_ago=settings.PORTAL_STEP_UP_SECONDS + 5)
    url = f"/api/v1/hsms/{target.name}/security-domain/upload/"
    stale = client.post(url, {"value": "{}"}, content_type="application/json")
    assert stale.status_code == 401
    assert stale.json()["error"]["code"] == "step_up_required"
    signed_in(client, admin)
    early = client.post(url, {"value": "{}"}, content_type="application/json")
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "recovery_not_started"
    assert not SecurityDomainFile.objects.exists()
    assert not ApprovalRequest.objects.exists()


def test_only_admins_may_activate_or_upload(client, approver, auditor, source):
    for user in (approver, auditor):
        signed_in(client, user)
        assert client.post(f"/api/v1/hsms/{source.name}/security-domain/download/", {},
                           content_type="application/json").status_code == 403
        assert client.post(f"/api/v1/hsms/{source.name}/security-domain/init-recovery/"
                           ).status_code == 403
        assert client.get(f"/api/v1/hsms/{source.name}/security-domain/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_resumed_without_a_second_download(sd_settings, sd_emulator, source,
                                                              custodians, admin):
    """A worker SIGKILLed while it waits for activation: beat's housekeeping hands the job to
    a new worker (new claim), which only polls; the HSM is asked for its security domain
    once, and that one copy is what the admin downloads."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from django.db import connection

    from portal.celery import app
    from portal.gateway.emulator_config import emulator_environment
    from portal.jobs.services import job_claim

    job = services.security_domain_activate_start(
        hsm=source, quorum=2, actor=admin, request_id="r",
        custodians=[{"name": c.name, "certificate": pem(c)} for c in custodians])
    app.control.purge()  # this test is the worker: drop the message the service queued
    assert job_claim(job_id=job.pk, token="worker-a")
    # The activation poll hangs, so the worker is killed while it waits.
    sd_emulator.fail("GET", "/securitydomain/download/pending", status=None, latency_ms=60000,
                     hsm="source")
    root = Path(__file__).resolve().parents[2]
    database = connection.settings_dict
    env = {**os.environ, **emulator_environment(sd_emulator.endpoints),
           "DJANGO_SETTINGS_MODULE": "portal.settings.test", "PYTHONPATH": str(root),
           "TEST_DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:"
                                f"{database['PORT']}/{database['NAME']}",
           "PORTAL_VAR_DIR": str(sd_settings.VAR_DIR), "AZURE_RETRY_TOTAL": "0",
           "DJANGO_SECRET_KEY": sd_settings.SECRET_KEY}
    worker = subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup(); "
         "from dr_app.security_domain import security_domain_activate_run as run; "
         f"run(job_id={job.pk})"], cwd=root, env=env)
    try:
        deadline = time.monotonic() + 60
        while not SecurityDomainFile.objects.filter(job=job).exists():
            assert worker.poll() is None, "the worker ended before it was killed"
            assert time.monotonic() < deadline, "the worker never received the security domain"
            time.sleep(0.1)
        job.refresh_from_db()
        assert job.external_operation_id == "securitydomain/download"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    sd_emulator.clear_faults("source")

    # Beat's housekeeping hands the job to a new worker once it outlived any worker.
    from datetime import timedelta

    from django.utils import timezone

    later = timezone.now() + timedelta(seconds=sd_settings.PORTAL_SD_POLL_SECONDS + 301)
    assert services.security_domain_jobs_resume(now=timezone.now()) == []  # not yet
    assert services.security_domain_jobs_resume(now=later) == [job.pk]
    assert services.security_domain_jobs_resume(now=later) == []  # one takeover per lapse
    app.control.purge()  # this test is the new worker
    job.refresh_from_db()
    assert job.claim_token.startswith("resume-")
    assert AuditEvent.objects.filter(action="job.resume", target__contains=str(job.pk)).exists()
    security_domain_activate_run.apply(args=[job.pk], task_id=job.claim_token)

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert any("Resumed" in line["text"] for line in job.log)
    assert SecurityDomainFile.objects.filter(job=job).count() == 1
    client_blob, _name = services.security_domain_download_fetch(
        hsm=source, job_id=job.pk, actor=admin, request_id="r2")
    assert {"SharedKeys", "EncData"} <= set(json.loads(client_blob))


def test_one_activation_at_a_time_and_never_twice(client, admin, source, custodians):
    signed_in(client, admin)
    url = f"/api/v1/hsms/{source.name}/security-domain/download/"
    body = {"quorum": 2, "custodians": [{"name": c.name, "certificate": pem(c)}
                                        for c in custodians]}
    first = client.post(url, body, content_type="application/json")
    assert first.status_code == 202
    busy = client.post(url, body, content_type="application/json")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "security_domain_busy"
    job_id = first.json()["id"]
    security_domain_activate_run.apply(args=[job_id], task_id=f"activate-{job_id}")
    again = client.post(url, body, content_type="application/json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_activated"
    assert Job.objects.filter(kind=services.ACTIVATE_KIND).count() == 1


def test_a_blob_the_hsm_cannot_restore_fails_the_upload_job(
        client, admin, source, target, custodians, django_capture_on_commit_callbacks):
    signed_in(client, admin)
    job = activate(client, source, custodians, quorum=2)
    saved = client.post(f"/api/v1/hsms/{source.name}/security-domain/download/{job.pk}/").content
    exchange_pem = client.post(
        f"/api/v1/hsms/{target.name}/security-domain/init-recovery/").json()["pem"]
    # A broken tool: one share fewer than the quorum.
    blob = restore_blob(saved.decode(), exchange_pem, custodians[:2], insufficient=True)
    with django_capture_on_commit_callbacks(execute=False):
        pending = client.post(f"/api/v1/hsms/{target.name}/security-domain/upload/",
                              {"value": blob}, content_type="application/json")
        approve_and_run(ApprovalRequest.objects.get(pk=pending.json()["approval_request"]["id"]))
    upload_job = Job.objects.get(kind=services.UPLOAD_KIND)
    security_domain_upload_run.apply(args=[upload_job.pk], task_id=f"upload-{upload_job.pk}")

    upload_job.refresh_from_db()
    assert upload_job.status == Job.Status.FAILED
    assert upload_job.error.startswith("The HSM did not restore the security domain")
    assert client.get(f"/api/v1/hsms/{target.name}/security-domain/").json()["activation"] != \
        "active"
    assert not SecurityDomainFile.objects.filter(purpose="upload", consumed__isnull=True).exists()


def test_a_worker_that_stopped_before_asking_the_hsm_asks_it_on_resume(admin, source, custodians,
                                                                       django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = services.security_domain_activate_start(
            hsm=source, quorum=2, actor=admin, request_id="r",
            custodians=[{"name": c.name, "certificate": pem(c)} for c in custodians])
    # The first worker marked the operation, then died before the HSM saw the request:
    # the HSM says its download has not started, so asking again is safe.
    Job.objects.filter(pk=job.pk).update(external_operation_id="securitydomain/download")
    security_domain_activate_run.apply(args=[job.pk], task_id=f"activate-{job.pk}")
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert SecurityDomainFile.objects.filter(job=job).count() == 1


def test_recovery_is_refused_on_an_activated_hsm(client, admin, source, custodians):
    signed_in(client, admin)
    activate(client, source, custodians)
    refused = client.post(f"/api/v1/hsms/{source.name}/security-domain/init-recovery/")
    assert refused.status_code == 409
    assert "already activated" in refused.json()["error"]["message"]
    assert list(AuditEvent.objects.filter(action="security_domain.init_recovery")
                .order_by("seq").values_list("outcome", flat=True)) == ["intent", "failed"]
    assert SecurityDomainState.objects.get(hsm=source).exchange_key_sha256 == ""


def test_an_hsm_lost_sight_of_while_activating_keeps_its_security_domain(client, sd_emulator,
                                                                        admin, source,
                                                                        custodians):
    """The HSM took the download, then stopped answering the status poll: the job fails
    but the security domain stays offered and the custodians pending; when the HSM is seen
    active later, the custodians and quorum are recorded."""
    signed_in(client, admin)
    sd_emulator.fail("GET", "/securitydomain/download/pending", status=503, hsm="source")
    job = activate(client, source, custodians, quorum=3)
    sd_emulator.clear_faults("source")
    assert job.status == Job.Status.FAILED
    assert "Download the security domain" in job.error
    assert set(Custodian.objects.filter(hsm=source).values_list("status", flat=True)) == \
        {"pending"}
    deadline = time.monotonic() + 30  # the HSM finishes activating on its own
    while (status := client.get(f"/api/v1/hsms/{source.name}/security-domain/").json())[
            "activation"] != "active":
        assert status["activation"] == "in_progress" and time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["quorum"] == 3
    assert set(Custodian.objects.filter(hsm=source).values_list("status", flat=True)) == \
        {"active"}
    assert AuditEvent.objects.filter(action="custody.activate").count() == 1
    saved = client.post(f"/api/v1/hsms/{source.name}/security-domain/download/{job.pk}/")
    assert saved.status_code == 200 and b"SharedKeys" in saved.content


def test_the_custodians_prepare_the_portals_files_with_the_real_azure_cli(
        client, admin, source, target, tmp_path, django_capture_on_commit_callbacks):
    """What custodians really do offline: `az keyvault security-domain restore-blob` (the
    pinned Azure CLI, no sign-in, no network) on the security domain and the exchange key
    the portal handed out; the portal then uploads the CLI's file and the HSM restores it."""
    import os
    import subprocess
    from pathlib import Path

    az_path = Path(__file__).resolve().parents[2] / ".venv-azcli" / "bin" / "az"
    if not az_path.exists():
        pytest.fail("The Azure CLI is not installed at .venv-azcli: run `make azcli`.")
    people = make_custodians(3, prefix="cli_keeper")
    keys = []
    for person in people:
        _cer, key = person.write(tmp_path)
        keys.append(str(key))
    signed_in(client, admin)
    job = activate(client, source, people, quorum=2)
    saved = tmp_path / "security-domain.json"
    saved.write_bytes(client.post(
        f"/api/v1/hsms/{source.name}/security-domain/download/{job.pk}/").content)
    exchange = tmp_path / "exchange-key.pem"
    exchange.write_text(client.post(
        f"/api/v1/hsms/{target.name}/security-domain/init-recovery/").json()["pem"])

    blob = tmp_path / "restore-blob.json"
    home = tmp_path / "azcli"
    result = subprocess.run(
        [str(az_path), "keyvault", "security-domain", "restore-blob", "--sd-file", str(saved),
         "--sd-exchange-key", str(exchange), "--sd-wrapping-keys", keys[0], keys[2],
         "--sd-file-restore-blob", str(blob)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
             "AZURE_CONFIG_DIR": str(home / "config"), "AZURE_CORE_COLLECT_TELEMETRY": "false",
             "AZURE_CORE_ONLY_SHOW_ERRORS": "true"},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    with django_capture_on_commit_callbacks(execute=False):
        pending = client.post(f"/api/v1/hsms/{target.name}/security-domain/upload/",
                              {"value": blob.read_text()}, content_type="application/json")
        approve_and_run(ApprovalRequest.objects.get(pk=pending.json()["approval_request"]["id"]))
    upload_job = Job.objects.get(kind=services.UPLOAD_KIND)
    security_domain_upload_run.apply(args=[upload_job.pk], task_id=f"upload-{upload_job.pk}")
    upload_job.refresh_from_db()
    assert upload_job.status == Job.Status.SUCCEEDED, upload_job.error
    assert client.get(f"/api/v1/hsms/{target.name}/security-domain/").json()["activation"] == \
        "active"
