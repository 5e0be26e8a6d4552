"""Evidence pack and posture run at scale: the time to collect, draw and store a pack with
N keys in the inventory (and N access requests, N/10 backups), and its sizes.

    .venv/bin/python bench/evidence_pack_bench.py [--keys 1000 5000]

A scratch PostgreSQL database (bench_evidence) is created and dropped; no HSM is called
(the pack reads the portal's records; posture's Resource Manager checks answer "unknown"
for an HSM without a resource id).
"""
import argparse
import time
from datetime import timedelta

from _django import drop_database, setup_django

DB = "bench_evidence"


def seed(n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from access_app.models import AccessRequest
    from dr_app.models import BackupRecord
    from keys_app.models import KeyRecord
    from portal.gateway.models import HsmInstance

    now = timezone.now()
    hsm, _ = HsmInstance.objects.get_or_create(name="bench", defaults={
        "uri": "https://bench.managedhsm.azure.net"})
    KeyRecord.objects.filter(hsm=hsm).delete()
    KeyRecord.objects.bulk_create([KeyRecord(
        hsm=hsm, name=f"key-{i:06d}", version=f"{i:032x}", kty="RSA-HSM", key_size=2048,
        created_on=now - timedelta(days=i % 1000), expires=None if i % 3 else now + timedelta(days=90),
        rotation_policy=None if i % 2 else {"expires_after": "P2Y", "lifetime_actions": [
            {"action": "Rotate", "time_after_create": "P1Y"}]}) for i in range(n)], batch_size=2000)
    AccessRequest.objects.filter(hsm=hsm).delete()
    AccessRequest.objects.bulk_create([AccessRequest(
        hsm=hsm, principal_id=f"{i:08d}-0000-0000-0000-000000000000", role_definition_id="x",
        role_name="Managed HSM Crypto User", scope=f"/keys/key-{i:06d}", justification="bench",
        duration_hours=8, correlation_id=f"c{i}", status="expired") for i in range(n)], batch_size=2000)
    BackupRecord.objects.filter(hsm=hsm).delete()
    BackupRecord.objects.bulk_create([BackupRecord(
        hsm=hsm, container="b", folder=f"f{i}", status="succeeded",
        started=now - timedelta(hours=i * 6), finished=now - timedelta(hours=i * 6 - 1))
        for i in range(max(n // 10, 1))])
    get_user_model().objects.get_or_create(username="bench-auditor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    setup_django(DB)
    try:
        from django.contrib.auth import get_user_model

        from compliance_app import services
        from compliance_app.models import EvidencePack
        from portal.jobs.services import job_claim

        print(f"{'keys':>7} {'posture s':>10} {'pack s':>8} {'pdf KiB':>8} {'json KiB':>9} {'pages':>6}")
        for n in args.keys:
            seed(n)
            user = get_user_model().objects.get(username="bench-auditor")
            from compliance_app.tasks import posture_run as _  # noqa: F401  (tasks import)

            start = time.perf_counter()
            services.posture_run_scheduled()
            posture_s = time.perf_counter() - start
            pack = services.evidence_pack_start(actor=user, request_id=f"bench-{n}")
            job_claim(job_id=pack.job_id, token=f"bench-{n}")
            start = time.perf_counter()
            services.evidence_pack_run(job_id=pack.job_id)
            pack_s = time.perf_counter() - start
            pack = EvidencePack.objects.get(pk=pack.pk)
            pages = bytes(pack.pdf).count(b"/Type /Page\n") or bytes(pack.pdf).count(b"/Type /Page")
            json_bytes = len(services.pack_json_bytes(pack.document))
            print(f"{n:>7} {posture_s:>10.2f} {pack_s:>8.2f} {pack.pdf_bytes / 1024:>8.0f} "
                  f"{json_bytes / 1024:>9.0f} {pages:>6}")
    finally:
        drop_database(DB)


if __name__ == "__main__":
    main()
