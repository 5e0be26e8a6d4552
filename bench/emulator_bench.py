"""Throughput of the Managed HSM emulator through the official SDK, beside local ``cryptography``.

Run: ``.venv/bin/python bench/emulator_bench.py [--seconds N] [--processes P] [--concurrency C]``

It starts its own (ephemeral) emulator, creates an RSA-2048 key, and measures for each
operation the completed calls per second:

- get key: ``KeyClient.get_key(name, version)``;
- sign (RS256), verify (RS256), wrap (RSA-OAEP-256), unwrap (RSA-OAEP-256):
  ``CryptographyClient`` for a principal whose custom role grants the crypto data actions
  but not ``keys/read/action``. The client's initial GET is refused (403), which makes
  the SDK send *every* operation to the service (its documented fallback), so verify and
  wrap, which it would otherwise do locally with the public key, are measured on the
  emulator too.

Load comes from several client processes (no GIL shared with each other or with the
emulator), each running asyncio SDK clients (aiohttp) with C calls in flight: on a
2-core machine that gives more calls per second than threads with the sync clients,
which spend more CPU per call. The emulator and the clients share the machine's cores,
so the figures are end-to-end. The same operations are then timed in-process with
``cryptography`` on one thread (get key's local counterpart is exporting the public
numbers, i.e. building the JWK), and the ratio emulator/local is printed.
"""

from __future__ import annotations

import argparse
import asyncio
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


def _worker(job: dict, operation: str, concurrency: int, start_at: float, seconds: float, results) -> None:
    """One load process: C concurrent async SDK calls of one operation until the deadline."""
    asyncio.run(_load(job, operation, concurrency, start_at, seconds, results))


async def _load(job: dict, operation: str, concurrency: int, start_at: float, seconds: float, results) -> None:
    from azure.identity.aio import ClientSecretCredential
    from azure.keyvault.keys.aio import KeyClient
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm, SignatureAlgorithm
    from azure.keyvault.keys.crypto.aio import CryptographyClient

    endpoints = job["endpoints"]
    options = {"verify_challenge_resource": False, "connection_verify": endpoints["ca_bundle"]}

    def credential(principal: dict):
        return ClientSecretCredential(endpoints["tenant_id"], principal["client_id"], principal["client_secret"],
                                      authority=endpoints["authority"], disable_instance_discovery=True,
                                      connection_verify=endpoints["ca_bundle"])

    admin = credential(endpoints["principals"]["bootstrap-admin"])
    crypto_credential = credential(job["principal"])
    keys = KeyClient(endpoints["hsms"]["primary"], admin, **options)
    crypto = CryptographyClient(job["key_id"], crypto_credential, **options)
    calls = {
        "get key": lambda: keys.get_key(job["name"], job["version"]),
        "sign": lambda: crypto.sign(SignatureAlgorithm.rs256, job["digest"]),
        "verify": lambda: crypto.verify(SignatureAlgorithm.rs256, job["digest"], job["signature"]),
        "wrap": lambda: crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, job["digest"]),
        "unwrap": lambda: crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, job["wrapped"]),
    }
    call = calls[operation]
    for _ in range(concurrency):  # warm up: challenge, token, connections
        await call()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + seconds
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.time() < deadline:
            await call()
            done += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    results.put(done)
    await keys.close()
    await crypto.close()
    await admin.close()
    await crypto_credential.close()


def measure_emulator(job: dict, operation: str, processes: int, concurrency: int, seconds: float) -> float:
    """Calls per second of ``operation`` from ``processes`` x ``concurrency`` clients."""
    context = mp.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 3.0  # every process has started and warmed up by then
    workers = [context.Process(target=_worker, args=(job, operation, concurrency, start_at, seconds, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


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
    parser.add_argument("--processes", type=int, default=3, help="client processes (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight per process (default 16)")
    parser.add_argument("--operations", nargs="*", default=list(OPERATIONS), choices=OPERATIONS)
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    with EmulatorProcess(state, hsms=("primary",)) as emulator:
        job = _prepare(emulator)
        print(f"emulator: {emulator.hsm_url()}  cores: {os.cpu_count()}  load: {args.processes} processes x "
              f"{args.concurrency} async SDK calls in flight, {args.seconds:g} s per operation")
        print("verify and wrap run on the emulator: the crypto principal may not read the key, so the SDK's "
              "initial GET is refused and it does every operation remotely.")
        print(f"{'operation (RSA-2048)':<22}{'emulator/s':>12}{'target/s':>10}{'local/s':>12}{'emulator/local':>16}")
        for operation in args.operations:
            remote = measure_emulator(job, operation, args.processes, args.concurrency, args.seconds)
            local = measure_local(job, operation, min(args.seconds, 2.0))
            target = TARGETS.get(operation)
            label = {"sign": "sign RS256", "verify": "verify RS256", "wrap": "wrap RSA-OAEP-256",
                     "unwrap": "unwrap RSA-OAEP-256"}.get(operation, operation)
            print(f"{label:<22}{remote:>12.0f}{(str(target) if target else '-'):>10}{local:>12.0f}"
                  f"{remote / local:>16.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
