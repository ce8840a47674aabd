#!/usr/bin/env python
"""tinydj on PostgreSQL vs pgqueuer vs procrastinate, side by side in one run.

    python benchmarks/postgres.py                 # full run (under 10 minutes)
    python benchmarks/postgres.py --quick         # about 2 minutes
    python benchmarks/postgres.py --libs tinydj,pgqueuer --json pg.json

Measures (see benchmarks/POSTGRES.md):

1. drain of a no-op backlog (20,000) with 1, 2, 4 and 8 worker processes;
2. reserve+run of due jobs in an empty table and next to 1M rows scheduled in
   the future (after VACUUM ANALYZE);
3. pickup latency with LISTEN/NOTIFY (every library's default), and
   tinydj's with polling only;
4. cost flat as the table grows: tinydj draining due jobs, and the cost of an
   idle poll, next to 10k, 100k and 1M rows scheduled for tomorrow;
5. bulk enqueue: 20,000 jobs through each library's bulk API, 1,000 per call
   (issue 14: tinydj against a bare multi-row INSERT, "batched").

"batched" is issue 14's batched floor: the same work in bare psycopg2, one
autocommit statement per 128 jobs (``pg_jobs.batched_worker``); for the
enqueue, one multi-row INSERT per 1,000 jobs.

Everything runs in databases of its own (``--db-name``, default
``tinydj_bench``, and ``tinydj_bench_filled`` for the 1M rows) that are
created at the start and dropped at the end. Each measurement runs in a fresh
Python process (``postgres.py --child ...``); worker processes are forked
from it and timed from a barrier they reach once set up.
Benchmarks are not tests: nothing here asserts; the expectations of issue 3
are reported as met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse, urlunparse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import common  # noqa: E402
from common import child_env, run_child  # noqa: E402

LIBS = ("tinydj", "pgqueuer", "procrastinate", "batched")
#: The queue libraries (the batched floor is not one: drains only).
QUEUES = ("tinydj", "pgqueuer", "procrastinate")
GROUPS = ("enqueue", "drain", "reserve", "latency", "flat")
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Reference figures of issue 3 (pgqueuer on this 2-core machine).
ISSUE_PGQUEUER = {1: 7_600, 4: 10_000}
#: Longest a drain may take before its workers are killed (seconds).
DRAIN_TIMEOUT = 300.0


def with_db(url: str, name: str) -> str:
    """``url`` pointed at the database ``name``."""
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def load1() -> float:
    return os.getloadavg()[0]


# =============================================================================
# Scenarios. Each runs in a fresh child process (``postgres.py --child NAME``)
# and returns a JSON-able dict.
# =============================================================================


def scn_install(p: dict[str, Any]) -> dict[str, Any]:
    import pg_jobs

    for lib in p["libs"]:
        pg_jobs.install(p["url"], lib)
    return {"libs": p["libs"]}


# -- workers (run in forked processes) ------------------------------------------


def _tinydj_worker(url: str, ready: Callable[[], None], options: dict[str, Any]) -> None:
    import tinydj

    config = tinydj.configure(url)
    config.store.ensure_schema()  # connects
    worker = tinydj.Worker(threads=1, config=config, **options)
    ready()
    worker.run(exit_on_complete=True)


def pgqueuer_run(coro: Any) -> Any:
    """Run a coroutine the way pgqueuer's own CLI (``pgq run``) does: on uvloop
    when it is installed (it comes with pgqueuer), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _pgqueuer_worker(url: str, ready: Callable[[], None], options: dict[str, Any]) -> None:
    import pg_jobs
    from pgqueuer.domain.types import QueueExecutionMode

    async def go() -> None:
        conn, qm = await pg_jobs.pgqueuer_manager(url)
        try:
            ready()  # blocks the loop, which has nothing else to do yet
            await qm.run(mode=QueueExecutionMode.drain, **options)
        finally:
            await conn.close()

    pgqueuer_run(go())


def _procrastinate_worker(url: str, ready: Callable[[], None], options: dict[str, Any]) -> None:
    import pg_jobs

    app = pg_jobs.procrastinate_app(url)

    async def go() -> None:
        async with app.open_async():
            ready()
            await app.run_worker_async(
                concurrency=1, wait=False, install_signal_handlers=False, **options
            )

    asyncio.run(go())


def _batched_worker(url: str, ready: Callable[[], None], options: dict[str, Any]) -> None:
    import pg_jobs

    pg_jobs.batched_worker(url, ready, options)


WORKERS: dict[str, Callable[[str, Callable[[], None], dict[str, Any]], None]] = {
    "tinydj": _tinydj_worker,
    "pgqueuer": _pgqueuer_worker,
    "procrastinate": _procrastinate_worker,
    "batched": _batched_worker,
}


def _worker_main(lib: str, url: str, options: dict[str, Any], barrier: Any, results: Any) -> None:
    """Body of a forked worker process: set up, meet at the barrier, work, report."""
    try:
        WORKERS[lib](url, lambda: barrier.wait(timeout=120), options)
        results.put(("ok", os.getpid(), time.monotonic()))
    except BaseException:
        results.put(("error", os.getpid(), traceback.format_exc()))


#: How often (seconds) the benchmark looks whether a drained table is empty.
EMPTY_POLL = 0.005


def _fork_and_time(
    lib: str, url: str, workers: int, options: dict[str, Any]
) -> tuple[float, float]:
    """Fork ``workers`` processes; time them from a barrier on.

    Each worker sets up (imports, connections) before the barrier, so neither
    interpreter start nor connecting is timed. Returns (seconds until the
    library's table holds no unfinished job, polled every ``EMPTY_POLL`` s
    from a connection of its own; seconds until the last worker has returned
    from its library's run call).
    """
    import pg_jobs
    import psycopg2

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(lib, url, options, barrier, results), daemon=True)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    try:
        barrier.wait(timeout=120)
        started = time.monotonic()
        deadline = started + DRAIN_TIMEOUT
        ends: list[float] = []
        errors: list[str] = []

        def collect(timeout: float) -> None:
            try:
                kind, _pid, value = results.get(timeout=timeout)
            except queue.Empty:
                return
            (ends if kind == "ok" else errors).append(value)

        emptied = None
        while emptied is None:
            cur.execute(pg_jobs.UNFINISHED_SQL[lib])
            now = time.monotonic()
            if not cur.fetchone()[0]:
                emptied = now
                break
            collect(EMPTY_POLL)
            if errors:
                raise RuntimeError(f"{lib} worker failed:\n{errors[0]}")
            if len(ends) == workers:
                # All returned between two looks (a fast worker): look once more.
                cur.execute(pg_jobs.UNFINISHED_SQL[lib])
                if not cur.fetchone()[0]:
                    emptied = max(ends)
                    break
            if len(ends) == workers or now > deadline:
                raise RuntimeError(f"{lib}: the table was not emptied (workers done: {len(ends)})")
        while len(ends) + len(errors) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{lib}: workers did not finish in {DRAIN_TIMEOUT:.0f} s")
            collect(0.1)
        if errors:
            raise RuntimeError(f"{lib} worker failed:\n{errors[0]}")
        for proc in procs:
            proc.join(timeout=30)
        return emptied - started, max(ends) - started
    finally:
        conn.close()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()


def scn_drain(p: dict[str, Any]) -> dict[str, Any]:
    """Backlog of ``n`` no-op jobs (untimed), then ``workers`` forked processes drain it."""
    import pg_jobs

    lib, url, n, workers = p["lib"], p["url"], p["n"], p["workers"]
    pg_jobs.reset(url, lib)
    pg_jobs.BACKLOG[lib](url, n)
    pg_jobs.settle(url, lib)
    load = load1()
    took, exited = _fork_and_time(lib, url, workers, p.get("options") or {})
    left = pg_jobs.pending(url, lib)
    done = pg_jobs.succeeded(url, lib)
    if left or (done is not None and done != n):
        raise RuntimeError(f"{lib}: {left} of {n} jobs left unfinished, {done} recorded as done")
    pg_jobs.reset(url, lib)
    return {
        "n": n,
        "workers": workers,
        "seconds": took,
        "rate": n / took,
        "seconds_to_exit": exited,
        "rate_to_exit": n / exited,
        "shutdown_seconds": exited - took,
        "load1": load,
    }


# -- bulk enqueue ---------------------------------------------------------------------


def _enqueue_tinydj(url: str, n: int, batch: int) -> tuple[float, str]:
    import bench_jobs

    import tinydj

    config = tinydj.configure(url)
    bench_jobs.noop.send_later_many([(-1,), (-2,)])  # connection, schema check
    started = time.perf_counter()
    for k in range(0, n, batch):
        bench_jobs.noop.send_later_many([(i,) for i in range(k, min(n, k + batch))])
    took = time.perf_counter() - started
    config.store.close()
    return took, f"noop.send_later_many(batch of {batch} arg tuples)"


def _enqueue_pgqueuer(url: str, n: int, batch: int) -> tuple[float, str]:
    import pg_jobs

    async def go() -> float:
        conn, queries = await pg_jobs.pgqueuer_queries(url)
        try:
            await queries.enqueue(["noop"], [b'{"i": -1}'], [0])
            started = time.perf_counter()
            for k in range(0, n, batch):
                m = min(n, k + batch) - k
                payloads = [f'{{"i": {i}}}'.encode() for i in range(k, k + m)]
                await queries.enqueue(["noop"] * m, payloads, [0] * m)
            return time.perf_counter() - started
        finally:
            await conn.close()

    return pgqueuer_run(go()), f"Queries.enqueue(lists of {batch})"


def _enqueue_batched(url: str, n: int, batch: int) -> tuple[float, str]:
    """The floor: a bare multi-row INSERT per batch (autocommit: one statement,
    one transaction), payloads of the size of tinydj's handlers."""
    import pg_jobs
    from psycopg2.extras import execute_values

    with pg_jobs.pg(url) as cur:
        cur.execute("INSERT INTO bjobs (payload) VALUES ('warm-up')")
        started = time.perf_counter()
        for k in range(0, n, batch):
            payloads = [
                (f"tinydj: 1\nfunction: bench_jobs:noop\nargs: [{i}]\n",)
                for i in range(k, min(n, k + batch))
            ]
            execute_values(cur, "INSERT INTO bjobs (payload) VALUES %s", payloads, page_size=batch)
        return time.perf_counter() - started, f"execute_values, {batch} rows per statement"


def _enqueue_own(url: str, n: int, batch: int) -> tuple[float, str]:
    """tinydj's own bulk statement (``Statements.insert_batch``) on its own
    table, sent by bare psycopg2: what the schema (indexes, the NOTIFY
    trigger) costs without tinydj's Python."""
    from datetime import UTC, datetime

    import pg_jobs

    import tinydj
    from tinydj.sql import POSTGRES, Statements

    config = tinydj.configure(url)
    config.store.ensure_schema()
    config.store.close()
    sql = Statements(POSTGRES).insert_batch(0)
    with pg_jobs.pg(url) as cur:
        started = time.perf_counter()
        for k in range(0, n, batch):
            handlers = [
                f"tinydj: 1\nfunction: bench_jobs:noop\nargs: [{i}]\n"
                for i in range(k, min(n, k + batch))
            ]
            now = datetime.now(UTC).replace(tzinfo=None)
            cur.execute(sql, (0, now, "default", now, now, handlers))
            cur.fetchall()
        return time.perf_counter() - started, "tinydj's insert_batch, bare psycopg2"


ENQUEUERS = {
    "tinydj": _enqueue_tinydj,
    "pgqueuer": _enqueue_pgqueuer,
    "batched": _enqueue_batched,
    "own": _enqueue_own,
}


def scn_enqueue(p: dict[str, Any]) -> dict[str, Any]:
    """``n`` no-op jobs through each library's bulk API, ``batch`` per call
    (each call its own transaction), into an emptied table."""
    import pg_jobs

    lib, url, n, batch = p["lib"], p["url"], p["n"], p["batch"]
    tables = "tinydj" if lib == "own" else lib
    pg_jobs.reset(url, tables)
    pg_jobs.settle(url, tables)
    load = load1()
    took, method = ENQUEUERS[lib](url, n, batch)
    pg_jobs.reset(url, tables)
    return {"n": n, "seconds": took, "rate": n / took, "method": method, "load1": load}


# -- reserve cost next to rows scheduled in the future ------------------------------


def scn_reserve_fill(p: dict[str, Any]) -> dict[str, Any]:
    """``rows`` rows scheduled from tomorrow on, then VACUUM ANALYZE."""
    import pg_jobs

    lib, url, rows = p["lib"], p["url"], p["rows"]
    pg_jobs.reset(url, lib)
    started = time.perf_counter()
    if rows:
        pg_jobs.fill_future(url, lib, rows)
    pg_jobs.settle(url, lib)
    os.sync()  # the OS writing back the fill's pages would slow the commits measured next
    return {"rows": rows, "seconds": time.perf_counter() - started}


def _explain_tinydj_reserve(url: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement tinydj reserves with, as it
    sends it (captured from one ``work_off(1)``), on a table with a few due jobs;
    rolled back."""
    import bench_jobs

    import tinydj

    config = tinydj.configure(url)
    db = config.database
    captured: list[tuple[str, Any]] = []
    original = db.execute_sql

    def spy(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        captured.append((sql, params))
        return original(sql, params, *args, **kwargs)

    bench_jobs.noop.send_later_many([(i,) for i in range(6)])
    db.execute_sql = spy
    try:
        tinydj.Worker(threads=1, config=config).work_off(1)
    finally:
        db.execute_sql = original
    reserve = [
        (s, a) for s, a in captured if s.lstrip().upper().startswith("UPDATE") and "LIMIT" in s
    ]
    plan: list[str] = []
    if reserve:
        sql, params = reserve[0]
        with db.atomic() as txn:
            rows = db.execute_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
            plan = [r[0] for r in rows]
            txn.rollback()
    tinydj.Worker(threads=1, config=config).work_off(10)
    config.store.close()
    return plan


def _explain_procrastinate_fetch(url: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the SELECT inside procrastinate_fetch_job_v2; rolled back."""
    import pg_jobs

    sql = """
        EXPLAIN (ANALYZE, BUFFERS)
        SELECT jobs.* FROM procrastinate_jobs AS jobs
        WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS other_jobs
                          WHERE jobs.lock IS NOT NULL AND other_jobs.lock = jobs.lock
                            AND (other_jobs.status = 'doing' OR (other_jobs.status = 'todo'
                                 AND (other_jobs.priority > jobs.priority OR
                                      (other_jobs.priority = jobs.priority
                                       AND other_jobs.id < jobs.id)))))
          AND jobs.status = 'todo'
          AND (NULL::varchar[] IS NULL OR jobs.queue_name = ANY(NULL::varchar[]))
          AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
        ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
        FOR UPDATE OF jobs SKIP LOCKED
    """
    with pg_jobs.pg(url) as cur:
        cur.execute("BEGIN")
        cur.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
            "SELECT 'default', 'noop', '{\"i\": 0}' FROM generate_series(1, 5)"
        )
        cur.execute(sql)
        plan = [r[0] for r in cur.fetchall()]
        cur.execute("ROLLBACK")
    return plan


def _explain_pgqueuer_dequeue(url: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of pgqueuer's dequeue query with a few due jobs; rolled back."""
    import uuid
    from datetime import timedelta

    import pg_jobs
    from pgqueuer.adapters.persistence import qb

    query = qb.QueryQueueBuilder().build_dequeue_query(
        batch_size=10,
        entrypoints=["noop"],
        concurrency_limits=[0],
        queue_manager_id=uuid.uuid4(),
        global_concurrency_limit=None,
        heartbeat_timeout=timedelta(seconds=30),
    )

    async def go() -> list[str]:
        conn, _ = await pg_jobs.pgqueuer_queries(url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO pgqueuer (priority, entrypoint, payload, status) "
                    "SELECT 0, 'noop', NULL, 'queued' FROM generate_series(1, 5)"
                )
                rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + query.sql, *query.args)
                plan = [r[0] for r in rows]
                raise _Rollback(plan)
        except _Rollback as rb:
            return rb.plan
        finally:
            await conn.close()

    return asyncio.run(go())


class _Rollback(Exception):
    def __init__(self, plan: list[str]) -> None:
        self.plan = plan


def _pgqueuer_run_until(url: str, jobs: int) -> None:
    """pgqueuer's QueueManager (continuous mode: its drain mode would wait for
    the future rows too) until ``jobs`` jobs have run."""
    import pg_jobs

    async def go() -> None:
        qm: Any = None

        def on_job(_: Any) -> None:
            if len(pg_jobs.STAMPS) >= jobs:
                qm.shutdown.set()

        conn, qm = await pg_jobs.pgqueuer_manager(url, on_job)
        try:
            await asyncio.wait_for(qm.run(), timeout=DRAIN_TIMEOUT)
        finally:
            await conn.close()

    pgqueuer_run(go())


def scn_reserve(p: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` due jobs next to the filler (no new ANALYZE), then one
    worker in this process runs them. Each job stamps its start time; the rate
    is the median over 10 consecutive windows of jobs (robust to a busy moment
    of the machine), the overall rate is in the JSON too."""
    import pg_jobs

    lib, url, jobs = p["lib"], p["url"], p["jobs"]
    before = pg_jobs.pending(url, lib)
    load = load1()
    if lib == "tinydj":
        import tinydj

        config = tinydj.configure(url)
        worker = tinydj.Worker(threads=1, config=config)
        warm = 20
        pg_jobs.tinydj_backlog(url, warm, stamped=True)
        worker.work_off(warm)  # connection, imports, adaptive batch size
        del pg_jobs.STAMPS[:]
        pg_jobs.tinydj_backlog(url, jobs, stamped=True)
        with pg_jobs.pg(url) as cur:
            cur.execute("CHECKPOINT")
        started = time.monotonic()
        ok, failed = worker.work_off(jobs)
        if (ok, failed) != (jobs, 0):
            raise RuntimeError(f"work_off({jobs}) returned {(ok, failed)}")
        config.store.close()
        method = f"Worker(threads=1).work_off({jobs}) after work_off({warm})"
    else:
        pg_jobs.BACKLOG[lib](url, jobs)
        with pg_jobs.pg(url) as cur:
            cur.execute("CHECKPOINT")
        started = time.monotonic()
        if lib == "pgqueuer":
            _pgqueuer_run_until(url, jobs)
            method = "QueueManager.run() (batch 10) until the last job ran"
        else:
            app = pg_jobs.procrastinate_app(url)

            async def go() -> None:
                async with app.open_async():
                    await app.run_worker_async(
                        concurrency=1, wait=False, install_signal_handlers=False
                    )

            asyncio.run(go())
            method = "run_worker_async(concurrency=1, wait=False)"
    stamps = pg_jobs.STAMPS
    if len(stamps) != jobs:
        raise RuntimeError(f"{lib} ran {len(stamps)} of {jobs} jobs")
    if lib == "pgqueuer":
        # Finished jobs are deleted when pgqueuer's log buffer is flushed (at
        # the latest on shutdown); the future rows stay.
        left = int(
            pg_jobs.scalar(url, "SELECT count(*) FROM pgqueuer WHERE execute_after <= now()")
        )
    else:
        left = pg_jobs.pending(url, lib) - before
    if left:
        raise RuntimeError(f"{lib}: {left} due jobs left")
    plan = None
    if p.get("plan"):
        explain = {
            "tinydj": _explain_tinydj_reserve,
            "procrastinate": _explain_procrastinate_fetch,
            "pgqueuer": _explain_pgqueuer_dequeue,
        }[lib]
        plan = explain(url)
    windows = pg_jobs.window_rates(stamps)
    took = stamps[-1] - started
    return {
        "jobs": jobs,
        "filler": before,
        "rate": statistics.median(windows),
        "window_rates": windows,
        "overall_rate": jobs / took,
        "seconds": took,
        "method": method,
        "plan": plan,
        "load1": load,
    }


def scn_flat(p: dict[str, Any]) -> dict[str, Any]:
    """tinydj next to the future rows: ``work_off(jobs)`` of due jobs (rate),
    then the cost of a reserve that finds nothing (an idle poll)."""
    import bench_jobs
    import pg_jobs

    import tinydj

    url, jobs = p["url"], p["jobs"]
    before = pg_jobs.pending(url, "tinydj")
    config = tinydj.configure(url)
    worker = tinydj.Worker(threads=1, config=config)
    pg_jobs.tinydj_backlog(url, 20)
    worker.work_off(20)  # connection, imports, adaptive batch size
    pg_jobs.tinydj_backlog(url, jobs)
    started = time.perf_counter()
    ok, failed = worker.work_off(jobs)
    took = time.perf_counter() - started
    if (ok, failed) != (jobs, 0):
        raise RuntimeError(f"work_off({jobs}) returned {(ok, failed)}")
    idle = bench_jobs.idle_reserves(config.store, 50)
    config.store.close()
    left = pg_jobs.pending(url, "tinydj") - before
    if left:
        raise RuntimeError(f"{left} due jobs left")
    return {
        "filler": before,
        "jobs": jobs,
        "rate": jobs / took,
        "idle_ms": statistics.median(idle) * 1000,
    }


# -- pickup latency -----------------------------------------------------------------


def _latency_stats(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    return {
        "samples": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def _stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _latency_worker(lib: str, url: str) -> None:
    """A long-running worker (forked) for the latency runs of pgqueuer and
    procrastinate; stops on SIGTERM."""
    import pg_jobs

    if lib == "pgqueuer":

        async def go_pgq() -> None:
            conn, qm = await pg_jobs.pgqueuer_manager(url)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, qm.shutdown.set)
            try:
                await qm.run()
            finally:
                await conn.close()

        pgqueuer_run(go_pgq())
        return
    app = pg_jobs.procrastinate_app(url)

    async def go_pro() -> None:
        async with app.open_async():
            await app.run_worker_async(concurrency=1, wait=True)  # its SIGTERM handler

    asyncio.run(go_pro())


def scn_latency(p: dict[str, Any]) -> dict[str, Any]:
    """Pickup latency: probes enqueued one at a time from here into an idle
    worker process; each job sends its start time back over UDP; latency =
    job start - the moment just before the enqueue call.

    tinydj: a ``python -m tinydj work`` process. ``poll`` None: NOTIFY (the
    default). Otherwise the insert trigger is dropped once both processes have
    created the schema (tinydj re-creates it at start), so that only polling
    every ``poll`` seconds finds the job; the pause before each probe is then
    random over a whole poll interval, so that probes land at random points of
    the worker's polling cycle. pgqueuer and procrastinate (their defaults,
    LISTEN/NOTIFY): a worker process forked from here.
    """
    import pg_jobs

    lib, url, count, poll = p.get("lib", "tinydj"), p["url"], p["samples"], p.get("poll")
    pg_jobs.reset(url, lib)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(60)
    port = sock.getsockname()[1]
    cleanup: list[Callable[[], None]] = []
    enqueue: Callable[[float], None]
    if lib == "tinydj":
        import bench_jobs

        import tinydj

        config = tinydj.configure(url)
        config.store.ensure_schema()
        cmd = [sys.executable, "-m", "tinydj", "work", "-q", "--threads", "1", "--database", url]
        if poll is not None:
            cmd += ["--poll-interval", str(poll)]
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL)
        cleanup += [lambda: _stop_process(proc), config.store.close]

        def enqueue(t0: float) -> None:
            bench_jobs.probe_udp.send_later(t0, port)

        mode = "NOTIFY" if poll is None else f"polling every {poll} s (trigger dropped)"
        method = f"`python -m tinydj work -q --threads 1`; {mode}"
    elif lib == "batched":
        ctx = multiprocessing.get_context("fork")
        stop = ctx.Event()
        listener = ctx.Process(
            target=pg_jobs.batched_listener, args=(url, stop.is_set), daemon=True
        )
        listener.start()
        import psycopg2

        conn = psycopg2.connect(url)
        conn.autocommit = True
        cur = conn.cursor()

        def stop_listener() -> None:
            stop.set()
            listener.join(30)
            if listener.is_alive():
                listener.kill()
                listener.join()

        cleanup += [stop_listener, conn.close]

        def enqueue(t0: float) -> None:
            pg_jobs.batched_probe(cur, t0, port)

        method = "bare LISTEN loop + BATCHED_STEP in a forked process; bare INSERT here"
    else:
        ctx = multiprocessing.get_context("fork")
        worker = ctx.Process(target=_latency_worker, args=(lib, url), daemon=True)
        worker.start()

        def stop_worker() -> None:
            worker.terminate()
            worker.join(30)
            if worker.is_alive():
                worker.kill()
                worker.join()

        cleanup.append(stop_worker)
        if lib == "pgqueuer":
            loop = asyncio.new_event_loop()
            conn, queries = loop.run_until_complete(pg_jobs.pgqueuer_queries(url))
            cleanup += [loop.close, lambda: loop.run_until_complete(conn.close())]  # reversed

            def enqueue(t0: float) -> None:
                loop.run_until_complete(queries.enqueue("probe", f"{t0!r} {port}".encode()))

            method = "QueueManager.run() in a forked process; Queries.enqueue() here"
        else:
            app = pg_jobs.procrastinate_app(url).open()
            cleanup.append(app.close)
            probe = app.tasks["probe"]

            def enqueue(t0: float) -> None:
                probe.defer(t0=t0, port=port)

            method = "run_worker(concurrency=1) in a forked process; probe.defer() here"

    def sample() -> float:
        enqueue(time.time())
        return float(sock.recv(64).decode())

    try:
        for _ in range(5):  # warm-up: the worker is up, connected, schema made
            sample()
        if poll is not None:
            with pg_jobs.pg(url) as cur:
                cur.execute("DROP TRIGGER IF EXISTS tinydj_notify ON delayed_jobs")
            sample()
        load = load1()
        values = []
        for _ in range(count):
            if poll is None:
                time.sleep(random.uniform(0.002, 0.008))
            else:
                time.sleep(random.uniform(0.0, poll))
            values.append(sample())
    finally:
        for step in reversed(cleanup):
            with contextlib.suppress(Exception):
                step()
        sock.close()
        pg_jobs.reset(url, lib)
        if lib == "tinydj":
            # Any tinydj process re-creates the trigger; do it now for the next run.
            import tinydj

            tinydj.configure(url).store.ensure_schema()
    return {**_latency_stats(values), "lib": lib, "poll": poll, "method": method, "load1": load}


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "install": scn_install,
    "drain": scn_drain,
    "enqueue": scn_enqueue,
    "reserve_fill": scn_reserve_fill,
    "reserve": scn_reserve,
    "latency": scn_latency,
    "flat": scn_flat,
}


def child_main(name: str, params: str) -> int:
    return common.child_main(SCENARIOS, name, params)


# =============================================================================
# The parent: database, plan, children, table.
# =============================================================================


class Runner:
    def __init__(self, url: str, verbose: bool) -> None:
        self.url = url
        self.verbose = verbose
        self.errors: list[str] = []

    def run(self, name: str, params: dict[str, Any], timeout: float = 900) -> dict[str, Any] | None:
        params = {"url": self.url, **params}
        shown = {k: v for k, v in params.items() if k != "url"}
        if params["url"] != self.url:
            shown["db"] = urlparse(params["url"]).path.lstrip("/")
        label = f"{name} {json.dumps(shown)}"

        return run_child(
            __file__,
            name,
            params,
            label=label,
            errors=self.errors,
            verbose=self.verbose,
            timeout=timeout,
            quiet_keys=("method", "plan", "window_rates"),
            error_lines=10,
        )


def admin(server: str, *statements: str) -> None:
    import psycopg2

    conn = psycopg2.connect(server)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def plan_sizes(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    sizes: dict[str, Any] = {
        "reps": 1 if quick else 3,
        # procrastinate drains at a few hundred jobs/s: one run per size keeps
        # the full run under 10 minutes.
        "procrastinate_reps": 1,
        "drain_n": 3_000 if quick else 20_000,
        "enqueue_n": 5_000 if quick else 20_000,
        "enqueue_batch": 1_000,
        "enqueue_reps": 3,
        "workers": [1, 2, 4, 8],
        "reserve_rows": 1_000_000,
        # pgqueuer's reserve figures are context only: skipped by --quick.
        "reserve_libs": ["tinydj", "procrastinate"] if quick else list(QUEUES),
        # cost flat as the table grows (tinydj only)
        "flat_rows": [10_000, 100_000, 1_000_000],
        "flat_jobs": 1_000 if quick else 2_000,
        "flat_reps": 1 if quick else 3,
        "reserve_jobs": 1_000 if quick else 2_000,
        # procrastinate runs about 4 jobs/s next to 1M future rows.
        "reserve_jobs_procrastinate": 20 if quick else 100,
        "reserve_reps": 1 if quick else 3,
        "latency_samples": 100 if quick else 200,
        "polls": [0.05, 1.0],
        "poll_samples": [100 if quick else 200, 10 if quick else 40],
    }
    for key in list(sizes):
        value = getattr(args, key, None)
        if value is not None:
            sizes[key] = value
    return sizes


def median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median_of(results: list[dict[str, Any] | None], key: str) -> float | None:
    values = [r[key] for r in results if r is not None and r.get(key) is not None]
    return statistics.median(values) if values else None


def _reserve_lib(
    runner: Runner, lib: str, sizes: dict[str, Any], urls: dict[str, str]
) -> dict[str, Any]:
    """Reserve+run of one library on the empty and the filled table, alternating."""
    jobs = sizes["reserve_jobs_procrastinate"] if lib == "procrastinate" else sizes["reserve_jobs"]
    reps = 1 if lib == "procrastinate" else sizes["reserve_reps"]
    entry: dict[str, Any] = {"jobs": jobs}
    fills = {
        key: runner.run("reserve_fill", {"lib": lib, "rows": int(key), "url": u})
        for key, u in urls.items()
    }
    # One untimed run first: the first due jobs after a bulk fill split the
    # index pages they land in, and the commits wait behind the write-back of
    # the fill (procrastinate is skipped: it walks the 1M rows anyway).
    cold = {
        key: runner.run("reserve", {"lib": lib, "jobs": jobs, "url": u})
        if lib != "procrastinate" and fills[key]
        else None
        for key, u in urls.items()
    }
    runs: dict[str, list[Any]] = {key: [] for key in urls}
    for rep in range(reps):
        for key, u in urls.items():
            if fills[key]:
                params = {"lib": lib, "jobs": jobs, "plan": rep == 0, "url": u}
                runs[key].append(runner.run("reserve", params))
    for key, u in urls.items():
        ok = [r for r in runs[key] if r]
        if ok:
            entry[key] = {
                "rows": int(key),
                "rate": median_of(ok, "rate"),
                "runs": [r["rate"] for r in ok],
                "cold_rate": cold[key] and cold[key]["rate"],
                "fill_seconds": fills[key] and fills[key]["seconds"],
                "method": ok[0]["method"],
                "plan": ok[0]["plan"],
            }
        if int(key):  # the filled rows are not needed any more
            runner.run("reserve_fill", {"lib": lib, "rows": 0, "url": u})
    return entry


def _flat(runner: Runner, args: argparse.Namespace, sizes: dict[str, Any]) -> dict[str, Any]:
    """tinydj next to 10k, 100k, 1M future rows, in a database of its own."""
    flat_db = f"{args.db_name}_flat"
    flat_url = with_db(args.server, flat_db)
    admin(
        args.server,
        f'DROP DATABASE IF EXISTS "{flat_db}" WITH (FORCE)',
        f'CREATE DATABASE "{flat_db}"',
    )
    out: dict[str, Any] = {}
    try:
        if not runner.run("install", {"libs": ["tinydj"], "url": flat_url}):
            return out
        for rows in sizes["flat_rows"]:
            if not runner.run("reserve_fill", {"lib": "tinydj", "rows": rows, "url": flat_url}):
                continue
            params = {"jobs": sizes["flat_jobs"], "url": flat_url}
            runner.run("flat", params)  # untimed: the first due jobs after a bulk fill
            runs = [runner.run("flat", params) for _ in range(sizes["flat_reps"])]
            ok = [r for r in runs if r]
            if ok:
                out[str(rows)] = {
                    "rows": rows,
                    "rate": median_of(ok, "rate"),
                    "idle_ms": median_of(ok, "idle_ms"),
                    "runs": [r["rate"] for r in ok],
                }
    finally:
        if not args.keep_db:
            with contextlib.suppress(Exception):
                admin(args.server, f'DROP DATABASE IF EXISTS "{flat_db}" WITH (FORCE)')
    return out


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    libs = [x for x in args.libs.split(",") if x]
    groups = [x for x in (args.only or ",".join(GROUPS)).split(",") if x]
    sizes = plan_sizes(args)
    url = with_db(args.server, args.db_name)
    runner = Runner(url, not args.silent)
    out: dict[str, Any] = {"sizes": sizes, "libs": libs, "groups": groups, "results": {}}
    res = out["results"]
    began = time.perf_counter()
    admin(
        args.server,
        f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)',
        f'CREATE DATABASE "{args.db_name}"',
    )
    try:
        if not runner.run("install", {"libs": libs}):
            raise SystemExit("could not install the libraries' schemas; see above")

        if "enqueue" in groups:
            print("enqueue ...", file=sys.stderr)
            # ("own": tinydj's bulk statement in bare psycopg2, on its table)
            enqueuers = [lib for lib in libs if lib in ENQUEUERS]
            enqueuers += ["own"] if "tinydj" in libs else []
            enqueues: dict[str, list[Any]] = {lib: [] for lib in enqueuers}
            for _ in range(sizes["enqueue_reps"]):  # interleaved
                for lib in enqueues:
                    params = {"lib": lib, "n": sizes["enqueue_n"], "batch": sizes["enqueue_batch"]}
                    enqueues[lib].append(runner.run("enqueue", params))
            res["enqueue"] = {
                lib: {"rate": median_of(rs, "rate"), "runs": [r and r["rate"] for r in rs]}
                for lib, rs in enqueues.items()
            }

        if "drain" in groups:
            print("drain ...", file=sys.stderr)
            drains: dict[str, dict[str, list[Any]]] = {
                str(w): {lib: [] for lib in libs} for w in sizes["workers"]
            }
            # Untimed warm-up (a fresh database: catalog caches, WAL segments).
            res["drain_warmup"] = {
                lib: runner.run(
                    "drain", {"lib": lib, "n": min(1_000, sizes["drain_n"]), "workers": 1}
                )
                for lib in libs
            }
            # Interleaved: each round runs every size and library once, so
            # that a slow moment of the machine hits all of them alike.
            for rep in range(sizes["reps"]):
                for w in sizes["workers"]:
                    for lib in libs:
                        if lib == "procrastinate" and rep >= sizes["procrastinate_reps"]:
                            continue
                        params = {"lib": lib, "n": sizes["drain_n"], "workers": w}
                        drains[str(w)][lib].append(runner.run("drain", params))
            res["drain"] = {
                w: {
                    lib: {
                        "rate": median_of(rs, "rate"),
                        "rate_to_exit": median_of(rs, "rate_to_exit"),
                        "shutdown_seconds": median_of(rs, "shutdown_seconds"),
                        "runs": [r and r["rate"] for r in rs],
                        "load1": [r and r["load1"] for r in rs],
                    }
                    for lib, rs in per.items()
                }
                for w, per in drains.items()
            }

        if "reserve" in groups:
            print("reserve ...", file=sys.stderr)
            # The filled table lives in a second database, so that runs on the
            # empty and on the filled table can alternate (a busy moment of
            # the machine then hits both alike).
            filled_db = f"{args.db_name}_filled"
            filled_url = with_db(args.server, filled_db)
            admin(
                args.server,
                f'DROP DATABASE IF EXISTS "{filled_db}" WITH (FORCE)',
                f'CREATE DATABASE "{filled_db}"',
            )
            res["reserve"] = {}
            try:
                if runner.run("install", {"libs": libs, "url": filled_url}):
                    for lib in [x for x in libs if x in sizes["reserve_libs"]]:
                        res["reserve"][lib] = _reserve_lib(
                            runner, lib, sizes, {"0": url, str(sizes["reserve_rows"]): filled_url}
                        )
            finally:
                if not args.keep_db:
                    with contextlib.suppress(Exception):
                        admin(args.server, f'DROP DATABASE IF EXISTS "{filled_db}" WITH (FORCE)')

        if "flat" in groups and "tinydj" in libs:
            print("flat ...", file=sys.stderr)
            res["flat"] = _flat(runner, args, sizes)

        if "latency" in groups:
            print("latency ...", file=sys.stderr)
            lat: dict[str, Any] = {}
            for lib in [x for x in libs if x in QUEUES or x == "batched"]:
                lat[f"{lib} notify"] = runner.run(
                    "latency", {"lib": lib, "samples": sizes["latency_samples"]}
                )
            if "tinydj" in libs:
                for poll, samples in zip(sizes["polls"], sizes["poll_samples"], strict=True):
                    lat[f"tinydj poll {poll}"] = runner.run(
                        "latency", {"lib": "tinydj", "samples": samples, "poll": poll}
                    )
            res["latency"] = lat
    finally:
        if args.keep_db:
            print(f"(kept the databases {args.db_name} and {args.db_name}_filled)", file=sys.stderr)
        else:
            with contextlib.suppress(Exception):
                admin(args.server, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    out["errors"] = runner.errors
    out["elapsed_seconds"] = time.perf_counter() - began
    return out


# -- output -------------------------------------------------------------------------


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}/s"


def render(out: dict[str, Any]) -> str:
    res, s, libs = out["results"], out["sizes"], out["libs"]
    head = ("measure", *LIBS, "tinydj/pgqueuer", "tinydj/procrastinate", "tinydj/batched")
    rows: list[tuple[str, ...]] = []

    def row(label: str, values: dict[str, float | None], fmt: Callable[[float | None], str],
            ratios: bool = True) -> None:  # fmt: skip
        t = values.get("tinydj")
        rows.append(
            (
                label,
                *(fmt(values.get(lib)) if lib in libs else "" for lib in LIBS),
                _ratio(t, values.get("pgqueuer")) if ratios else "",
                _ratio(t, values.get("procrastinate")) if ratios else "",
                _ratio(t, values.get("batched")) if ratios else "",
            )
        )

    enqueue = res.get("enqueue") or {}
    if enqueue:
        label = f"bulk enqueue {s['enqueue_n']:,}, {s['enqueue_batch']:,} per call"
        row(label, {lib: _get(enqueue, lib, "rate") for lib in LIBS}, _rate)
        own, t = _get(enqueue, "own", "rate"), _get(enqueue, "tinydj", "rate")
        if own:
            label = f"  its statement in bare psycopg2 (tinydj: {_ratio(t, own)} of it)"
            row(label, {"tinydj": own, "batched": _get(enqueue, "batched", "rate")}, _rate)
    drain = res.get("drain") or {}
    for w, per in drain.items():
        label = f"drain {s['drain_n']:,}, {w} worker process{'es' if w != '1' else ''}"
        row(label, {lib: _get(per, lib, "rate") for lib in LIBS}, _rate)
    if drain:
        shutdown = {
            lib: median_or_none([_get(per, lib, "shutdown_seconds") for per in drain.values()])
            for lib in LIBS
        }
        row(
            "  then until the last worker exited (median)",
            shutdown,
            lambda v: "—" if v is None else f"{v * 1000:.0f} ms",
            ratios=False,
        )
    reserve = res.get("reserve") or {}
    if reserve:
        big = str(s["reserve_rows"])
        for rows_key, label in (("0", "empty table"), (big, f"{int(big):,} future rows")):
            values = {lib: _get(reserve, lib, rows_key, "rate") for lib in LIBS}
            row(f"reserve+run due jobs, 1 worker, {label}", values, _rate)
        keep = {
            lib: (
                _get(reserve, lib, big, "rate") / _get(reserve, lib, "0", "rate")
                if _get(reserve, lib, big, "rate") and _get(reserve, lib, "0", "rate")
                else None
            )
            for lib in LIBS
        }
        row(
            "  rate at 1M future rows / empty table",
            keep,
            lambda v: "—" if v is None else f"{v:.2f}",
            ratios=False,
        )
    flat = res.get("flat") or {}
    base = next(iter(flat.values()), None)
    for key, r in flat.items():
        pad = [""] * (len(head) - 3)
        rows.append(
            (f"cost flat: reserve+run {s['flat_jobs']:,} due + {int(key):,} future",
             _rate(r["rate"]), *pad, f"{base['rate'] / r['rate']:.2f}x of first")
        )  # fmt: skip
        rows.append(
            (f"cost flat: idle poll, {int(key):,} future", f"{r['idle_ms']:.2f} ms", *pad,
             f"{r['idle_ms'] / base['idle_ms']:.2f}x of first")
        )  # fmt: skip
    lat = res.get("latency") or {}

    def ms(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f} ms"

    if any(k.endswith(" notify") for k in lat):
        for q in ("p50", "p99"):
            values = {lib: _get(lat, f"{lib} notify", f"{q}_ms") for lib in LIBS}
            row(f"pickup latency {q}, LISTEN/NOTIFY (defaults)", values, ms)
    for data in lat.values():
        if not data or data.get("poll") is None:
            continue
        for q in ("p50", "p99"):
            label = f"pickup latency {q}, tinydj polling every {data['poll']} s, no NOTIFY"
            rows.append((label, ms(data[f"{q}_ms"]), *[""] * (len(head) - 2)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)
        ).rstrip()
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "rates: jobs/s, higher is better; latency: lower is better (a latency ratio below 1x "
        "favours tinydj)."
    )
    if drain:
        lines.append(
            "drain: from the barrier of the forked workers until the table holds no unfinished "
            "job;\n  the row below it: how much longer until the last worker had returned."
        )
    if reserve:
        jobs = ", ".join(
            f"{lib} {_get(reserve, lib, 'jobs'):,}" for lib in LIBS if _get(reserve, lib, "jobs")
        )
        lines.append(f"reserve+run: due jobs run by one worker ({jobs}), after VACUUM ANALYZE.")
    return "\n".join(lines)


def expectations(out: dict[str, Any]) -> list[str]:
    """Issue 3's expectations, on this run's medians."""
    res = out["results"]
    lines = []
    drain = res.get("drain") or {}
    for w, ref in ISSUE_PGQUEUER.items():
        t = _get(drain, str(w), "tinydj", "rate")
        q = _get(drain, str(w), "pgqueuer", "rate")
        if t is None:
            continue
        ok = t >= ref
        lines.append(
            f"  [{' MET ' if ok else 'MISS '}] drain with {w} worker(s) >= {ref:,}/s "
            f"(pgqueuer in issue 3): tinydj {t:,.0f}/s"
        )
        if q is not None:
            ok = t >= q
            lines.append(
                f"  [{' MET ' if ok else 'MISS '}] drain with {w} worker(s) >= pgqueuer in this "
                f"run: {t:,.0f} vs {q:,.0f}/s ({t / q:.2f}x)"
            )
    reserve = res.get("reserve") or {}
    big = str(out["sizes"]["reserve_rows"])
    lo, hi = _get(reserve, "tinydj", "0", "rate"), _get(reserve, "tinydj", big, "rate")
    if lo and hi:
        ok = hi >= lo / 1.3
        lines.append(
            f"  [{' MET ' if ok else 'MISS '}] reserve at {int(big):,} future rows costs about "
            f"what it costs on an empty table (<= 1.3x): {lo / hi:.2f}x the cost"
        )
    notify = _get(res, "latency", "tinydj notify", "p50_ms")
    if notify is not None:
        ok = notify < 10
        lines.append(
            f"  [{' MET ' if ok else 'MISS '}] pickup within a few ms with NOTIFY (p50 < 10 ms): "
            f"{notify:.2f} ms"
        )
    bare = _get(res, "latency", "batched notify", "p50_ms")
    if notify is not None and bare is not None:
        ok = notify <= bare + 0.5
        lines.append(
            f"  [{' MET ' if ok else 'MISS '}] issue 14: pickup with NOTIFY within 0.5 ms of a "
            f"bare LISTEN loop (p50): {notify:.2f} vs {bare:.2f} ms ({notify - bare:+.2f} ms)"
        )
    for w in ("1", "4"):
        t = _get(drain, w, "tinydj", "rate")
        b = _get(drain, w, "batched", "rate")
        if t and b:
            ok = t >= 0.4 * b
            lines.append(
                f"  [{' MET ' if ok else 'MISS '}] issue 14: drain with {w} worker(s) >= 40% of "
                f"the batched floor: {t / b:.0%} ({t:,.0f} vs {b:,.0f}/s)"
            )
    t, b = _get(res, "enqueue", "tinydj", "rate"), _get(res, "enqueue", "batched", "rate")
    if t and b:
        ok = t >= 0.8 * b
        lines.append(
            f"  [{' MET ' if ok else 'MISS '}] issue 14: bulk enqueue >= 80% of a bare multi-row "
            f"INSERT: {t / b:.0%} ({t:,.0f} vs {b:,.0f}/s)"
        )
    flat = [v for v in (res.get("flat") or {}).values() if v]
    if len(flat) > 1:
        lo, hi = flat[0], flat[-1]
        for what, slower in (
            ("reserve+run rate", lo["rate"] / hi["rate"]),
            ("idle poll cost", hi["idle_ms"] / lo["idle_ms"]),
        ):
            ok = slower <= 1.3
            lines.append(
                f"  [{' MET ' if ok else 'MISS '}] issue 14: {what} at {hi['rows']:,} future rows "
                f"within 1.3x of {lo['rows']:,}: {slower:.2f}x"
            )
    return ["expectations (issues 3 and 14):", *lines] if lines else []


def plan_summary(out: dict[str, Any]) -> list[str]:
    """The access path of each library's reserve statement at 1M future rows."""
    reserve = _get(out, "results", "reserve") or {}
    big = str(out["sizes"]["reserve_rows"])
    lines = []
    for lib, entry in reserve.items():
        plan = _get(entry, big, "plan") or []
        scans = [ln.strip() for ln in plan if "Scan" in ln or "Sort" in ln]
        timing = [ln.strip() for ln in plan if ln.strip().startswith("Execution Time")]
        if scans:
            lines.append(f"  {lib}: {' | '.join(scans[:3])} {' '.join(timing)}")
    return ["reserve plans at 1M future rows (EXPLAIN ANALYZE; full plans in the JSON):", *lines] \
        if lines else []  # fmt: skip


def environment(server: str) -> dict[str, Any]:
    import peewee
    import psycopg2

    import tinydj

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tinydj": tinydj.__version__,
        "peewee": peewee.__version__,
        "psycopg2": psycopg2.__version__.split()[0],
    }
    for name in ("pgqueuer", "procrastinate", "asyncpg", "psycopg"):
        try:
            from importlib.metadata import version

            info[name] = version(name)
        except Exception:
            info[name] = None
    with contextlib.suppress(Exception):
        conn = psycopg2.connect(server)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            info["postgres"] = cur.fetchone()[0]
            for setting in ("shared_buffers", "synchronous_commit", "fsync"):
                cur.execute(f"SHOW {setting}")
                info[setting] = cur.fetchone()[0]
        conn.close()
    with contextlib.suppress(Exception):
        info["git"] = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 1-2 minutes")
    parser.add_argument("--json", metavar="PATH", help="write results as JSON (- for stdout); "
                        "default benchmarks/results/postgres-latest.json")  # fmt: skip
    parser.add_argument("--libs", default=",".join(LIBS), help="comma list (default: all four)")
    parser.add_argument("--only", metavar="GROUPS", help=f"comma list of {','.join(GROUPS)}")
    parser.add_argument("--server", default=os.environ.get("TINYDJ_BENCH_PG_URL", DEFAULT_SERVER),
                        help="URL of a database to run CREATE/DROP DATABASE from "
                        f"(default $TINYDJ_BENCH_PG_URL or {DEFAULT_SERVER})")  # fmt: skip
    parser.add_argument("--db-name", default="tinydj_bench",
                        help="benchmark database, created and dropped (tinydj_bench)")  # fmt: skip
    parser.add_argument(
        "--keep-db", action="store_true", help="do not drop the database at the end"
    )
    parser.add_argument("--reps", type=int, help="repetitions of each drain (3; quick 1)")
    parser.add_argument("--drain-n", type=int, help="backlog drained (20,000; quick 3,000)")
    parser.add_argument("--enqueue-n", type=int, help="jobs bulk-enqueued (20,000; quick 5,000)")
    parser.add_argument("--enqueue-reps", type=int, help="repetitions of each enqueue run (3)")
    parser.add_argument(
        "--workers",
        type=lambda t: [int(x) for x in t.split(",")],
        help="worker process counts, comma list (1,2,4,8)",
    )
    parser.add_argument("--reserve-rows", type=int, help="future rows (1,000,000)")
    parser.add_argument(
        "--flat-rows",
        type=lambda t: [int(x) for x in t.split(",")],
        help="future rows of the cost-flat group, comma list (10000,100000,1000000)",
    )
    parser.add_argument(
        "--flat-jobs", type=int, help="due jobs per cost-flat run (2,000; quick 1,000)"
    )
    parser.add_argument("--flat-reps", type=int, help="repetitions per cost-flat size (3; quick 1)")
    parser.add_argument(
        "--reserve-libs",
        type=lambda t: [x for x in t.split(",") if x],
        help="libraries in the reserve group (all; quick tinydj,procrastinate)",
    )
    parser.add_argument("--reserve-jobs", type=int, help="due jobs run (2,000; quick 1,000)")
    parser.add_argument("--reserve-jobs-procrastinate", type=int,
                        help="due jobs run by procrastinate (100; quick 20)")  # fmt: skip
    parser.add_argument("--reserve-reps", type=int, help="repetitions of each reserve (3; quick 1)")
    parser.add_argument("--procrastinate-reps", type=int,
                        help="repetitions of each procrastinate drain (1)")  # fmt: skip
    parser.add_argument(
        "--latency-samples", type=int, help="NOTIFY latency samples (200; quick 100)"
    )
    parser.add_argument(
        "--polls",
        type=lambda t: [float(x) for x in t.split(",")],
        help="poll intervals of the polling-only latency runs, comma list (0.05,1.0)",
    )
    parser.add_argument(
        "--poll-samples",
        type=lambda t: [int(x) for x in t.split(",")],
        help="samples per poll interval, comma list (200,40; quick 100,10)",
    )
    parser.add_argument("--silent", action="store_true", help="no per-run progress on stderr")
    args = parser.parse_args(argv)
    unknown = set(args.libs.split(",")) - set(LIBS)
    if unknown:
        parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    for lib in args.libs.split(","):
        module = {"tinydj": "psycopg2", "pgqueuer": "asyncpg", "procrastinate": "psycopg",
                  "batched": "psycopg2"}[lib]  # fmt: skip
        try:
            __import__(lib if lib != "batched" else "psycopg2")
            __import__(module)
        except ImportError as exc:
            parser.error(f"{exc}: pip install pgqueuer procrastinate asyncpg 'psycopg[binary]' "
                         "(or leave the library out with --libs)")  # fmt: skip

    load_before = load1()
    print(f"1-minute load average at start: {load_before:.2f} ({os.cpu_count()} CPUs)")
    if load_before > 1.0:
        print(f"warning: the machine is busy (load average {load_before:.2f} > 1.0): "
              "other processes compete with the benchmark.")  # fmt: skip
    out: dict[str, Any] = {"environment": environment(args.server)}
    out.update(run_all(args))
    out["environment"]["loadavg_1min"] = {"start": load_before, "end": load1()}
    table = render(out)
    out["table"] = table
    env = out["environment"]
    print()
    print(
        f"tinydj on PostgreSQL ({'quick' if args.quick else 'full'}; medians of "
        f"{out['sizes']['reps']} drain run(s); {env['cpus']} CPUs, "
        f"PostgreSQL {env.get('postgres')}, "
        f"pgqueuer {env.get('pgqueuer')}, procrastinate {env.get('procrastinate')}, "
        f"Python {env['python']})"
    )
    print(table)
    end = env["loadavg_1min"]["end"]
    print(f"1-minute load average: {load_before:.2f} at start, {end:.2f} at end "
          "(the end figure includes the benchmark's own processes)")  # fmt: skip
    if load_before > 1.0:
        print(f"warning: the machine was busy when this run started (load average "
              f"{load_before:.2f} > 1.0); figures may be low and noisy.")  # fmt: skip
    for block in (expectations(out), plan_summary(out)):
        if block:
            print()
            print("\n".join(block))
    if out["errors"]:
        print(f"\n{len(out['errors'])} measurement(s) failed; see stderr above")
    print(f"\n(total {out['elapsed_seconds']:.0f} s)")
    dest = args.json or os.path.join(HERE, "results", "postgres-latest.json")
    text = json.dumps(out, indent=2)
    if dest == "-":
        print(text)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        with open(dest, "w") as fh:
            fh.write(text + "\n")
        print(f"JSON: {dest}")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
