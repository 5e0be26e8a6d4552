"""What HSM audit events cost the emulator's data plane: a key get with and without a diagnostic setting.

Run: ``.venv/bin/python bench/hsm_audit_bench.py [--calls N]``

1. In-process: ``AuditTrail.record`` per request, without a setting (the event is built and
   facts are kept in the activity list) and with one (plus an entry for the writer thread,
   which builds and serializes the event off the request path), in microseconds per event.
2. End to end through the official SDK: an ephemeral emulator with two HSMs, ``plain`` (no
   setting) and ``audited`` (a diagnostic setting sending ``AuditEvent`` to a storage
   account, so every call is also appended to Azurite by the writer thread); ``get_key`` on
   each, alternating blocks of 50 calls so machine noise falls on both alike; p50/p95 per HSM.
   Then checks count for count that every ``audited`` call is in storage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsm_emulator.audit import AuditTrail, AuditWriter  # noqa: E402
from tests.support.emulator import EmulatorProcess  # noqa: E402

ARM_SCOPE = "https://management.azure.com/.default"


def record_cost(events: int = 50_000) -> dict:
    """Microseconds per ``record`` without and with delivery (the writer thread not started)."""
    headers = [(b"host", b"127.0.0.1:1"), (b"user-agent", b"azsdk-python-keyvault-keys/4.11.3 Python/3.11"),
               (b"x-ms-client-request-id", b"0f8b4bb4-52a2-11f0-9a1d-0242ac120002"),
               (b"authorization", b"Bearer not-logged")]
    claims = {"oid": "7d3f0c7e-0000-4000-8000-000000000001", "appid": "a", "appidacr": "1", "idtyp": "app",
              "aud": "https://managedhsm.azure.net", "tid": "t"}
    out = {}
    for delivering in (False, True):
        trail = AuditTrail("bench")
        trail.resource_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/bench"
        trail.writer = AuditWriter(None)
        trail.writer._thread = object()  # measure the put, not the I/O
        trail.delivering = delivering
        started = time.perf_counter()
        for _ in range(events):
            trail.record(when=datetime.datetime.now(datetime.timezone.utc), method="GET", path="/keys/k1/",
                         query_string=b"api-version=7.6", pattern=r"^/keys/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?$",
                         status=200, claims=claims, rbac=True, description=None, client_ip="127.0.0.1",
                         headers=headers, duration_ms=0, base_url="https://127.0.0.1:1", params={"name": "k1"})
        out["with setting" if delivering else "without setting"] = (time.perf_counter() - started) / events * 1e6
    return out


def end_to_end(calls: int) -> dict:
    import httpx
    from azure.keyvault.keys import KeyClient
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.storage import models as storage_models
    from azure.storage.blob import ContainerClient

    with tempfile.TemporaryDirectory(prefix="hsm-audit-bench-") as state:
        emulator = EmulatorProcess(Path(state), hsms=("plain", "audited")).start()
        try:
            ep = emulator.endpoints
            storage = StorageManagementClient(emulator.credential(), ep["subscription_id"], base_url=ep["arm"],
                                              credential_scopes=[ARM_SCOPE], connection_verify=emulator.ca_bundle)
            account = storage.storage_accounts.begin_create(
                ep["resource_group"], "hsmauditbench", storage_models.StorageAccountCreateParameters(
                    location="westeurope", kind="StorageV2", sku=storage_models.Sku(name="Standard_LRS"))).result()
            token = emulator.credential().get_token(ARM_SCOPE).token
            setting = (f"{ep['arm']}{ep['hsm_resource_ids']['audited']}/providers/Microsoft.Insights/"
                       "diagnosticSettings/bench")
            httpx.put(setting, params={"api-version": "2021-05-01-preview"},
                      headers={"Authorization": f"Bearer {token}"}, verify=emulator.ca_bundle,
                      json={"properties": {"storageAccountId": account.id,
                                           "logs": [{"category": "AuditEvent", "enabled": True}]}}).raise_for_status()
            clients = {}
            for hsm in ("plain", "audited"):
                client = KeyClient(emulator.hsm_url(hsm), emulator.credential(), **emulator.client_options())
                client.create_rsa_key("bench", size=2048)
                for _ in range(50):
                    client.get_key("bench")
                clients[hsm] = client
            mark = emulator.audit("audited")["seq"]
            timings: dict[str, list[float]] = {"plain": [], "audited": []}
            block = 50
            for _ in range(max(1, calls // block)):
                for hsm in ("plain", "audited"):
                    client = clients[hsm]
                    for _ in range(block):
                        started = time.perf_counter()
                        client.get_key("bench")
                        timings[hsm].append((time.perf_counter() - started) * 1000)
            emulator.flush_audit("audited")
            count = emulator.audit("audited", since=mark)["count"]
            blob = ContainerClient(ep["storage"]["blob_endpoint"], "insights-logs-auditevent",
                                   credential={"account_name": ep["storage"]["account_name"],
                                               "account_key": ep["storage"]["account_key"]},
                                   connection_verify=emulator.ca_bundle)
            prefix = f"resourceId={ep['hsm_resource_ids']['audited'].upper()}/"
            lines = [json.loads(line) for b in blob.list_blobs(name_starts_with=prefix)
                     for line in blob.download_blob(b.name).readall().decode().splitlines()]
            stored = sum(1 for line in lines if line["operationName"] == "KeyGet")
        finally:
            emulator.stop()
    result = {}
    for hsm, values in timings.items():
        values.sort()
        result[hsm] = {"calls": len(values), "p50": statistics.median(values),
                       "p95": values[int(len(values) * 0.95) - 1]}
    result["count_for_count"] = {"recorded since mark": count, "KeyGet lines in storage": stored,
                                 "timed audited calls": len(timings["audited"])}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="key gets per HSM (default 1000)")
    args = parser.parse_args()
    if not 50 <= args.calls <= 100_000:
        parser.error("--calls must be 50 to 100000")
    cost = record_cost()
    print("AuditTrail.record, in-process (µs per event):")
    for label, micros in cost.items():
        print(f"  {label:18} {micros:7.1f}")
    result = end_to_end(args.calls)
    print("get_key through the SDK (ms per call, sequential, one client per HSM):")
    for hsm in ("plain", "audited"):
        r = result[hsm]
        print(f"  {hsm:8} ({'no setting' if hsm == 'plain' else 'diagnostic setting'}): "
              f"p50 {r['p50']:.2f}  p95 {r['p95']:.2f}  ({r['calls']} calls)")
    c = result["count_for_count"]
    print(f"count for count: {c['recorded since mark']} recorded, {c['KeyGet lines in storage']} KeyGet lines in "
          f"storage (50 warm-up gets before the mark; {c['timed audited calls']} timed)")
    ok = c["recorded since mark"] == c["timed audited calls"] and c["KeyGet lines in storage"] >= c["timed audited calls"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
