"""The key inventory against direct SDK listing, and the portal's overhead on a rotation.

Starts the emulator, creates N keys in it, syncs them into a scratch PostgreSQL database,
then prints: the key list page's server time (median, p95) with N keys cached; the time to
list the same keys directly through the SDK; their ratio; and key rotation through the
portal's API against the raw SDK call, with the ratio.
Targets: list p95 <= 100 ms and >= 20x faster than direct listing (issue C); portal
overhead on a rotation <= 5 ms p50 (issue K), with a breakdown of where it goes.
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
    from portal.audit.models import AuditEvent
    from portal.audit.services import audit_record
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
    print(f"\nportal overhead on an HSM write: rotation through the portal API minus the raw "
          f"SDK rotate_key, {args.rotations} of each, interleaved (target: overhead p50 <= 5 ms)")
    for kty, create in [("RSA-2048", lambda name: client.create_rsa_key(name, size=2048, hardware_protected=True, tags={"owner": "bench"})),
                        ("AES-256", lambda name: client.create_oct_key(name, size=256, hardware_protected=True, tags={"owner": "bench"}))]:
        name = f"rotate-{kty.lower()}"
        create(name)
        job = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, actor=admin)
        inventory_sync_run.apply(args=[job.pk], task_id=f"bench-sync-{name}")

        def portal_rotate(name=name):
            response = api.post(f"/api/v1/hsms/primary/keys/{name}/rotate/")
            assert response.status_code == 200, response.content
        raw, portal = interleaved([lambda name=name: client.rotate_key(name), portal_rotate],
                                  args.rotations)
        pairs = [p - r for p, r in zip(portal, raw, strict=True)]
        print(f"  {kty}: raw SDK rotate_key {summary(raw)}")
        print(f"  {kty}: portal API rotate  {summary(portal)}")
        print(f"  {kty}: overhead p50 {statistics.median(portal) - statistics.median(raw):5.1f} ms "
              f"(median of pairwise differences {statistics.median(pairs):5.1f} ms)")

    # Where the overhead goes: the parts of a portal write measured alone, same run.
    def read_hsms():
        response = api.get("/api/v1/hsms/")
        assert response.status_code == 200, response.content
    request = timed(read_hsms, args.rotations)
    query = timed(lambda: HsmInstance.objects.filter(name="primary").first(), args.rotations)
    append = timed(lambda: audit_record(actor=admin, action="bench.append", target="bench",
                                        outcome=AuditEvent.Outcome.RECORDED), args.rotations)
    commit = timed(empty_commit, args.rotations)
    print("\nwhere a portal write's milliseconds go (medians):")
    print(f"  a light API request (GET /api/v1/hsms/: session, user, role, one query, JSON): "
          f"{statistics.median(request):5.1f} ms")
    print(f"  one ORM read of one row (a write's request makes about 14 statements): "
          f"{statistics.median(query):5.1f} ms")
    print(f"  one committed audit append (chain-head lock, insert, head update, commit): "
          f"{statistics.median(append):5.1f} ms; a write makes two (intent before the HSM "
          f"call, outcome with the cache update after)")
    print(f"  of which the commit of an empty-ish write transaction (WAL flush): "
          f"{statistics.median(commit):5.1f} ms")


def interleaved(calls, repeat: int) -> list[list[float]]:
    """Wall times (ms) of each call, run in turn (a, b, a, b...) so that machine load
    drifting during the run weighs on both alike; one warm-up round first."""
    for call in calls:
        call()
    times = [[] for _ in calls]
    for _ in range(repeat):
        for index, call in enumerate(calls):
            start = time.perf_counter()
            call()
            times[index].append((time.perf_counter() - start) * 1000)
    return times


def empty_commit() -> None:
    """One transaction that writes a row and commits (what each audited step pays to flush)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE keys_app_inventorystate SET lease_until = lease_until")

if __name__ == "__main__":
    main()
