#!/usr/bin/env python
"""tinydj on MySQL / MariaDB: is the cost flat as the table grows? (issue 14)

    python benchmarks/mysql.py                  # 10k, 100k, 1M future rows, 3 runs each
    python benchmarks/mysql.py --quick          # 10k and 100k, 1 run each
    python benchmarks/mysql.py --url mysql://root@127.0.0.1:3306/test --json mysql.json

One worker thread drains ``--jobs`` due jobs (``Worker.work_off``) beside N rows
scheduled for tomorrow, and the cost of a reserve that finds nothing (an idle
poll) is measured beside the same rows. Two layouts of the future rows:

- ``same``: at the due jobs' priority (0), the common case;
- ``higher``: at a higher priority (-1) than the due jobs, so that an index
  walked in ``(priority, run_at, id)`` order meets every future row first.

No ``ANALYZE`` is run (InnoDB's own persistent statistics apply). The rows are
written in a database of their own (``<database>_flat``, created and dropped),
so the test database is left alone. Benchmarks are not tests: nothing asserts;
the target (drain and idle cost within 1.3x from the smallest to the largest
table) is printed as met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_jobs  # noqa: E402
import pymysql  # noqa: E402

import tinydj  # noqa: E402
from tinydj.redact import mask  # noqa: E402

DEFAULT_URL = os.environ.get("TINYDJ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
TARGET = 1.3
LAYOUTS = {"same": 0, "higher": -1}

_COLUMNS = "(priority, attempts, handler, run_at, queue, created_at, updated_at, interruptions)"
#: Filler rows are valid no-op jobs due from tomorrow on, one second apart:
#: up to 1,000 written from here, then the table doubles itself.
_DOUBLE = (
    f"INSERT INTO delayed_jobs {_COLUMNS} SELECT priority, 0, handler, "
    "run_at + INTERVAL %s SECOND, queue, created_at, updated_at, 0 FROM delayed_jobs "
    "WHERE run_at > UTC_TIMESTAMP() LIMIT %s"
)


def _seed(n: int) -> str:
    values = ", ".join(["(%s, 0, %s, %s, 'default', %s, %s, 0)"] * n)
    return f"INSERT INTO delayed_jobs {_COLUMNS} VALUES {values}"


def _server(url: str) -> dict[str, Any]:
    u = urlparse(url)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": u.username or "root",
        "password": u.password or "",
        "autocommit": True,
    }


def _admin(url: str, *statements: str) -> None:
    conn = pymysql.connect(**_server(url))
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def _fill(url: str, rows: int, priority: int) -> float:
    """Empty the table, then write ``rows`` future rows (seed + doubling)."""
    from datetime import UTC, datetime, timedelta

    started = time.perf_counter()
    conn = pymysql.connect(**_server(url), database=urlparse(url).path.lstrip("/"))
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM delayed_jobs")
            now = datetime.now(UTC).replace(tzinfo=None)
            handler = "tinydj: 1\nfunction: bench_jobs:noop\nargs: [0]\n"
            seed: list[Any] = []
            for i in range(min(rows, 1000)):
                seed += [priority, handler, now + timedelta(days=1, seconds=i), now, now]
            have = min(rows, 1000)
            cur.execute(_seed(have), seed)
            while have < rows:
                cur.execute(_DOUBLE, (have, min(have, rows - have)))
                have += cur.rowcount
    finally:
        conn.close()
    return time.perf_counter() - started


def _measure(url: str, jobs: int) -> dict[str, Any]:
    config = tinydj.configure(url)
    worker = tinydj.Worker(threads=1, config=config)
    bench_jobs.noop.send_later_many([(i,) for i in range(20)])
    worker.work_off(20)  # connection, imports, adaptive batch size
    for k in range(0, jobs, 1000):
        bench_jobs.noop.send_later_many([(i,) for i in range(k, min(jobs, k + 1000))])
    started = time.perf_counter()
    ok, failed = worker.work_off(jobs)
    took = time.perf_counter() - started
    if (ok, failed) != (jobs, 0):
        raise RuntimeError(f"work_off({jobs}) returned {(ok, failed)}")
    idle = bench_jobs.idle_reserves(config.store, 50)
    config.store.close()
    return {"rate": jobs / took, "idle_ms": statistics.median(idle) * 1000}


def run(args: argparse.Namespace) -> dict[str, Any]:
    db = urlparse(args.url).path.lstrip("/") + "_flat"
    url = args.url.rsplit("/", 1)[0] + "/" + db
    _admin(args.url, f"DROP DATABASE IF EXISTS `{db}`", f"CREATE DATABASE `{db}`")
    tinydj.configure(url)
    tinydj.create_tables()
    results: dict[str, Any] = {"url": mask(url), "jobs": args.jobs, "layouts": {}}
    try:
        for layout, priority in LAYOUTS.items():
            per_size = results["layouts"][layout] = {}
            for rows in args.rows:
                fill = _fill(url, rows, priority)
                _measure(url, args.jobs)  # untimed: the first due jobs after a bulk fill
                runs = [_measure(url, args.jobs) for _ in range(args.reps)]
                per_size[rows] = {
                    "fill_s": fill,
                    "runs": runs,
                    "rate": statistics.median(r["rate"] for r in runs),
                    "idle_ms": statistics.median(r["idle_ms"] for r in runs),
                }
                if not args.silent:
                    print(f"  {layout} {rows:,}: {per_size[rows]['rate']:,.0f}/s, "
                          f"idle {per_size[rows]['idle_ms']:.2f} ms", file=sys.stderr)  # fmt: skip
    finally:
        tinydj.get_config().store.close()
        _admin(args.url, f"DROP DATABASE IF EXISTS `{db}`")
    return results


def report(results: dict[str, Any], rows: list[int]) -> None:
    conn = pymysql.connect(**_server(DEFAULT_URL))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()[0]
    finally:
        conn.close()
    print(f"\ntinydj on MySQL/MariaDB {version} (Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs): {results['jobs']:,} due jobs beside N future rows")  # fmt: skip
    print(f"{'layout':<8} {'future rows':>12} {'drain':>11} {'idle poll':>10}")
    for layout, per_size in results["layouts"].items():
        for n in rows:
            r = per_size[n]
            print(f"{layout:<8} {n:>12,} {r['rate']:>9,.0f}/s {r['idle_ms']:>7.2f} ms")
    print(f"\ntargets (issue 14): within {TARGET}x from {rows[0]:,} to {rows[-1]:,} future rows")
    for layout, per_size in results["layouts"].items():
        small, large = per_size[rows[0]], per_size[rows[-1]]
        for what, ratio in (
            ("drain", small["rate"] / large["rate"]),
            ("idle poll", large["idle_ms"] / small["idle_ms"]),
        ):
            mark = "MET  " if ratio <= TARGET else "MISS "
            print(f"  [{mark}] {what}, future rows at {layout} priority: {ratio:.2f}x slower")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a MySQL/MariaDB database URL")
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows, one run")
    parser.add_argument("--rows", help="comma list of future-row counts")
    parser.add_argument("--jobs", type=int, default=2_000, help="due jobs drained (2,000)")
    parser.add_argument("--reps", type=int, help="runs per size (3; quick 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--silent", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    sizes = "10000,100000" if args.quick else "10000,100000,1000000"
    args.rows = [int(n) for n in (args.rows or sizes).split(",")]
    args.reps = args.reps or (1 if args.quick else 3)
    results = run(args)
    report(results, args.rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
