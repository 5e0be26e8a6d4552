"""Throughput of the Managed HSM emulator through the official SDK, beside local ``cryptography``.

Run: ``.venv/bin/python bench/emulator_bench.py [--seconds N] [--processes P]``

It starts its own (ephemeral) emulator, creates an RSA-2048 key, and measures for each
operation the completed calls per second:

- get key: ``KeyClient.get_key(name, version)``;
- sign (RS256), verify (RS256), wrap (RSA-OAEP-256), unwrap (RSA-OAEP-256):
  ``CryptographyClient`` for a principal whose custom role grants the crypto data actions
  but not ``keys/read/action``. The client's initial GET is refused (403), which makes
  the SDK send *every* operation to the service (its documented fallback), so verify and
  wrap, which it would otherwise do locally with the public key, are measured on the
  emulator too.

Load comes from four client processes (no GIL shared with each other or with the
emulator), each one sync SDK client (requests transport) calling back to back. On this
2-core machine that gave the most calls per second (three processes leave the cores
idle while calls are in flight, more only add switching): the asyncio clients (aiohttp)
spend about twice the client CPU per call, and threads in one process share a GIL. The SDK
spends 1.2-1.5 ms of client CPU per call, several times the emulator's, and both share
the same two cores, so the figures are end-to-end and bounded by the clients. The same operations are then timed in-process with
``cryptography`` on one thread (get key's local counterpart is exporting the public
numbers, i.e. building the JWK), and the ratio emulator/local is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.emulator import EmulatorProcess  # noqa: E402

OPERATIONS = ("get key", "sign", "verify", "wrap", "unwrap")
TARGETS = {"get key": 1100, "sign": 900, "unwrap": 1100}
CRYPTO_ACTIONS = [f"Microsoft.KeyVault/managedHsm/keys/{op}/action" for op in ("sign", "verify", "wrap", "unwrap")]


def _prepare(emulator: EmulatorProcess) -> dict:
    """Create the key, a signature and a wrapped key to replay, and the crypto principal."""
    from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultPermission
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm, SignatureAlgorithm

    credential = emulator.credential()
    keys = KeyClient(emulator.hsm_url(), credential, **emulator.client_options())
    key = keys.create_rsa_key("bench-rsa-2048", size=2048)
    rbac = KeyVaultAccessControlClient(emulator.hsm_url(), credential, **emulator.client_options())
    role = rbac.set_role_definition("/", role_name="bench crypto without read",
                                    permissions=[KeyVaultPermission(data_actions=CRYPTO_ACTIONS)])
    principal = emulator.create_principal("bench-crypto")
    rbac.create_role_assignment("/", role.id, principal["object_id"])
    crypto = CryptographyClient(key.id, emulator.credential(principal), **emulator.client_options())
    digest = hashlib.sha256(b"benchmark").digest()
    signature = crypto.sign(SignatureAlgorithm.rs256, digest).signature
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, os.urandom(32)).encrypted_key
    return {"endpoints": emulator.endpoints, "principal": principal, "key_id": key.id, "name": key.name,
            "version": key.properties.version, "digest": digest, "signature": signature, "wrapped": wrapped,
            "n": key.key.n, "e": key.key.e}


def _worker(job: dict, operation: str, start_at: float, seconds: float, results) -> None:
    """One load process: a sync SDK client calling one operation back to back until the deadline."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm, SignatureAlgorithm

    endpoints = job["endpoints"]
    # use_env_settings=False: requests would otherwise re-read proxy/CA environment per call.
    options = {"verify_challenge_resource": False, "connection_verify": endpoints["ca_bundle"],
               "use_env_settings": False}

    def credential(principal: dict) -> ClientSecretCredential:
        return ClientSecretCredential(endpoints["tenant_id"], principal["client_id"], principal["client_secret"],
                                      authority=endpoints["authority"], disable_instance_discovery=True,
                                      connection_verify=endpoints["ca_bundle"])

    keys = KeyClient(endpoints["hsms"]["primary"], credential(endpoints["principals"]["bootstrap-admin"]), **options)
    crypto = CryptographyClient(job["key_id"], credential(job["principal"]), **options)
    call = {
        "get key": lambda: keys.get_key(job["name"], job["version"]),
        "sign": lambda: crypto.sign(SignatureAlgorithm.rs256, job["digest"]),
        "verify": lambda: crypto.verify(SignatureAlgorithm.rs256, job["digest"], job["signature"]),
        "wrap": lambda: crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, job["digest"]),
        "unwrap": lambda: crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, job["wrapped"]),
    }[operation]
    for _ in range(5):  # warm up: challenge, token, connection
        call()
    time.sleep(max(0.0, start_at - time.time()))
    deadline, done, cpu = start_at + seconds, 0, time.process_time()
    while time.time() < deadline:
        call()
        done += 1
    results.put((done, time.process_time() - cpu))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_emulator(job: dict, operation: str, processes: int, seconds: float, server_pid: int) -> dict:
    """Calls per second of ``operation`` from ``processes`` client processes, and CPU ms per call."""
    context = mp.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 3.0  # every process has started and warmed up by then
    workers = [context.Process(target=_worker, args=(job, operation, start_at, seconds, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, start_at - time.time()))
    server_cpu = _cpu_seconds(server_pid)
    counts = [results.get(timeout=seconds + 60) for _ in workers]
    server_cpu = _cpu_seconds(server_pid) - server_cpu
    for worker in workers:
        worker.join()
    calls = sum(done for done, _ in counts) or 1
    return {"rate": calls / seconds, "server_ms": server_cpu / calls * 1000,
            "client_ms": sum(cpu for _, cpu in counts) / calls * 1000}


def measure_local(job: dict, operation: str, seconds: float) -> float:
    """Calls per second of the same operation in-process with ``cryptography`` (one thread)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    private = rsa.generate_private_key(65537, 2048)
    public = private.public_key()
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    digest = job["digest"]
    signature = private.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    wrapped = public.encrypt(os.urandom(32), oaep)
    calls = {
        "get key": lambda: public.public_numbers(),
        "sign": lambda: private.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())),
        "verify": lambda: public.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())),
        "wrap": lambda: public.encrypt(digest, oaep),
        "unwrap": lambda: private.decrypt(wrapped, oaep),
    }
    call = calls[operation]
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            call()
        done += 50
    return done / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement time per operation (default 8)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--operations", nargs="*", default=list(OPERATIONS), choices=OPERATIONS)
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    with EmulatorProcess(state, hsms=("primary",)) as emulator:
        job = _prepare(emulator)
        print(f"emulator: {emulator.hsm_url()}  cores: {os.cpu_count()}  load: {args.processes} processes, each "
              f"one sync SDK client calling back to back, {args.seconds:g} s per operation")
        print("verify and wrap run on the emulator: the crypto principal may not read the key, so the SDK's "
              "initial GET is refused and it does every operation remotely.")
        print(f"{'operation (RSA-2048)':<22}{'emulator/s':>11}{'target/s':>9}{'local/s':>10}{'ratio':>8}"
              f"{'server ms':>11}{'client ms':>11}{'server/s/core':>15}")
        for operation in args.operations:
            remote = measure_emulator(job, operation, args.processes, args.seconds, emulator.pid)
            local = measure_local(job, operation, min(args.seconds, 2.0))
            target = TARGETS.get(operation)
            label = {"sign": "sign RS256", "verify": "verify RS256", "wrap": "wrap RSA-OAEP-256",
                     "unwrap": "unwrap RSA-OAEP-256"}.get(operation, operation)
            print(f"{label:<22}{remote['rate']:>11.0f}{(str(target) if target else '-'):>9}{local:>10.0f}"
                  f"{remote['rate'] / local:>8.3f}{remote['server_ms']:>11.3f}{remote['client_ms']:>11.3f}"
                  f"{1000 / remote['server_ms']:>15.0f}", flush=True)
        print("ratio = emulator/local. server/client ms = CPU time per call in the emulator process and in the "
              "SDK client processes, which share the same cores; server/s/core = 1000 / server ms, the calls "
              "one core of emulator CPU sustains when the clients run elsewhere.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
