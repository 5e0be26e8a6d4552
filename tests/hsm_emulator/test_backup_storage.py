"""The Azurite the emulator runs: its child, stopped with it (even when the emulator is
killed), its data and account key kept in a durable state directory; and backup jobs that
outlive a restart (status URL, continuation token, the 30-minute rule).
"""

import base64
import os
import ssl
import signal
import time
from pathlib import Path

import httpx
import pytest
from azure.keyvault.administration import KeyVaultBackupClient

from tests.support.emulator import EmulatorProcess
from tests.support.blobs import blob_service, container_sas


def _azurite_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"azurite-blob" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


def test_azurite_runs_as_the_emulators_child_and_stops_with_it(tmp_path):
    emulator = EmulatorProcess(tmp_path / "state").start()
    try:
        (azurite,) = _azurite_children(emulator.pid)
        assert blob_service(emulator).create_container("probe")
    finally:
        emulator.stop()
    _wait_gone(azurite)


def test_azurite_stops_when_the_emulator_is_killed(tmp_path):
    emulator = EmulatorProcess(tmp_path / "state").start()
    (azurite,) = _azurite_children(emulator.pid)
    os.kill(emulator.pid, signal.SIGKILL)
    try:
        _wait_gone(azurite)
    finally:
        emulator.stop()


def test_no_storage_starts_no_azurite(tmp_path):
    emulator = EmulatorProcess(tmp_path / "state", hsms=("primary",), extra_args=("--no-storage",)).start()
    try:
        assert emulator.endpoints["storage"] is None
        assert _azurite_children(emulator.pid) == []
    finally:
        emulator.stop()


def test_backups_and_their_jobs_survive_a_restart_with_a_durable_state_directory(tmp_path):
    state = tmp_path / "state"
    emulator = EmulatorProcess(state, ephemeral=False).start()
    try:
        storage = emulator.endpoints["storage"]
        blob_service(emulator).create_container("kept")
        sas = container_sas(storage, "kept", "crwl")
        client = KeyVaultBackupClient(emulator.hsm_url(), emulator.credential(), **emulator.client_options())
        poller = client.begin_backup(f"{storage['blob_endpoint']}/kept", sas_token=sas)
        token = poller.continuation_token()
        folder = poller.result().folder_url.rsplit("/", 1)[1]
        key = storage["account_key"]
        (azurite,) = _azurite_children(emulator.pid)
    finally:
        emulator.stop()
    # The emulator returns once its Azurite has stopped (and saved what it holds).
    assert not _alive(azurite)
    assert (state / "azurite").is_dir()

    emulator = EmulatorProcess(state, ephemeral=False).start()
    try:
        storage = emulator.endpoints["storage"]
        assert storage["account_key"] == key  # the same account: SAS tokens stay valid
        names = {b.name for b in blob_service(emulator).get_container_client("kept").list_blobs()}
        assert f"{folder}/manifest.json" in names
        # The job still answers at its status path after the restart (the HSM's port changed).
        (job,) = emulator.backup_state()["jobs"]
        status_path = base64.b64decode(token).decode().split("/", 3)[3]
        assert status_path == f"backup/{job['id']}/pending"
        token_now = emulator.credential().get_token("https://managedhsm.azure.net/.default").token
        status = httpx.get(f"{emulator.hsm_url()}/{status_path}", headers={"Authorization": f"Bearer {token_now}"},
                           verify=ssl.create_default_context(cafile=emulator.ca_bundle)).json()
        assert status["status"] == "Succeeded" and status["azureStorageBlobContainerUri"].endswith(folder)
        client = KeyVaultBackupClient(emulator.hsm_url(), emulator.credential(), **emulator.client_options())
        # The 30-minute rule remembers the backup: a full restore of the primary works at once.
        container_url = f"{storage['blob_endpoint']}/kept"
        sas = container_sas(storage, "kept", "rl")
        client.begin_restore(f"{container_url}/{folder}", sas_token=sas).result()
        assert emulator.backup_state()["jobs"][-1]["status"] == "Succeeded"
    finally:
        emulator.stop()


@pytest.mark.parametrize("flag", ["--lro-retry-after=0", "--restore-backup-window=-1"])
def test_out_of_range_lro_options_are_refused(tmp_path, flag):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "hsm_emulator", "serve", "--state-dir", str(tmp_path / "s"), flag],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 2 and "must be" in result.stderr
