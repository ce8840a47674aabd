#!/usr/bin/env python
"""Reserve cost of workers of all, one and several queues as the table grows.

    python benchmarks/queues.py                       # SQLite, PostgreSQL, MySQL; 10k-1M rows
    python benchmarks/queues.py --quick               # 10k and 100k rows, fewer reserves
    python benchmarks/queues.py --only sqlite --rows 10000,1000000

Beside N rows that a worker of queues ``default`` and ``mail`` must not read,
half of them scheduled for later in ``default`` and half due now in a queue
``other``, 20 due jobs wait in ``default`` and 20 in ``mail``. The figure is
the median time of one ``Store.reserve`` of 10 jobs (then released again),
for a worker of all queues, of ``default`` only, and of ``default`` and
``mail``. The cost should not grow with N (issue 14: within 1.3x from 10,000
to 1,000,000 rows); a worker of several queues read every such row before
the change that made it seek each queue (SQLite 0.54 / 7.2 / 70 ms at 10k /
100k / 1M).

The rows go into a database of their own on the servers (``<database>_queues``,
created and dropped) and into a temporary file for SQLite. Benchmarks are not
tests: nothing asserts; the target is printed as met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import peewee  # noqa: E402

import tinydj  # noqa: E402
from tinydj.schedule import utcnow  # noqa: E402
from tinydj.store import NewJob, Store  # noqa: E402

SERVERS = {
    "postgresql": os.environ.get("TINYDJ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("TINYDJ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
WORKERS: dict[str, list[str] | None] = {
    "all queues": None,
    "one queue": ["default"],
    "two queues": ["default", "mail"],
}
TARGET = 1.3
LEASE = timedelta(seconds=30)


def _server_db(url: str, create: bool) -> str:
    """``url`` pointed at a database of its own, created or dropped on the server."""
    base, _, name = url.rpartition("/")
    own = f"{name}_queues"
    config = tinydj.configure(url)
    db = config.database
    if url.startswith("mysql"):
        db.execute_sql(
            f"{'CREATE' if create else 'DROP'} DATABASE IF {'NOT ' if create else ''}EXISTS {own}"
        )
    else:
        db.execute_sql("COMMIT") if db.in_transaction() else None
        exists = db.execute_sql("SELECT 1 FROM pg_database WHERE datname = %s", (own,)).fetchone()
        if create and not exists:
            db.execute_sql(f"CREATE DATABASE {own}")
        elif not create and exists:
            db.execute_sql(f"DROP DATABASE {own}")
    config.store.close()
    db.close()
    return f"{base}/{own}"


def _fill(store: Store, rows: int) -> None:
    now = utcnow()

    def add(count: int, queue: str, delta: timedelta) -> None:
        for k in range(0, count, 5_000):
            size = min(5_000, count - k)
            handlers = [f"tinydj: 1\nfunction: bench_jobs:noop\nargs: [{i}]\n" for i in range(size)]
            store.insert(NewJob.many(handlers, queue, 0, now + delta), now)

    add(rows // 2, "default", timedelta(hours=1))  # later
    add(rows // 2, "other", timedelta(seconds=-60))  # due, another queue
    add(20, "default", timedelta(seconds=-10))
    add(20, "mail", timedelta(seconds=-5))


def _cost(store: Store, queues: list[str] | None, reserves: int) -> float:
    """Median ms of one reserve of 10 (each released again, by id: a release
    by worker name reads the whole table, and evicts what the next reserve
    would find in SQLite's page cache)."""
    times = []
    for r in range(reserves):
        now = utcnow()
        started = time.perf_counter()
        got = store.reserve(f"bench-{r}", now, now - LEASE, queues, 10)
        times.append(time.perf_counter() - started)
        if len(got) != 10:
            raise RuntimeError(f"reserved {len(got)} jobs, not 10")
        store.release(f"bench-{r}", [job.id for job in got])  # by id: no scan
    return statistics.median(times) * 1000


def _empty(config: tinydj.Config) -> None:
    """Empty the table. On the servers a TRUNCATE, not a DELETE: InnoDB would
    go on purging a million deleted rows while the next size is measured,
    and PostgreSQL's index would keep their entries until a VACUUM."""
    if isinstance(config.database, peewee.SqliteDatabase):
        config.store.clear()
    else:
        config.database.execute_sql("TRUNCATE TABLE delayed_jobs")


def measure(url: str, rows: int, reserves: int) -> dict[str, float]:
    config = tinydj.configure(url)
    store = config.store
    store.ensure_schema()
    _empty(config)
    _fill(store, rows)
    if url.startswith("postgresql"):
        config.database.execute_sql("VACUUM ANALYZE delayed_jobs")
    _cost(store, None, 10)  # warm-up
    costs = {label: _cost(store, queues, reserves) for label, queues in WORKERS.items()}
    _empty(config)
    store.close()
    if not isinstance(config.database, peewee.SqliteDatabase):
        config.database.close()
    return costs


def run(args: argparse.Namespace) -> dict[str, dict[int, dict[str, float]]]:
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tinydj-queues-") as tmp:
        for name in args.only:
            url = "" if name == "sqlite" else _server_db(SERVERS[name], True)
            try:
                results[name] = {}
                for rows in args.rows:
                    if not args.silent:
                        print(f"{name}: {rows:,} rows ...", file=sys.stderr)
                    where = url or f"sqlite:///{tmp}/queues-{rows}.db"  # a fresh file each
                    results[name][rows] = measure(where, rows, args.reserves)
            finally:
                if name != "sqlite":
                    _server_db(SERVERS[name], False)
    return results


def report(results: dict[str, dict[int, dict[str, float]]]) -> None:
    print("ms per reserve of 10 jobs (median), beside N rows not due or of another queue")
    for name, by_rows in results.items():
        sizes = sorted(by_rows)
        head = "".join(f"{f'N = {n:,}':>16}" for n in sizes)
        print(f"\n{name:12}{'worker of':>12}{head}{'largest/smallest':>20}")
        for label in WORKERS:
            cells = "".join(f"{by_rows[n][label]:>13.3f} ms" for n in sizes)
            ratio = by_rows[sizes[-1]][label] / by_rows[sizes[0]][label]
            verdict = "MET" if ratio <= TARGET else "MISS"
            print(f"{'':12}{label:>12}{cells}{ratio:>14.2f}x {verdict}")
    print(f"\ntarget: within {TARGET}x from the smallest to the largest table (issue 14)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma list of sqlite, postgresql, mysql (all)")
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows, 15 reserves")
    parser.add_argument("--rows", help="comma list of row counts (10000,100000,1000000)")
    parser.add_argument("--reserves", type=int, help="reserves measured per worker (31)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--silent", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    args.only = (args.only or "sqlite,postgresql,mysql").split(",")
    sizes = "10000,100000" if args.quick else "10000,100000,1000000"
    args.rows = [int(n) for n in (args.rows or sizes).split(",")]
    args.reserves = args.reserves or (15 if args.quick else 31)
    results = run(args)
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
