#!/usr/bin/env python
"""Where one tinydj worker's time goes on PostgreSQL (a diagnostic, not a benchmark).

    python benchmarks/pg_profile.py               # 20,000 no-op jobs, one worker
    python benchmarks/pg_profile.py --cprofile    # plus the top of a cProfile
    python benchmarks/pg_profile.py --filler 1000000   # next to 1M future rows

Creates the database ``tinydj_bench_profile`` (``--db-name``), writes a backlog,
drains it with ``Worker(threads=1).run(exit_on_complete=True)`` in this
process and prints: the wall time per job spent in each kind of statement
(BEGIN, the DELETE that acknowledges finished jobs, the reserving UPDATE,
COMMIT) and outside the database, the time ``run()`` takes to return after the
last job, the WAL written per job and how many of the reserving UPDATEs were
HOT. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.dirname(HERE), HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import pg_jobs  # noqa: E402
import postgres  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--filler", type=int, default=0, help="future rows next to the backlog")
    parser.add_argument("--cprofile", action="store_true", help="also print a cProfile top 25")
    parser.add_argument("--server", default=postgres.DEFAULT_SERVER)
    parser.add_argument("--db-name", default="tinydj_bench_profile")
    args = parser.parse_args()

    url = postgres.with_db(args.server, args.db_name)
    postgres.admin(
        args.server,
        f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)',
        f'CREATE DATABASE "{args.db_name}"',
    )
    try:
        return profile(url, args)
    finally:
        postgres.admin(args.server, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')


def profile(url: str, args: argparse.Namespace) -> int:
    import tinydj

    pg_jobs.install(url, "tinydj")
    if args.filler:
        pg_jobs.fill_future(url, "tinydj", args.filler)
    pg_jobs.tinydj_backlog(url, args.jobs)
    pg_jobs.settle(url, "tinydj")
    with pg_jobs.pg(url) as cur:
        cur.execute("SELECT pg_current_wal_lsn()")
        lsn = cur.fetchone()[0]
        cur.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'delayed_jobs'"
        )
        upd0 = cur.fetchone()

    config = tinydj.configure(url)
    config.store.ensure_schema()
    db = config.database
    spent: dict[str, float] = collections.defaultdict(float)
    calls: dict[str, int] = collections.Counter()

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - started
                calls[name] += 1

        return wrapper

    execute_sql = db.execute_sql

    def execute(sql: str, params: Any = None, *a: Any, **k: Any) -> Any:
        kind = sql.split(None, 1)[0].upper()
        return timed(kind, execute_sql)(sql, params, *a, **k)

    db.execute_sql = execute
    db.begin = timed("BEGIN", db.begin)
    db.commit = timed("COMMIT", db.commit)

    worker = tinydj.Worker(threads=1, config=config)
    last_job: dict[str, float] = {}
    execute = worker._batches._execute

    def execute_and_stamp(job: Any) -> Any:
        outcome = execute(job)
        last_job["t"] = time.perf_counter()
        return outcome

    worker._batches._execute = execute_and_stamp
    profiler = cProfile.Profile() if args.cprofile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    worker.run(exit_on_complete=True)
    if profiler:
        profiler.disable()
    took = time.perf_counter() - started
    config.store.close()
    time.sleep(1.2)  # statistics are flushed by the backends within a second

    left = pg_jobs.pending(url, "tinydj") - args.filler
    with pg_jobs.pg(url) as cur:
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,))
        wal = float(cur.fetchone()[0])
        cur.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'delayed_jobs'"
        )
        upd1 = cur.fetchone()
    n = args.jobs
    done_at = last_job.get("t", started + took) - started
    print(f"{n:,} jobs next to {args.filler:,} future rows: {took:.2f} s, {n / took:,.0f} jobs/s")
    print(f"  last job done after {done_at:.2f} s; run() returned {took - done_at:.3f} s later")
    print(f"  jobs left: {left}")
    print("wall time per job:")
    in_db = 0.0
    for kind in sorted(spent, key=lambda k: -spent[k]):
        in_db += spent[kind]
        print(
            f"  {kind:8} {spent[kind] / n * 1e6:7.1f} us  ({calls[kind]:,} calls, "
            f"{spent[kind] / calls[kind] * 1e6:6.0f} us each, {spent[kind] / took:5.1%})"
        )
    print(f"  {'other':8} {(took - in_db) / n * 1e6:7.1f} us  (running jobs, Python, shutdown)")
    updates, hot = upd1[0] - upd0[0], upd1[1] - upd0[1]
    print(f"WAL: {wal / n:,.0f} bytes per job; UPDATEs: {updates:,}, of them HOT: {hot:,}")
    if profiler:
        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
