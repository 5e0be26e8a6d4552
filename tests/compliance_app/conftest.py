"""compliance_app fixtures: an emulator of its own (posture tests turn purge protection off,
open the network, add replicas and diagnostic settings: the shared session emulator's HSMs
stay as other tests expect them), the Resource Manager clients a test uses to change it
(azure-mgmt-keyvault, azure-mgmt-storage, plain HTTPS for diagnostic settings), and a
posture run executed here as a worker would."""
import ssl
import uuid

import httpx
import pytest

ARM_SCOPE = "https://management.azure.com/.default"
DIAGNOSTICS_API = "2021-05-01-preview"


@pytest.fixture(scope="session")
def compliance_emulator(tmp_path_factory):
    from tests.support.emulator import EmulatorProcess

    # "spare" gets purge protection (which Azure never turns off again) in one test.
    process = EmulatorProcess(tmp_path_factory.mktemp("compliance-emulator"),
                              hsms=("primary", "secondary", "spare")).start()
    yield process
    process.stop()


@pytest.fixture
def emulator(compliance_emulator):
    """This package's emulator stands in for the session one."""
    return compliance_emulator


def mgmt(emulator, cls):
    return cls(emulator.credential(), emulator.endpoints["subscription_id"],
               base_url=emulator.endpoints["arm"], credential_scopes=[ARM_SCOPE],
               connection_verify=emulator.ca_bundle)


@pytest.fixture
def keyvault_mgmt(emulator):
    from azure.mgmt.keyvault import KeyVaultManagementClient

    return mgmt(emulator, KeyVaultManagementClient)


@pytest.fixture
def arm_http(emulator):
    token = emulator.credential().get_token(ARM_SCOPE).token
    with httpx.Client(base_url=emulator.endpoints["arm"],
                      verify=ssl.create_default_context(cafile=emulator.ca_bundle),
                      headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


def storage_account_create(emulator, name: str, location: str = "westeurope") -> str:
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.storage import models as storage_models

    client = mgmt(emulator, StorageManagementClient)
    account = client.storage_accounts.begin_create(
        emulator.endpoints["resource_group"], name,
        storage_models.StorageAccountCreateParameters(location=location, kind="StorageV2",
                                                      sku=storage_models.Sku(name="Standard_LRS"))).result()
    return account.id


def run_posture(actor):
    """Start a posture run as the page does, then run its job here as a worker would."""
    from compliance_app import tasks
    from compliance_app.models import PostureRun
    from compliance_app.services import posture_run_start

    job = posture_run_start(actor=actor, request_id=f"r-{uuid.uuid4().hex[:8]}")
    tasks.posture_run.apply(args=[job.pk], task_id=f"test-{job.pk}")
    return PostureRun.objects.get(job=job)


def result(run, check_id: str, hsm_name: str = "primary"):
    return run.results.get(check_id=check_id, hsm_name=hsm_name)
