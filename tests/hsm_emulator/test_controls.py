"""The /_emulator test controls answer only to this run's control secret; state is private."""

import json
import ssl
import stat
import uuid

import httpx
import pytest

from tests.support.emulator import CONTROL_HEADER, EmulatorProcess

# Every control but health, with a body that would succeed with the right secret.
CONTROLS = [
    ("authority", "POST", "/_emulator/principals", {"display_name": "intruder"}),
    ("authority", "GET", "/_emulator/principals", None),
    ("authority", "POST", "/_emulator/tokens", {}),
    ("primary", "POST", "/_emulator/faults", {"path": "/keys/*", "status": 503, "count": -1}),
    ("primary", "GET", "/_emulator/faults", None),
    ("primary", "DELETE", "/_emulator/faults", None),
    ("primary", "GET", "/_emulator/properties", None),
    ("primary", "PATCH", "/_emulator/properties", {"purge_protection": True}),
]


@pytest.fixture(scope="module")
def send(emulator):
    context = ssl.create_default_context(cafile=emulator.ca_bundle)

    def request(target: str, method: str, path: str, body=None, secret=None) -> httpx.Response:
        base = emulator.endpoints["authority"] if target == "authority" else emulator.hsm_url(target)
        headers = {} if secret is None else {CONTROL_HEADER: secret}
        return httpx.request(method, base + path, json=body, headers=headers, verify=context)
    return request


@pytest.mark.parametrize(("target", "method", "path", "body"), CONTROLS)
def test_a_control_without_the_secret_is_refused(send, target, method, path, body):
    response = send(target, method, path, body)
    assert response.status_code == 401, response.text
    assert "X-Emulator-Control" in response.json()["error"]["message"]


@pytest.mark.parametrize(("target", "method", "path", "body"), CONTROLS)
def test_a_control_with_a_wrong_secret_is_refused(send, emulator, target, method, path, body):
    wrong = emulator.endpoints["control_secret"][:-1] + "x"
    response = send(target, method, path, body, secret=wrong)
    assert response.status_code == 403, response.text


def test_refused_controls_change_nothing(send, emulator):
    send("primary", "POST", "/_emulator/faults", {"path": "/keys/*", "status": 503, "count": -1})
    send("primary", "PATCH", "/_emulator/properties", {"purge_protection": True})
    send("authority", "POST", "/_emulator/principals", {"display_name": "intruder"})
    secret = emulator.endpoints["control_secret"]
    assert send("primary", "GET", "/_emulator/faults", secret=secret).json() == {"value": []}
    assert send("primary", "GET", "/_emulator/properties", secret=secret).json()["purge_protection"] is False
    assert "intruder" not in {p["display_name"] for p in emulator.list_principals()}


def test_a_control_with_the_secret_is_served(send, emulator):
    name = f"app-{uuid.uuid4().hex[:8]}"
    response = send("authority", "POST", "/_emulator/principals", {"display_name": name},
                    secret=emulator.endpoints["control_secret"])
    assert response.status_code == 201
    assert emulator.credential(response.json()).get_token("https://managedhsm.azure.net/.default").token


def test_health_needs_no_secret(send):
    assert send("primary", "GET", "/_emulator/health").json() == {"status": "ok", "hsm": "primary"}
    assert send("authority", "GET", "/_emulator/health").json()["status"] == "ok"


def test_state_is_private_and_the_control_secret_new_at_each_start(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with EmulatorProcess(state, hsms=("primary",), ephemeral=False) as emulator:
        emulator.create_principal("persisted")  # writes through to the state database
        first_secret = emulator.endpoints["control_secret"]
        first_modes = _modes(state)
    assert first_modes["."] == 0o700
    for name in ("state.key", "ca-key.pem", "server-key.pem", "state.sqlite3", "endpoints.json"):
        assert first_modes[name] == 0o600, name

    # Files an older run left readable are narrowed at the next start.
    (state / "state.key").chmod(0o644)
    (state / "state.sqlite3").chmod(0o644)
    with EmulatorProcess(state, hsms=("primary",), ephemeral=False) as emulator:
        second_secret = emulator.endpoints["control_secret"]
        second_modes = _modes(state)
        assert "persisted" in {p["display_name"] for p in emulator.list_principals()}
    assert second_modes["state.key"] == second_modes["state.sqlite3"] == 0o600
    assert {mode for name, mode in second_modes.items() if name.startswith("state.sqlite3")} == {0o600}
    assert len(first_secret) >= 32 and first_secret != second_secret
    assert json.loads((state / "endpoints.json").read_text())["control_secret"] == second_secret


def _modes(directory) -> dict[str, int]:
    modes = {".": stat.S_IMODE(directory.stat().st_mode)}
    modes.update({path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()})
    return modes
