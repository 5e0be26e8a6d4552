"""Full backup, full restore and selective key restore through KeyVaultBackupClient (sync).

The emulator writes to the Azurite it started (HTTPS, OAuth mode; ``storage`` in
endpoints.json); the blobs are checked through azure-storage-blob. Restores go into the
secondary HSM (same security domain as the primary) unless a test says otherwise.
"""

import json
import ssl
import uuid

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.administration import KeyVaultBackupClient

from tests.support.blobs import blob_service, container_sas as sas

FOLDER_RE = r"^mhsm-{hsm}-\d{{16}}$"


@pytest.fixture(scope="module")
def storage(emulator):
    return emulator.endpoints["storage"]


@pytest.fixture(scope="module")
def blobs(emulator):
    return blob_service(emulator)


@pytest.fixture
def container(blobs):
    name = f"backups-{uuid.uuid4().hex[:12]}"
    blobs.create_container(name)
    return name


@pytest.fixture(scope="module")
def backup_clients(emulator, admin_credential):
    return {name: KeyVaultBackupClient(emulator.hsm_url(name), admin_credential, **emulator.client_options())
            for name in ("primary", "secondary")}


def container_url(storage, container):
    return f"{storage['blob_endpoint']}/{container}"


def test_endpoints_list_the_emulators_azurite_over_https(emulator, storage, blobs):
    assert storage["blob_endpoint"].startswith("https://127.0.0.1:")
    assert storage["blob_endpoint"].endswith(f"/{storage['account_name']}")
    assert storage["account_key"] != "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    assert blobs.get_account_information()["account_kind"]
    assert emulator.endpoints["arm"] == emulator.endpoints["resource_manager"]


def test_full_backup_with_a_sas_token_writes_a_complete_folder(emulator, storage, blobs, container, backup_clients,
                                                               key_client, name):
    key = key_client.create_rsa_key(name, size=2048, tags={"purpose": "backup"})
    poller = backup_clients["primary"].begin_backup(container_url(storage, container),
                                                    sas_token=sas(storage, container))
    result = poller.result()
    assert poller.status().lower() == "succeeded"
    folder_url = result.folder_url
    assert folder_url.startswith(container_url(storage, container) + "/mhsm-primary-")
    folder = folder_url.rsplit("/", 1)[1]
    assert len(folder) == len("mhsm-primary-") + 16 and folder[len("mhsm-primary-"):].isdigit()
    names = {b.name for b in blobs.get_container_client(container).list_blobs()}
    assert f"{folder}/manifest.json" in names
    assert f"{folder}/rbac.bin" in names
    assert any(n.startswith(f"{folder}/keys-") for n in names)
    manifest = json.loads(blobs.get_blob_client(container, f"{folder}/manifest.json").download_blob().readall())
    assert manifest["hsm"] == "primary" and manifest["complete"] is True
    assert manifest["key_count"] == len(list(key_client.list_properties_of_keys()))
    assert manifest["role_assignment_count"] >= 3
    # The key material is encrypted: no public modulus (let alone a private one) in the clear.
    data = b"".join(blobs.get_blob_client(container, n).download_blob().readall() for n in names)
    assert key.key.n[:32] not in data
    assert name.encode() not in data


def test_backup_lro_wire_contract(emulator, raw, storage, container):
    body = {"storageResourceUri": container_url(storage, container), "token": sas(storage, container),
            "useManagedIdentity": False}
    started = raw("POST", "/backup?api-version=2025-07-01", token=True, json=body)
    assert started.status_code == 202
    status_url = started.headers["azure-asyncoperation"]
    assert status_url.startswith(emulator.hsm_url() + "/backup/") and status_url.endswith("/pending")
    assert started.headers["retry-after"] == "1"
    assert started.headers["api-supported-versions"] == "20180927, 20211111"
    assert list(started.json()) == ["status", "statusDetails", "error", "startTime", "endTime", "jobId",
                                    "azureStorageBlobContainerUri"]
    job = started.json()
    assert job["status"] == "InProgress" and len(job["jobId"]) == 32
    path = status_url.removeprefix(emulator.hsm_url())
    final = _poll(raw, path)
    assert final["status"] == "Succeeded" and final["endTime"] >= final["startTime"]
    assert final["azureStorageBlobContainerUri"].startswith(container_url(storage, container) + "/mhsm-primary-")
    assert list(final) == sorted(final)


def _poll(raw, path, timeout=60):
    import time
    deadline = time.monotonic() + timeout
    while True:
        response = raw("GET", path, token=True)  # no api-version, as the SDK polls
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "InProgress" or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_a_sas_for_another_container_fails_the_job(storage, blobs, container, backup_clients):
    other = f"other-{uuid.uuid4().hex[:8]}"
    blobs.create_container(other)
    poller = backup_clients["primary"].begin_backup(container_url(storage, container), sas_token=sas(storage, other))
    with pytest.raises(HttpResponseError) as failure:
        poller.result()
    assert "AuthorizationFailure" in str(failure.value) or "AuthenticationFailed" in str(failure.value)


def test_a_missing_container_fails_the_job(storage, backup_clients):
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    poller = backup_clients["primary"].begin_backup(container_url(storage, missing), sas_token=sas(storage, missing))
    with pytest.raises(HttpResponseError) as failure:
        poller.result()
    assert "ContainerNotFound" in str(failure.value)


def test_a_sas_without_write_permission_fails_the_job(storage, container, backup_clients):
    poller = backup_clients["primary"].begin_backup(container_url(storage, container),
                                                    sas_token=sas(storage, container, permission="rl"))
    with pytest.raises(HttpResponseError) as failure:
        poller.result()
    assert "AuthorizationPermissionMismatch" in str(failure.value)


def test_a_storage_url_off_the_machine_is_a_bad_request(backup_clients):
    with pytest.raises(HttpResponseError) as failure:
        backup_clients["primary"].begin_backup("https://example.blob.core.windows.net/backups", sas_token="sv=1&sig=x")
    assert failure.value.status_code == 400


def test_backup_routes_challenge_like_key_routes_and_unknown_jobs_are_not_found(raw):
    probe = raw("POST", "/backup?api-version=2025-07-01")
    assert probe.status_code == 401 and probe.content == b""  # empty body, as recorded on backup routes
    assert probe.headers["www-authenticate"].startswith('Bearer authorization="')
    missing = raw("GET", f"/backup/{'0' * 32}/pending", token=True)
    assert missing.status_code == 404
    # A restore job id is not a backup job (and the other way round).
    assert raw("GET", f"/restore/{'0' * 32}/pending", token=True).status_code == 404


def test_a_caller_without_the_backup_data_action_is_refused(emulator, principal_with, storage, container):
    officer = principal_with("Crypto Officer")
    token = emulator.mint_token(principal=officer)
    response = httpx.post(emulator.hsm_url() + "/backup?api-version=2025-07-01",
                          headers={"Authorization": f"Bearer {token}"},
                          json={"storageResourceUri": container_url(storage, container), "token": "sv=1&sig=x"},
                          verify=ssl.create_default_context(cafile=emulator.ca_bundle))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AccessDenied"
    assert "backup/start/action" in response.json()["error"]["message"]
