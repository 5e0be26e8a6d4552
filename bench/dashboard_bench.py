"""The dashboard with 5,000 keys and a million audit events: server time per request and
per figure, and the plan of one day boundary of the 30-day audit histogram.

Fills a scratch database (generate_series: the rows are not a valid chain, which no figure
reads), spreading the events over --days days before now (365: ~82,000 in the 30-day
window; 30: all of them in it, the worst case). Run:
  .venv/bin/python bench/dashboard_bench.py [--events 1000000] [--keys 5000] [--days 365]
"""
import argparse
import time

from _django import drop_database, setup_django, summary, timed

DB = "portal_bench_dashboard"


def fill(*, events: int, keys: int, days: int) -> None:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from keys_app.models import KeyRecord
    from portal.gateway.models import HsmInstance

    now = timezone.now()
    hsms = [HsmInstance.objects.create(name=f"hsm{n}", uri=f"https://hsm{n}.managedhsm.azure.net")
            for n in range(2)]
    KeyRecord.objects.bulk_create([
        KeyRecord(hsm=hsms[n % 2], name=f"key-{n:05d}", kty="RSA-HSM", key_size=3072,
                  expires=None if n % 11 == 0 else now + timedelta(days=n % 500 - 20),
                  enabled=n % 13 != 0, has_rotation_policy=n % 3 != 0, drift=n % 97 == 0)
        for n in range(keys)], batch_size=2000)
    step = days * 86400 / events
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("""
            INSERT INTO audit_auditevent (seq, time, actor_id, actor_name, role, request_id,
                client_request_id, action, target, outcome, detail, prev_hash, hash)
            SELECT s, %s - make_interval(secs => (%s - s) * %s), (s %% 50)::text,
                   'user' || (s %% 50), 'admin', 'r' || s, '',
                   CASE WHEN s %% 1000 = 0
                        THEN (ARRAY['key.delete','key.purge','hsm.deregister',
                                    'key.disable'])[1 + (s / 1000) %% 4]
                        ELSE (ARRAY['key.create','key.rotate','key.update',
                                    'auth.sign_in'])[1 + s %% 4] END,
                   'hsm:hsm0/key:key-' || (s %% 5000),
                   (ARRAY['intent','succeeded','failed','recorded'])[1 + s %% 4],
                   '{"n": 1}'::jsonb, md5((s - 1)::text) || md5((s - 1)::text || 'x'),
                   md5(s::text) || md5(s::text || 'x')
            FROM generate_series(1, %s) AS s""", [now, events, step, events])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    # What autovacuum does on a live system (index-only scans need the visibility map).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")
        cursor.execute("VACUUM ANALYZE keys_app_keyrecord")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    setup_django(DB)
    try:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        from keys_app.dashboard import key_figures
        from portal import dashboard
        from portal.audit.models import AuditEvent
        from portal.permissions import sync_roles

        settings.ALLOWED_HOSTS = ["testserver"]
        started = time.perf_counter()
        fill(events=args.events, keys=args.keys, days=args.days)
        window = AuditEvent.objects.filter(time__gte=timezone.now() - timezone.timedelta(days=30))
        print(f"filled {args.keys:,} keys and {args.events:,} audit events over {args.days} days "
              f"({window.count():,} in the last 30) in {time.perf_counter() - started:.1f} s")
        sync_roles()
        admin = get_user_model().objects.create_user("bench-admin")
        admin.groups.add(Group.objects.get(name="admin"))
        client = Client()
        client.force_login(admin)
        now = timezone.now()

        def page():
            assert client.get("/").status_code == 200

        from portal.tables import cursor_encode

        def key_list(query):
            def call():
                assert client.get("/hsms/hsm0/keys/", query).status_code == 200
            return call

        deep = cursor_encode(["key-04800"])
        cases = [
            ("dashboard page (admin)", page),
            ("key list, first 50", key_list({})),
            ("key list, by expiry", key_list({"sort": "-expires"})),
            ("key list, page at key-04800", key_list({"after": deep})),
            ("audit activity, 30 days", lambda: dashboard.audit_activity_per_day(now=now)),
            ("dangerous actions", lambda: dashboard.dangerous_actions_recent()),
            ("key figures + expiry chart", lambda: key_figures(now=now)),
            ("failed jobs, 24 h", lambda: dashboard.failed_jobs_count(now=now)),
        ]
        print(f"\nserver time with {args.keys:,} keys and {args.events:,} audit events:")
        for label, call in cases:
            print(f"  {label:28} {summary(timed(call, args.repeat))}")
        start = now - timezone.timedelta(days=15)
        lookup = (AuditEvent.objects.filter(time__gte=start).order_by("time")
                  .values_list("seq", flat=True)[:1])
        sql, params = lookup.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
            print("\nplan of one day boundary of the histogram:\n  " +
                  "\n  ".join(row[0] for row in cursor.fetchall()))
    finally:
        drop_database(DB)


if __name__ == "__main__":
    main()
