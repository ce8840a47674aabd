"""Time every dashboard page on an SQLite table of 1,000,000 jobs.

    python benchmarks/dashboard.py [--jobs 1000000] [--repeat 7] [--db PATH]

Fills a fresh SQLite file (bulk ``executemany``, a few seconds), registers
workers and per-minute outcomes, then requests each page through the WSGI app
(no HTTP server, so the figure is the app's own time: SQL and rendering) and
prints the median and worst of ``--repeat`` requests against the 200 ms target.
An existing file of the same size is reused.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinydj
from tinydj import control
from tinydj.dashboard import make_app
from tinydj.testing import FakeClock

TARGET_MS = 200.0
NOW = datetime(2030, 1, 1, 12, 0, 0)
QUEUES = [("default", 50), ("mail", 20), ("images", 15), ("reports", 10), ("billing", 5)]
FUNCTIONS = {
    "default": "shop.tasks:sync_inventory",
    "mail": "shop.mail:send_receipt",
    "images": "shop.media:resize",
    "reports": "shop.reports:build",
    "billing": "shop.billing:charge",
}
ERROR = (
    "RuntimeError: payment gateway timed out for order {n}\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/shop/billing.py", line 88, in charge\n'
    "    gateway.charge(order, cents)\n"
    "RuntimeError: payment gateway timed out for order {n}"
)


def _fill(config: tinydj.Config, total: int) -> None:
    store = config.store
    store.ensure_schema()
    rng = random.Random(7)
    weights = [w for _, w in QUEUES]
    names = [q for q, _ in QUEUES]
    t = store._t
    sql = (
        "INSERT INTO delayed_jobs (priority, attempts, handler, last_error, run_at, locked_at, "
        "locked_by, failed_at, reoccur_in, last_run_at, created_at, updated_at, queue, key, "
        "interruptions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
    )
    batch: list[tuple[Any, ...]] = []
    cursor = store.db.cursor()
    started = time.perf_counter()
    with store.db.atomic():
        for n in range(total):
            queue = rng.choices(names, weights)[0]
            created = NOW - timedelta(seconds=(total - n) * 0.5)
            handler = (
                f"tinydj: 1\nfunction: {FUNCTIONS[queue]}\n"
                f'args: ["order-{n}", {n % 977}]\nkwargs: {{"notify": true}}\n'
            )
            roll = rng.random()
            failed = roll < 0.02
            scheduled = 0.02 <= roll < 0.10
            run_at = created + timedelta(hours=2) if scheduled else created
            batch.append(
                (
                    rng.choice((0, 0, 0, 5, 10)),
                    25 if failed else 0,
                    handler,
                    ERROR.format(n=n) if failed else None,
                    t(run_at),
                    None,
                    None,
                    t(created + timedelta(minutes=30)) if failed else None,
                    None,
                    None,
                    t(created),
                    t(created),
                    queue,
                    None,
                )
            )
            if len(batch) == 20_000:
                cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            cursor.executemany(sql, batch)
        for i in range(20):
            store._execute(
                sql,
                (
                    0,
                    0,
                    f"tinydj: 1\nfunction: shop.cron:job_{i}\n",
                    None,
                    t(NOW + timedelta(minutes=i)),
                    None,
                    None,
                    None,
                    f"{5 + i}m",
                    t(NOW - timedelta(minutes=20 - i)),
                    t(NOW - timedelta(days=3)),
                    t(NOW),
                    "default",
                    f"shop.cron:job_{i}",
                ),
            )
        # Fifty jobs held by five workers.
        store._execute(
            "UPDATE delayed_jobs SET locked_at = ?, locked_by = 'host:app-' || (id % 5) || "
            "' pid:100 w1' WHERE id IN (SELECT id FROM delayed_jobs WHERE failed_at IS NULL "
            "AND run_at <= ? ORDER BY priority, run_at, id LIMIT 50)",
            (t(NOW), t(NOW)),
        )
    for i in range(6):
        control.register_worker(
            f"host:app-{i} pid:100 w1",
            host=f"app-{i}",
            pid=100 + i,
            threads=8,
            queues=None,
            now=NOW - timedelta(seconds=5 if i < 5 else 600),
            store=store,
        )
    control.record_outcomes(
        {
            (NOW - timedelta(minutes=m), q): (rng.randint(50, 400), rng.randint(0, 5))
            for m in range(60)
            for q, _ in QUEUES
        },
        store=store,
    )
    store.db.execute_sql("ANALYZE")
    print(f"filled {total:,} jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def _request(app: Any, path: str) -> tuple[str, int]:
    raw, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": raw,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8642",
        "HTTP_HOST": "127.0.0.1:8642",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
    }
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    return status[0], len(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", help="SQLite file (default: a temporary one)")
    args = parser.parse_args(argv)
    path = Path(args.db or Path(tempfile.gettempdir()) / f"tinydj-dashboard-{args.jobs}.sqlite3")
    config = tinydj.configure(f"sqlite:///{path}", clock=FakeClock(NOW))
    (have,) = config.database.execute_sql(
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'delayed_jobs'"
    ).fetchone()
    count = (
        config.database.execute_sql("SELECT COUNT(*) FROM delayed_jobs").fetchone()[0]
        if have
        else 0
    )
    if count < args.jobs:
        config.database.execute_sql("DROP TABLE IF EXISTS delayed_jobs")
        for table in ("tinydj_workers", "tinydj_queues", "tinydj_stats"):
            config.database.execute_sql(f"DROP TABLE IF EXISTS {table}")
        config = tinydj.configure(f"sqlite:///{path}", clock=FakeClock(NOW))
        _fill(config, args.jobs)
    from tinydj.dashboard.queries import queue_counts

    started = time.perf_counter()
    queue_counts(config.store, NOW)
    cold = (time.perf_counter() - started) * 1000
    print(
        f"counting per queue and state: {cold:.0f} ms (done once, then in the background: "
        "pages show the last counts)"
    )
    app = make_app(config)
    _request(app, "/")  # the first request counts (see tinydj/dashboard/cache.py)
    failed_id = tinydj.list_jobs(failed=True, limit=1)[0].id
    middle = args.jobs // 2
    pages = [
        ("overview", "/"),
        ("jobs (newest)", "/jobs"),
        ("jobs (page deep in the table)", f"/jobs?before={middle}"),
        ("jobs newer page", f"/jobs?after={middle}"),
        ("jobs state=ready", "/jobs?state=ready"),
        ("jobs state=scheduled", "/jobs?state=scheduled"),
        ("jobs state=running", "/jobs?state=running"),
        ("jobs state=recurring", "/jobs?state=recurring"),
        ("jobs queue=billing", "/jobs?queue=billing"),
        ("jobs function=shop.mail:send_receipt", "/jobs?function=shop.mail:send_receipt"),
        ("jobs text search (common)", "/jobs?q=notify"),
        ("jobs text search (rare)", f"/jobs?q=order-{middle}%22"),
        ("jobs text search (rare), next window", f"/jobs?q=order-{middle}%22&before={middle}"),
        ("jobs queue=default", "/jobs?queue=default"),
        ("jobs id=", f"/jobs?id={middle}"),
        ("failed", "/failed"),
        ("failed queue=billing", "/failed?queue=billing"),
        ("job page", f"/jobs/{failed_id}"),
        ("recurring", "/recurring"),
        ("queues", "/queues"),
        ("workers", "/workers"),
    ]
    print(f"{'page':40} {'median ms':>10} {'max ms':>8}  status  target {TARGET_MS:.0f} ms")
    slow = 0
    for name, url in pages:
        times = []
        status = ""
        for _ in range(args.repeat):
            started = time.perf_counter()
            status, _size = _request(app, url)
            times.append((time.perf_counter() - started) * 1000)
        median = statistics.median(times)
        ok = median <= TARGET_MS
        slow += not ok
        print(
            f"{name:40} {median:10.1f} {max(times):8.1f}  {status[:3]:6}  {'ok' if ok else 'SLOW'}"
        )
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
