"""Backups and the security domain: a full backup restores only into an HSM of the same
security domain — the disaster-recovery path is a new HSM that takes the source's domain
(security-domain upload, prepared offline by the custodians) and then its full backup.

``primary`` has the emulator's default domain; ``source`` and ``recovery`` start
un-activated: ``source`` is activated by a download (a domain of its own), ``recovery`` by
uploading ``source``'s domain.
"""

import json
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.administration import KeyVaultBackupClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.securitydomain import SecurityDomainClient

from tests.support.emulator import EmulatorProcess
from tests.support.sd_custodian import certificate_info, make_custodians, restore_blob
from tests.support.blobs import blob_service, container_create, container_sas


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("backup-domain"), hsms=("primary",),
                              unactivated=("source", "recovery")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def clients(emulator):
    credential = emulator.credential()

    def make(cls, hsm):
        return cls(emulator.hsm_url(hsm), credential, **emulator.client_options())
    return make


@pytest.fixture(scope="module")
def storage(emulator):
    storage = emulator.endpoints["storage"]
    container = container_create(emulator, "sd")
    return {"url": f"{storage['blob_endpoint']}/{container}", "sas": container_sas(storage, container, "crwl")}


def test_a_backup_restores_only_into_an_hsm_of_the_same_security_domain(emulator, clients, storage):
    custodians = make_custodians(3)
    security_domain = clients(SecurityDomainClient, "source").begin_download(
        certificate_info(custodians, required=2)).result().value
    source_keys = clients(KeyClient, "source")
    key = source_keys.create_ec_key(f"dr-{uuid.uuid4().hex[:8]}", tags={"tier": "gold"})
    backup = clients(KeyVaultBackupClient, "source")
    folder_url = backup.begin_backup(storage["url"], sas_token=storage["sas"]).result().folder_url

    # The primary (another domain): pre-restore and restore refuse the folder.
    primary = clients(KeyVaultBackupClient, "primary")
    with pytest.raises(HttpResponseError) as refused:
        primary.begin_pre_restore(folder_url, sas_token=storage["sas"]).result()
    assert "SecurityDomainMismatch" in str(refused.value)
    primary_folder = primary.begin_backup(storage["url"], sas_token=storage["sas"]).result().folder_url
    with pytest.raises(HttpResponseError) as refused:
        primary.begin_restore(folder_url, sas_token=storage["sas"]).result()
    assert "SecurityDomainMismatch" in str(refused.value)
    with pytest.raises(HttpResponseError):
        clients(KeyClient, "primary").get_key(key.name)

    # Recovery: a new HSM takes the source's domain (custodians' blob), then its backup.
    sd_recovery = clients(SecurityDomainClient, "recovery")
    transfer = sd_recovery.get_transfer_key()
    sd_recovery.begin_upload({"value": restore_blob(security_domain, transfer, custodians[:2])}).result()
    recovery = clients(KeyVaultBackupClient, "recovery")
    assert recovery.begin_pre_restore(folder_url, sas_token=storage["sas"]).result() is None
    recovery.begin_backup(storage["url"], sas_token=storage["sas"]).result()  # the 30-minute rule
    recovery.begin_restore(folder_url, sas_token=storage["sas"]).result()
    restored = clients(KeyClient, "recovery").get_key(key.name)
    assert restored.key.x == key.key.x and restored.properties.tags == {"tier": "gold"}
    # The manifests name the two domains (not secret: an id), which differ.
    assert _manifest(emulator, folder_url)["security_domain_id"] != _manifest(emulator, primary_folder)[
        "security_domain_id"]


def test_an_unactivated_hsm_refuses_backup_and_restore(emulator, clients, storage):
    emulator.provision("recovery")
    with pytest.raises(HttpResponseError) as refused:
        clients(KeyVaultBackupClient, "recovery").begin_backup(storage["url"], sas_token=storage["sas"])
    assert refused.value.status_code == 403
    assert emulator.backup_state("recovery")["jobs"] == []  # re-provisioned: no backup history


def _manifest(emulator, folder_url: str) -> dict:
    container, folder = folder_url.rsplit("/", 2)[-2:]
    return json.loads(blob_service(emulator).get_blob_client(container, f"{folder}/manifest.json").download_blob().readall())
