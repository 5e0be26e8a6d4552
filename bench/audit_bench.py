"""The auditor's page and API with a million audit events: server time per request.

Fills a scratch database with N valid chain rows (COPY), then times the page and the API
unfiltered, filtered (actor, action prefix, target prefix, outcome, time window) and deep
in the trail (keyset cursor); then audit *searches* through the API with the filters
combined with a date range at a random place in the year (p95 per case and over all of
them; target <= 150 ms); then verifying the whole chain: the hash chain alone
(`audit_verify`) and the full verification (`audit_verification_run`, what manage.py
audit_verify and the Verify now job run, here without checkpoints: no HSM), with the
verify job's per-batch progress callback.
Run: .venv/bin/python bench/audit_bench.py [--events 1000000] [--repeat 30] [--db NAME]
"""
import argparse
import random
import time
from datetime import timedelta

from _django import drop_database, setup_django, summary, timed

DB = "portal_bench_audit"


def fill(count: int) -> None:
    import json

    from django.db import connection
    from django.utils import timezone

    from portal.audit.chain import GENESIS_HASH, event_hash

    actors = [f"user{n}" for n in range(50)]
    actions = ["key.create", "key.rotate", "key.delete", "role.grant", "backup.start", "auth.sign_in"]
    outcomes = ["intent", "succeeded", "failed", "recorded"]
    start = timezone.now() - timedelta(days=365)
    prev = GENESIS_HASH
    with connection.cursor() as cursor:
        # A bulk load skips the chain guards (each row would re-check the head); the scratch
        # database's superuser may, the portal's runtime role may not.
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("ALTER TABLE audit_auditchainhead DISABLE TRIGGER USER")
        with cursor.copy("COPY audit_auditevent (seq, time, actor_id, actor_name, role, "
                         "request_id, action, target, outcome, detail, prev_hash, hash) "
                         "FROM STDIN") as copy:
            for seq in range(1, count + 1):
                row = {"seq": seq, "time": start + timedelta(seconds=seq * 30),
                       "actor_id": str(seq % 50), "actor_name": actors[seq % 50],
                       "role": "admin", "request_id": f"r{seq:x}",
                       "action": actions[seq % len(actions)],
                       "target": f"hsm:primary/key:key-{seq % 5000}",
                       "outcome": outcomes[seq % len(outcomes)], "detail": {"n": seq % 7},
                       "prev_hash": prev}
                row["hash"] = event_hash(row)
                prev = row["hash"]
                copy.write_row([row["seq"], row["time"], row["actor_id"], row["actor_name"],
                                row["role"], row["request_id"], row["action"], row["target"],
                                row["outcome"], json.dumps(row["detail"]), row["prev_hash"],
                                row["hash"]])
        cursor.execute("UPDATE audit_auditchainhead SET seq = %s, hash = %s WHERE id = 1",
                       [count, prev])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
        cursor.execute("ALTER TABLE audit_auditchainhead ENABLE TRIGGER USER")
        cursor.execute("ANALYZE audit_auditevent")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--searches", type=int, default=100,
                        help="random searches per combined-filter case")
    parser.add_argument("--db", default=DB, help="scratch database (dropped at the end)")
    args = parser.parse_args()
    db = args.db
    setup_django(db)
    try:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.test import Client

        from portal.audit.services import audit_verify
        from portal.permissions import sync_roles

        settings.ALLOWED_HOSTS = ["testserver"]
        started = time.perf_counter()
        fill(args.events)
        print(f"filled {args.events:,} chained audit events in {time.perf_counter() - started:.1f} s")
        sync_roles()
        auditor = get_user_model().objects.create_user("bench-auditor")
        auditor.groups.add(Group.objects.get(name="auditor"))
        client = Client()
        client.force_login(auditor)
        middle = args.events // 2
        cases = [
            ("page, newest 50", "/audit/", {}),
            ("page, actor", "/audit/", {"actor": "user7"}),
            ("page, action prefix", "/audit/", {"action": "key.rot"}),
            ("page, target prefix", "/audit/", {"target": "hsm:primary/key:key-4999"}),
            ("page, outcome", "/audit/", {"outcome": "failed"}),
            ("page, time window", "/audit/", {"since": "2026-03-01 00:00", "until": "2026-03-02 00:00"}),
            ("page, deep cursor", "/audit/", {"before": middle}),
            ("api, newest 50", "/api/v1/audit-events/", {}),
            ("api, actor + deep cursor", "/api/v1/audit-events/", {"actor": "user3", "before": middle}),
        ]
        print(f"\nserver time per request with {args.events:,} events (Django test client, PostgreSQL):")
        for label, path, query in cases:
            def call(path=path, query=query):
                response = client.get(path, query)
                assert response.status_code == 200, (path, response.status_code)
            print(f"  {label:28} {summary(timed(call, args.repeat))}")
        search(client, args)
        started = time.perf_counter()
        report = audit_verify()
        elapsed = time.perf_counter() - started
        print(f"\naudit_verify (hash chain only): {report.checked:,} rows in {elapsed:.1f} s "
              f"({report.checked / elapsed:,.0f} rows/s), ok={report.ok}")
        from portal.audit.checkpoints import audit_verification_run

        batches = []
        started = time.perf_counter()
        verification = audit_verification_run(
            trigger="bench", check_checkpoints=False,
            progress=lambda done, total: batches.append(done))
        elapsed = time.perf_counter() - started
        print(f"full verification (the job's code path, progress per batch): "
              f"{verification.rows:,} rows in {elapsed:.1f} s "
              f"({verification.rows / elapsed:,.0f} rows/s), {len(batches)} progress "
              f"reports, ok={verification.ok}")
    finally:
        drop_database(db)


def search(client, args) -> None:
    """API searches with filters and a random date range: p95 per case and overall."""
    from django.utils import timezone

    from portal.audit.models import AuditEvent

    first = AuditEvent.objects.order_by("seq").values_list("time", flat=True).first()
    last = AuditEvent.objects.order_by("-seq").values_list("time", flat=True).first()
    rng = random.Random(14)

    def window(days: int) -> dict:
        span = max((last - first).total_seconds() - days * 86400, 1)
        since = first + timedelta(seconds=rng.uniform(0, span))
        fmt = "%Y-%m-%d %H:%M:%S"
        return {"since": since.strftime(fmt), "until": (since + timedelta(days=days)).strftime(fmt)}

    actors = [f"user{n}" for n in range(50)]
    actions = ["key.", "key.rotate", "role.grant", "backup.start"]
    cases = [
        ("date range (1 day)", lambda: window(1)),
        ("date range (30 days)", lambda: window(30)),
        ("actor + 7 days", lambda: {"actor": rng.choice(actors), **window(7)}),
        ("action prefix + 7 days", lambda: {"action": rng.choice(actions), **window(7)}),
        ("target (one key) + 90 days",
         lambda: {"target": f"hsm:primary/key:key-{rng.randrange(5000)}", **window(90)}),
        ("target prefix + 30 days",
         lambda: {"target": f"hsm:primary/key:key-{rng.randrange(10, 99)}", **window(30)}),
        ("actor + action + 30 days",
         lambda: {"actor": rng.choice(actors), "action": rng.choice(actions), **window(30)}),
        ("actor + action + target + range",
         lambda: {"actor": rng.choice(actors), "action": rng.choice(actions),
                  "target": f"hsm:primary/key:key-{rng.randrange(10, 99)}",
                  **window(rng.choice((1, 7, 30, 180)))}),
        ("actor + target, no match + 180 days",
         lambda: {"actor": rng.choice(actors), "target": "hsm:primary/key:none", **window(180)}),
    ]
    print(f"\naudit search through the API ({args.searches} random searches per case, "
          f"newest 50 matching, {timezone.now():%Y-%m-%d}):")
    every = []
    for label, params in cases:
        times = []
        client.get("/api/v1/audit-events/", params())  # warm-up
        for _ in range(args.searches):
            query = params()
            started = time.perf_counter()
            response = client.get("/api/v1/audit-events/", query)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (query, response.status_code)
        every += times
        print(f"  {label:36} {summary(times)}")
    print(f"  {'all searches':36} {summary(every)}   target p95 <= 150 ms")


if __name__ == "__main__":
    main()
