"""What concurrency limits cost, and how close limited work gets to its ideal.

    python benchmarks/concurrency.py                 # SQLite, about half a minute
    python benchmarks/concurrency.py --database postgresql://postgres@127.0.0.1/test

Three figures, each from a fresh process and database, in one run:

1. **free**: drain of N no-op jobs without limits, no limit declared anywhere
   (the worker's gate stays off: the ordinary reserve only).
2. **free, a limit exists**: the same drain after a limit was declared (the
   gate runs its statements in every reserve transaction).
3. **limited**: K keys x M jobs that each sleep S seconds, limit L per key,
   drained by P worker processes x T threads; elapsed against the ideal
   M * S / L (keys run side by side when P * T >= K * L).

Printed as jobs/s and ratios; nothing here is asserted (that is the tests' job:
tests/test_limits.py checks the limit itself).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from bench_jobs import limited, noop  # noqa: E402

import tinydj  # noqa: E402
from tinydj import limits  # noqa: E402
from tinydj.schedule import utcnow  # noqa: E402


def _fresh(url: str | None, tmp: str, name: str) -> str:
    if url is None:
        return f"sqlite:///{tmp}/{name}.sqlite3"
    db = tinydj.config.open_database(url)
    for table in ("delayed_jobs", "tinydj_concurrency"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
    db.close()
    return url


def drain(url: str, n: int, declare: bool) -> float:
    """Jobs per second of one worker thread draining ``n`` no-op jobs."""
    config = tinydj.configure(url)
    if declare:
        limits.declare(config.store, "elsewhere:fn", 1)
        limits._declared.clear()  # as if another process had declared it
    noop.send_later_many([(i,) for i in range(n)])
    worker = tinydj.Worker(config=config)
    started = time.perf_counter()
    done = 0
    while done < n:
        ok, bad = worker.work_off(n)
        if not ok + bad:
            break
        done += ok + bad
    elapsed = time.perf_counter() - started
    config.store.close()
    return done / elapsed


def _work(url: str, threads: int, stop: Any) -> None:
    worker = tinydj.Worker(config=tinydj.configure(url), threads=threads, poll_interval=0.2)
    worker.start()
    stop.wait()
    worker.stop()


def run_limited(
    url: str, keys: int, per_key: int, seconds: float, procs: int, threads: int
) -> float:
    """Elapsed seconds until every limited job has finished."""
    config = tinydj.configure(url)
    config.store.ensure_schema()
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    workers = [ctx.Process(target=_work, args=(url, threads, stop)) for _ in range(procs)]
    for p in workers:
        p.start()
    while len(tinydj.control.list_workers(now=utcnow())) < procs:
        time.sleep(0.05)
    started = time.perf_counter()
    for _ in range(per_key):
        for k in range(keys):
            limited.send_later(f"k{k}", seconds)
    while tinydj.list_jobs():
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    for p in workers:
        p.join(30)
    config.store.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", help="server URL (default: SQLite files in a temp dir)")
    parser.add_argument("-n", type=int, default=20_000, help="no-op jobs per drain")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--per-key", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        free, gated = [], []
        for rep in range(args.reps):  # alternate, so that load changes hit both
            free.append(drain(_fresh(args.database, tmp, f"free{rep}"), args.n, False))
            gated.append(drain(_fresh(args.database, tmp, f"gated{rep}"), args.n, True))
        elapsed = run_limited(
            _fresh(args.database, tmp, "limited"),
            args.keys,
            args.per_key,
            args.seconds,
            args.procs,
            args.threads,
        )
    ideal = args.per_key * args.seconds / 2
    print(f"database: {args.database or 'sqlite'}; load average {os.getloadavg()[0]:.1f}")
    print(f"free drain, no limit anywhere:   {max(free):>9,.0f} jobs/s (best of {args.reps})")
    print(
        f"free drain, a limit exists:      {max(gated):>9,.0f} jobs/s "
        f"({max(gated) / max(free):.2f}x of the above)"
    )
    print(
        f"limited: {args.keys} keys x {args.per_key} jobs of {args.seconds} s, limit 2, "
        f"{args.procs} x {args.threads} threads: {elapsed:.2f} s, ideal {ideal:.2f} s "
        f"({ideal / elapsed:.2f} of ideal)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
