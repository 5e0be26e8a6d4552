"""Replay real Managed HSM recordings against the emulator.

Each recorded request is sent as recorded (key versions mapped to the emulator's), and
the answer must have the recorded status code, the same response header names and the
same JSON shape; where the recorded operation is deterministic the values must match
too (the recordings import their key material, so AES-CBC ciphertexts, RSA PKCS#1 v1.5
signatures and decryptions are reproducible).
"""

import json
import re
from pathlib import Path

import pytest

RECORDINGS = sorted((Path(__file__).parent / "recordings").glob("*.json"))
_DETERMINISTIC = re.compile(r"/(sign|verify|decrypt)$")


def _shape(value):
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _fresh_names(path: str, suffix: str) -> str:
    # Recorded key names get a per-run suffix so replays never meet keys of earlier tests.
    return re.sub(r"^/(keys|deletedkeys)/([^/?]+)", lambda m: f"/{m.group(1)}/{m.group(2)}{suffix}", path)


@pytest.mark.parametrize("recording", RECORDINGS, ids=lambda path: path.stem.split("test_", 2)[-1])
def test_recorded_exchanges_replay_identically(raw, recording, name):
    entries = json.loads(recording.read_text(encoding="utf-8"))["Entries"]
    versions: dict[str, str] = {}
    for entry in entries:
        path = _fresh_names(re.sub(r"^https://[^/]+", "", entry["RequestUri"]), name[-6:])
        for recorded, ours in versions.items():
            path = path.replace(recorded, ours)
        body = entry["RequestBody"]
        probe = entry["StatusCode"] == 401
        response = raw(entry["RequestMethod"], path, token=not probe,
                       content=None if body is None else json.dumps(body).encode(),
                       headers=None if body is None else {"Content-Type": "application/json"})
        where = f"{entry['RequestMethod']} {path}"
        assert response.status_code == entry["StatusCode"], where
        names = [name.decode().lower() for name, _ in response.headers.raw]
        assert sorted(names) == sorted(h.lower() for h in entry["ResponseHeaders"]), where
        recorded = entry["ResponseBody"]
        if probe:
            assert response.content == (b"OK" if recorded == "OK" else b""), where
            continue
        ours = response.json()
        assert _shape(ours) == _shape(recorded), where
        recorded_kid = (recorded.get("key") or {}).get("kid", "")
        if recorded_kid:
            versions[recorded_kid.rsplit("/", 1)[1]] = ours["key"]["kid"].rsplit("/", 1)[1]
        if entry["RequestMethod"] == "PUT" and "/keys/" in path and "n" in recorded.get("key", {}):
            assert (ours["key"]["n"], ours["key"]["e"]) == (recorded["key"]["n"], recorded["key"]["e"]), where
        if _DETERMINISTIC.search(path.split("?")[0]) or (path.split("?")[0].endswith("/encrypt")
                                                          and "CBC" in body["alg"]):
            assert ours["value"] == recorded["value"], where
