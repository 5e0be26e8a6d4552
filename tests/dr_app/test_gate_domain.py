"""The readiness gate against HSMs of another security domain and an un-activated HSM.

An emulator of its own: `primary` has the emulator's default domain; `other` starts
un-activated, then is activated by a security-domain download (a domain of its own). The
session emulator is not touched (other tests rely on its two HSMs sharing one domain).
"""
import uuid

import pytest

from dr_app import services, tasks
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.dr_app.conftest import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def lone_emulator(tmp_path_factory):
    from tests.support.emulator import EmulatorProcess

    process = EmulatorProcess(tmp_path_factory.mktemp("dr-domains"), hsms=("primary",),
                              unactivated=("other",)).start()
    yield process
    process.stop()


@pytest.fixture
def lone(settings, lone_emulator):
    from portal import gateway
    from portal.gateway.emulator_config import apply_to_settings
    from portal.gateway.models import HsmInstance

    apply_to_settings(settings, lone_emulator.endpoints)
    settings.AZURE_RETRY_TOTAL = 0
    gateway.reset_clients()
    hsms = {name: HsmInstance.objects.create(name=name, uri=lone_emulator.hsm_url(name),
                                             role="primary" if name == "primary" else "secondary")
            for name in ("primary", "other")}
    yield hsms
    gateway.reset_clients()


def _restore_into_other(folder, container, key, admin, capture) -> Job:
    with capture(execute=False):
        job = services.restore_start(hsm_id="other", folder=folder, container=container,
                                     key_name=key, actor=admin, request_id="r")
    run_job(tasks.restore_run, job.pk)
    job.refresh_from_db()
    return job


def test_gate_refuses_an_un_activated_target_then_another_security_domain(
        lone, lone_emulator, admin, django_capture_on_commit_callbacks):
    from azure.keyvault.securitydomain import SecurityDomainClient

    from portal import gateway
    from tests.support.sd_custodian import certificate_info, make_custodians

    container = f"dom{uuid.uuid4().hex[:12]}"
    key = f"dom-{uuid.uuid4().hex[:8]}"
    gateway.keys(lone["primary"]).create_rsa_key(key, size=2048)
    with django_capture_on_commit_callbacks(execute=False):
        backup = services.backup_start(hsm=lone["primary"], actor=admin, request_id="r",
                                       container=container)
    run_job(tasks.backup_run, backup.pk)
    folder = Job.objects.get(pk=backup.pk).result["folder"]

    # 1. `other` is not activated: the gate stops at its first check.
    job = _restore_into_other(folder, container, key, admin, django_capture_on_commit_callbacks)
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("Not ready to restore — Target reachable and activated")
    assert [c["ok"] for c in job.params["gate"]] == [False]

    # 2. Activated with a security domain of its own: the HSM's pre-restore check refuses
    #    the primary's folder, and the gate stops there, before any restore or backup.
    SecurityDomainClient(lone_emulator.hsm_url("other"), lone_emulator.credential(),
                         **lone_emulator.client_options()).begin_download(
        certificate_info(make_custodians(3), required=2)).result()
    job = _restore_into_other(folder, container, key, admin, django_capture_on_commit_callbacks)
    assert job.status == Job.Status.FAILED, job.error
    assert job.error.startswith("Not ready to restore — Same security domain"), job.error
    assert "ended the pre-restore check as failed" in job.error
    assert "different security domain" in job.error  # the HSM's own words
    assert [c["ok"] for c in job.params["gate"]] == [True, True, True, True, False]
    assert "ops" not in job.params
    assert not AuditEvent.objects.filter(action__in=("restore.selective", "restore.full")) \
        .exists()
    assert key not in {k.name for k in gateway.keys(lone["other"]).list_properties_of_keys()}


def test_gate_refuses_when_the_portal_has_no_role_that_allows_a_restore(
        lone, lone_emulator, admin, settings, django_capture_on_commit_callbacks):
    from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultRoleScope

    from portal import gateway

    container = f"role{uuid.uuid4().hex[:12]}"
    with django_capture_on_commit_callbacks(execute=False):
        backup = services.backup_start(hsm=lone["primary"], actor=admin, request_id="r",
                                       container=container)
    run_job(tasks.backup_run, backup.pk)
    folder = Job.objects.get(pk=backup.pk).result["folder"]
    # The portal now runs as a principal that may read keys (Crypto User) and nothing more.
    reader = lone_emulator.create_principal(f"dr-reader-{uuid.uuid4().hex[:6]}")
    rbac = KeyVaultAccessControlClient(lone_emulator.hsm_url("primary"),
                                       lone_emulator.credential(),
                                       **lone_emulator.client_options())
    crypto_user = next(d for d in rbac.list_role_definitions(KeyVaultRoleScope.GLOBAL)
                       if d.role_name == "Managed HSM Crypto User")
    rbac.create_role_assignment(KeyVaultRoleScope.GLOBAL, crypto_user.id, reader["object_id"])
    settings.AZURE_CLIENT_ID, settings.AZURE_CLIENT_SECRET = (reader["client_id"],
                                                              reader["client_secret"])
    gateway.reset_clients()

    with django_capture_on_commit_callbacks(execute=False):
        job = services.restore_start(hsm_id="primary", folder=folder, container=container,
                                     key_name="any-key", actor=admin, request_id="r")
    run_job(tasks.restore_run, job.pk)
    job.refresh_from_db()

    assert job.status == Job.Status.FAILED
    assert job.error.startswith("Not ready to restore — Portal's roles on the target"), job.error
    assert "allows restore" in job.error
    assert [c["ok"] for c in job.params["gate"]] == [True, True, True, False]
