"""Full restore, selective key restore, pre-checks, the 30-minute rule and restore mode.

These tests restore into HSMs and so replace their keys and roles: they run against an
emulator of their own (primary + secondary, one security domain) so no other test's
state is swept away.
"""

import ssl
import time
import uuid

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultBackupClient, KeyVaultRoleScope
from azure.keyvault.keys import KeyClient

from tests.support.emulator import EmulatorProcess
from tests.support.blobs import blob_service, container_create, container_sas

CRYPTO_AUDITOR = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/" \
                 "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3"


@pytest.fixture(scope="module")
def dr(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("dr-emulator")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def cred(dr):
    return dr.credential()


@pytest.fixture(scope="module")
def clients(dr, cred):
    def make(cls, hsm):
        return cls(dr.hsm_url(hsm), cred, **dr.client_options())
    return {hsm: {"backup": make(KeyVaultBackupClient, hsm), "keys": make(KeyClient, hsm),
                  "access": make(KeyVaultAccessControlClient, hsm)} for hsm in ("primary", "secondary")}


@pytest.fixture(scope="module")
def storage(dr):
    return dr.endpoints["storage"]


@pytest.fixture(scope="module")
def container(dr):
    return container_create(dr, "dr")


@pytest.fixture(scope="module")
def sas(storage, container):
    return container_sas(storage, container)


@pytest.fixture(scope="module")
def container_url(storage, container):
    return f"{storage['blob_endpoint']}/{container}"


@pytest.fixture(scope="module")
def raw(dr):
    context = ssl.create_default_context(cafile=dr.ca_bundle)
    token = dr.mint_token()

    def send(method, hsm, path, **kwargs):
        return httpx.request(method, dr.hsm_url(hsm) + path, headers={"Authorization": f"Bearer {token}"},
                             verify=context, timeout=30, **kwargs)
    return send


def backup(clients, hsm, container_url, sas) -> str:
    return clients[hsm]["backup"].begin_backup(container_url, sas_token=sas).result().folder_url


@pytest.fixture(autouse=True)
def _release_holds(dr):
    yield
    for hsm in ("primary", "secondary"):
        dr.hold_backup_jobs(0, hsm)


def test_full_restore_into_the_secondary_brings_keys_versions_tags_and_roles(dr, clients, container_url, sas):
    primary, secondary = clients["primary"], clients["secondary"]
    name = f"dr-{uuid.uuid4().hex[:10]}"
    first = primary["keys"].create_ec_key(name, curve="P-256", tags={"env": "prod"})
    second = primary["keys"].rotate_key(name)
    auditor = str(uuid.uuid4())
    primary["access"].create_role_assignment(KeyVaultRoleScope.GLOBAL, CRYPTO_AUDITOR, auditor)
    folder_url = backup(clients, "primary", container_url, sas)

    doomed = f"only-secondary-{uuid.uuid4().hex[:8]}"
    secondary["keys"].create_oct_key(doomed, size=256, hardware_protected=True)
    backup(clients, "secondary", container_url, sas)  # the 30-minute safety backup of the target
    secondary["backup"].begin_restore(folder_url, sas_token=sas).result()

    restored = secondary["keys"].get_key(name)
    assert restored.key.x == second.key.x and restored.properties.version == second.properties.version
    assert restored.properties.tags == {"env": "prod"}
    versions = {v.version for v in secondary["keys"].list_properties_of_key_versions(name)}
    assert versions == {first.properties.version, second.properties.version}
    assert restored.id.startswith(dr.hsm_url("secondary"))
    with pytest.raises(ResourceNotFoundError):
        secondary["keys"].get_key(doomed)
    principals = {a.properties.principal_id for a in secondary["access"].list_role_assignments(KeyVaultRoleScope.GLOBAL)}
    assert auditor in principals
    # The restored material works: the secondary signs what the primary verifies.
    from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
    digest = b"\x01" * 32
    signed = CryptographyClient(restored, dr.credential(), **dr.client_options()).sign(SignatureAlgorithm.es256,
                                                                                       digest)
    verified = CryptographyClient(second.id, dr.credential(), **dr.client_options()).verify(
        SignatureAlgorithm.es256, digest, signed.signature)
    assert verified.is_valid


def test_full_restore_needs_a_backup_of_the_target_from_the_last_30_minutes(dr, clients, container_url, sas):
    folder_url = backup(clients, "primary", container_url, sas)
    backup(clients, "secondary", container_url, sas)
    dr.age_backups(31 * 60, "secondary")
    with pytest.raises(HttpResponseError) as refused:
        clients["secondary"]["backup"].begin_restore(folder_url, sas_token=sas).result()
    assert "NoRecentBackup" in str(refused.value) or "30 minutes" in str(refused.value)
    assert "within the last 30 minutes" in str(refused.value)
    jobs = dr.backup_state("secondary")["jobs"]
    assert jobs[-1]["kind"] == "restore" and jobs[-1]["status"] == "Failed"
    backup(clients, "secondary", container_url, sas)
    clients["secondary"]["backup"].begin_restore(folder_url, sas_token=sas).result()
    assert dr.backup_state("secondary")["jobs"][-1]["status"] == "Succeeded"


def test_data_plane_is_refused_during_a_full_restore(dr, clients, container_url, sas, raw):
    folder_url = backup(clients, "primary", container_url, sas)
    backup(clients, "secondary", container_url, sas)
    dr.hold_backup_jobs(4000, "secondary")
    poller = clients["secondary"]["backup"].begin_restore(folder_url, sas_token=sas)
    deadline = time.monotonic() + 10
    while not dr.backup_state("secondary")["restoring"]:
        assert time.monotonic() < deadline, "the restore never entered restore mode"
        time.sleep(0.05)
    refused = raw("GET", "secondary", "/keys?api-version=2025-07-01")
    assert refused.status_code == 409
    assert refused.json()["error"]["innererror"]["code"] == "RestoreInProgress"
    with pytest.raises(ResourceExistsError):
        clients["secondary"]["backup"].begin_backup(container_url, sas_token=sas)
    job_id = dr.backup_state("secondary")["jobs"][-1]["id"]
    status = raw("GET", "secondary", f"/restore/{job_id}/pending")
    assert status.status_code == 200 and status.json()["status"] == "InProgress"
    assert "azureStorageBlobContainerUri" not in status.json()
    # The primary is not in restore mode.
    assert raw("GET", "primary", "/keys?api-version=2025-07-01").status_code == 200
    poller.result()
    assert raw("GET", "secondary", "/keys?api-version=2025-07-01").status_code == 200


def test_selective_restore_of_one_purged_key(dr, clients, container_url, sas):
    keys = clients["primary"]["keys"]
    name = f"sel-{uuid.uuid4().hex[:10]}"
    created = keys.create_rsa_key(name, size=2048)
    rotated = keys.rotate_key(name)
    other = f"sel-other-{uuid.uuid4().hex[:8]}"
    keys.create_ec_key(other)
    folder_url = backup(clients, "primary", container_url, sas)
    keys.begin_delete_key(name).wait()
    keys.purge_deleted_key(name)
    keys.begin_delete_key(other).wait()
    keys.purge_deleted_key(other)

    clients["primary"]["backup"].begin_restore(folder_url, sas_token=sas, key_name=name).result()
    restored = keys.get_key(name)
    assert restored.properties.version == rotated.properties.version and restored.key.n == rotated.key.n
    assert {v.version for v in keys.list_properties_of_key_versions(name)} == {created.properties.version,
                                                                              rotated.properties.version}
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(other)  # only the named key came back


def test_selective_restore_onto_an_existing_key_overwrites_nothing(dr, clients, container_url, sas, raw):
    keys = clients["primary"]["keys"]
    name = f"keep-{uuid.uuid4().hex[:10]}"
    keys.create_ec_key(name)
    keys.rotate_key(name)
    folder_url = backup(clients, "primary", container_url, sas)
    container, folder = folder_url.rsplit("/", 2)[-2:]
    body = {"sasTokenParameters": {"storageResourceUri": container_url, "token": sas, "useManagedIdentity": False},
            "folder": folder}
    started = raw("PUT", "primary", f"/keys/{name}/restore?api-version=2025-07-01", json=body)
    assert started.status_code == 202
    assert started.headers["azure-asyncoperation"].startswith(dr.hsm_url() + "/restore/")
    path = started.headers["azure-asyncoperation"].removeprefix(dr.hsm_url())
    deadline = time.monotonic() + 30
    while (status := raw("GET", "primary", path).json())["status"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "Succeeded"
    assert status["statusDetails"] == ("Number of successful key versions restored: 0, "
                                       "Number of key versions could not overwrite: 2")


def test_selective_restore_of_a_key_not_in_the_backup_fails(clients, container_url, sas):
    folder_url = backup(clients, "primary", container_url, sas)
    with pytest.raises(HttpResponseError) as failed:
        clients["primary"]["backup"].begin_restore(folder_url, sas_token=sas, key_name="never-existed").result()
    assert "KeyNotFound" in str(failed.value)


def _blob_names(dr, container):
    return {b.name for b in blob_service(dr).get_container_client(container).list_blobs()}


def test_pre_backup_checks_the_container_and_the_sas_and_writes_nothing(dr, clients, storage, container,
                                                                        container_url):
    client = clients["primary"]["backup"]
    before = _blob_names(dr, container)
    least = container_sas(storage, container, "cw", minutes=10)
    assert client.begin_pre_backup(container_url, sas_token=least).result() is None
    assert _blob_names(dr, container) == before
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    missing_sas = container_sas(storage, missing, "cw", minutes=10)
    with pytest.raises(HttpResponseError) as failed:
        client.begin_pre_backup(f"{storage['blob_endpoint']}/{missing}", sas_token=missing_sas).result()
    assert "ContainerNotFound" in str(failed.value)
    read_only = container_sas(storage, container, "rl", minutes=10)
    with pytest.raises(HttpResponseError) as failed:
        client.begin_pre_backup(container_url, sas_token=read_only).result()
    assert "AuthorizationPermissionMismatch" in str(failed.value)
    forged = least.replace("sig=", "sig=A")
    with pytest.raises(HttpResponseError) as failed:
        client.begin_pre_backup(container_url, sas_token=forged).result()
    assert "AuthorizationFailure" in str(failed.value) or "AuthenticationFailed" in str(failed.value)


def test_pre_restore_checks(dr, clients, storage, container_url, sas):
    client = clients["primary"]["backup"]
    folder_url = backup(clients, "primary", container_url, sas)
    jobs_before = len(dr.backup_state("secondary")["jobs"])
    assert clients["secondary"]["backup"].begin_pre_restore(folder_url, sas_token=sas).result() is None
    assert dr.backup_state("secondary")["jobs"][-1]["kind"] == "prerestore"
    assert len(dr.backup_state("secondary")["jobs"]) == jobs_before + 1
    with pytest.raises(HttpResponseError) as failed:
        client.begin_pre_restore(f"{container_url}/mhsm-primary-2000010100000000", sas_token=sas).result()
    assert "FolderNotFound" in str(failed.value)
    expired = container_sas(storage, container_url.rsplit("/", 1)[1], minutes=-5)
    with pytest.raises(HttpResponseError) as failed:
        client.begin_pre_backup(container_url, sas_token=expired).result()
    assert "expired" in str(failed.value)


def test_a_second_operation_while_one_runs_is_a_conflict(dr, clients, container_url, sas):
    dr.hold_backup_jobs(3000, "primary")
    poller = clients["primary"]["backup"].begin_backup(container_url, sas_token=sas)
    with pytest.raises(ResourceExistsError):
        clients["primary"]["backup"].begin_pre_backup(container_url, sas_token=sas)
    assert poller.result().folder_url.startswith(container_url)
