"""dr_app fixtures: a container of its own per test in the emulator's Azurite, blob access
through azure-storage-blob (what an operator would use), and running a job's task."""
import uuid

import pytest

from tests.support.waiting import wait_for  # noqa: F401 - the dr_app tests take it from here


@pytest.fixture
def storage(azure_settings, emulator):
    """The emulator's storage account (Azurite) as endpoints.json names it."""
    account = emulator.endpoints.get("storage")
    assert account, "the emulator did not start Azurite (no 'storage' in endpoints.json)"
    return account


@pytest.fixture
def container(storage):
    """A fresh container name for one test (so folder counts are this test's)."""
    return f"t{uuid.uuid4().hex[:20]}"


@pytest.fixture
def blobs(storage, emulator):
    """A BlobServiceClient on the storage account with its key, independent of the portal."""
    from tests.support.blobs import blob_service

    return blob_service(emulator)


def folders_in(blobs, container: str) -> dict[str, list[str]]:
    """folder -> blob names, as azure-storage-blob lists them."""
    found: dict[str, list[str]] = {}
    client = blobs.get_container_client(container)
    if not client.exists():
        return found
    for blob in client.list_blobs():
        folder, _, name = blob.name.partition("/")
        found.setdefault(folder, []).append(name)
    return found


def run_job(task, job_id: int) -> None:
    """Run a job's task here, as a worker would (its own task id = claim token)."""
    task.apply(args=[job_id], task_id=f"test-{job_id}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def make_key(hsm):
    """Create an RSA key on an HSM through the gateway; returns its name."""
    from portal import gateway

    def _make(target=None, name: str | None = None) -> str:
        name = name or f"dr-{uuid.uuid4().hex[:10]}"
        gateway.keys(target or hsm).create_rsa_key(name, size=2048)
        return name
    return _make
