"""The key inventory against direct SDK listing, and the portal's overhead on a rotation.

Starts the emulator, creates N keys in it, syncs them into a scratch PostgreSQL database,
then prints: the key list page's server time (median, p95) with N keys cached; the time to
list the same keys directly through the SDK; their ratio; and key rotation through the
portal's API against the raw SDK call, with the ratio.
Targets (issue C): list p95 <= 100 ms and >= 20x faster than direct listing; rotation <= 1.1x.
Run: .venv/bin/python bench/keys_bench.py [--keys 5000] [--repeat 50]
"""
import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _django import drop_database, setup_django, summary, timed

DB = "portal_bench_keys"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--rotations", type=int, default=20)
    args = parser.parse_args()

    from tests.support.emulator import EmulatorProcess

    emulator = EmulatorProcess(Path(tempfile.mkdtemp(prefix="bench-emu-"))).start()
    setup_django(DB)
    try:
        run(args, emulator)
    finally:
        drop_database(DB)
        emulator.stop()


def run(args, emulator) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from keys_app.models import KeyRecord
    from keys_app.tasks import inventory_sync_run
    from portal import gateway
    from portal.gateway.emulator_config import apply_to_settings
    from portal.gateway.models import HsmInstance
    from portal.jobs.models import Job
    from portal.permissions import sync_roles

    endpoints = emulator.endpoints
    settings.ALLOWED_HOSTS = ["testserver"]
    apply_to_settings(settings, endpoints)
    hsm = HsmInstance.objects.create(name="primary", uri=endpoints["hsms"]["primary"])
    client = gateway.keys(hsm)

    started = time.perf_counter()
    def make(n: int) -> None:
        client.create_oct_key(f"bench-{n:05d}", size=256, hardware_protected=True,
                              tags={"owner": f"team-{n % 20}", "env": "prod" if n % 3 else "dev"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(args.keys)))
    print(f"created {args.keys:,} keys in the emulator in {time.perf_counter() - started:.1f} s")

    sync_roles()
    admin = get_user_model().objects.create_user("bench-admin")
    admin.groups.add(Group.objects.get(name="admin"))
    job = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, actor=admin)
    started = time.perf_counter()
    inventory_sync_run.apply(args=[job.pk], task_id="bench-sync")
    print(f"first inventory sync: {KeyRecord.objects.filter(hsm=hsm).count():,} keys cached in "
          f"{time.perf_counter() - started:.1f} s")
    job = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, actor=admin)
    started = time.perf_counter()
    inventory_sync_run.apply(args=[job.pk], task_id="bench-sync-2")
    print(f"incremental sync with nothing changed: {time.perf_counter() - started:.1f} s")

    browser = Client()
    browser.force_login(admin)

    def page(query):
        def call():
            response = browser.get("/hsms/primary/keys/", query)
            assert response.status_code == 200
        return call

    print(f"\nkey list page, server time with {args.keys:,} keys cached (Django test client):")
    results = {}
    for label, query in [("first page", {}), ("name search", {"q": "bench-04"}),
                         ("tag filter", {"tag": "env=dev"}), ("expiry + sort", {"expiry": "none", "sort": "-name"}),
                         ("last page", {"page": args.keys // 50})]:
        results[label] = timed(page(query), args.repeat)
        print(f"  {label:14} {summary(results[label])}")
    direct = timed(lambda: sum(1 for _ in client.list_properties_of_keys()), 3)
    print(f"\nlisting the same {args.keys:,} keys directly through the SDK: "
          f"median {statistics.median(direct):,.0f} ms (n=3)")
    first = results["first page"]
    p95 = sorted(first)[max(0, int(len(first) * 0.95) - 1)]
    print(f"ratio (direct SDK listing / page p95): {statistics.median(direct) / p95:,.0f}x "
          f"(target >= 20x, p95 target <= 100 ms)")

    api = Client()
    api.force_login(admin)
    for kty, create in [("RSA-2048", lambda name: client.create_rsa_key(name, size=2048, hardware_protected=True, tags={"owner": "bench"})),
                        ("AES-256", lambda name: client.create_oct_key(name, size=256, hardware_protected=True, tags={"owner": "bench"}))]:
        name = f"rotate-{kty.lower()}"
        create(name)
        job = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, actor=admin)
        inventory_sync_run.apply(args=[job.pk], task_id=f"bench-sync-{name}")

        def portal_rotate(name=name):
            response = api.post(f"/api/v1/hsms/primary/keys/{name}/rotate/")
            assert response.status_code == 200, response.content
        raw = timed(lambda name=name: client.rotate_key(name), args.rotations)
        portal = timed(portal_rotate, args.rotations)
        print(f"\nrotation of a {kty} key ({args.rotations} each):")
        print(f"  raw SDK rotate_key      {summary(raw)}")
        print(f"  portal API rotate       {summary(portal)}")
        print(f"  overhead ratio (median) {statistics.median(portal) / statistics.median(raw):.2f}x "
              f"(target <= 1.1x)")


if __name__ == "__main__":
    main()
