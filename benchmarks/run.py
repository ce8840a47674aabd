#!/usr/bin/env python
"""tinydj benchmarks: tinydj vs huey (SqliteHuey) vs two raw-sqlite floors, in one run.

    python benchmarks/run.py            # full run (about 5-10 minutes)
    python benchmarks/run.py --quick    # about a minute, smaller sizes
    python benchmarks/run.py --json results.json --only drain,latency

Every measurement runs in a fresh Python process on a fresh SQLite file (in a
temporary directory on the same disk as the system's temp dir), and the results
are medians over ``--reps`` repetitions, interleaved between the libraries so
that drift of the machine hits all of them alike. See benchmarks/README.md for
what each figure means and how it is measured.

Benchmarks are not tests: nothing here asserts; the targets of issue 14 are
reported as met or missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import common  # noqa: E402
from common import child_env, run_child  # noqa: E402

#: floor: one job per statement (two commits per job); batched: issue 14's
#: batched floor (one transaction per 128 jobs).
LIBS = ("tinydj", "huey", "floor", "batched")
GROUPS = ("enqueue", "drain", "latency", "reserve", "memory")
#: Polling tick (seconds) given to huey's consumer in the latency benchmarks:
#: the same 5 ms as tinydj's PRAGMA data_version watch when it has no wake
#: channel (with one, tinydj is woken by a datagram and watches every 100 ms).
HUEY_POLL = 0.005


def sqlite_url(path: str) -> str:
    return "sqlite:///" + path  # path is absolute: sqlite:////tmp/...


def maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(who).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def count_rows(path: str, table: str) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


# =============================================================================
# Scenarios. Each runs in a fresh child process (``run.py --child NAME``) and
# returns a JSON-able dict.
# =============================================================================


def _tinydj(path: str) -> Any:
    import tinydj

    config = tinydj.configure(sqlite_url(path))
    tinydj.create_tables()
    return config


def _tinydj_backlog(path: str, n: int, batch: int = 1000) -> None:
    import bench_jobs

    config = _tinydj(path)
    for k in range(0, n, batch):
        bench_jobs.noop.send_later_many([(i,) for i in range(k, min(n, k + batch))])
    config.store.close()


def _huey_backlog(huey: Any, tasks: Any, n: int, batch: int = 1000) -> None:
    """Rows exactly as ``huey.enqueue`` writes them, inserted in batches (setup only)."""
    storage = huey.storage
    for k in range(0, n, batch):
        rows = [
            (storage.name, storage.to_blob(huey.serialize_task(tasks.noop.s(i))), 0)
            for i in range(k, min(n, k + batch))
        ]
        with storage.db(commit=True) as cursor:
            cursor.executemany("insert into task (queue, data, priority) values (?, ?, ?)", rows)


def _batched_backlog(path: str, n: int, batch: int = 1000) -> None:
    import bench_jobs

    conn = bench_jobs.batched_connect(path)
    for k in range(0, n, batch):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            bench_jobs.BATCHED_INSERT,
            [(now, bench_jobs.batched_payload(i)) for i in range(k, min(n, k + batch))],
        )
        conn.execute("COMMIT")
    conn.close()


def _floor_backlog(path: str, n: int, batch: int = 1000) -> None:
    import bench_jobs

    conn = bench_jobs.floor_connect(path)
    for k in range(0, n, batch):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            bench_jobs.FLOOR_INSERT,
            [(now, bench_jobs.floor_payload(i)) for i in range(k, min(n, k + batch))],
        )
        conn.execute("COMMIT")
    conn.close()


# -- enqueue -----------------------------------------------------------------


def scn_enqueue_single(p: dict[str, Any]) -> dict[str, Any]:
    """``n`` enqueues, each its own transaction."""
    import bench_jobs

    lib, path, n = p["lib"], p["path"], p["n"]
    warm = 50
    if lib == "tinydj":
        _tinydj(path)
        send = bench_jobs.noop.send_later
    elif lib == "huey":
        _, tasks = bench_jobs.make_huey(path)
        send = tasks.noop
    elif lib == "own":
        own = bench_jobs.own_connect(path)

        def send(i: int) -> None:
            bench_jobs.own_insert_one(own, i)

    else:
        conn = bench_jobs.floor_connect(path)

        def send(i: int) -> None:
            conn.execute(bench_jobs.FLOOR_INSERT, (time.time(), bench_jobs.floor_payload(i)))

    for i in range(warm):
        send(i)
    started = time.perf_counter()
    for i in range(n):
        send(i)
    took = time.perf_counter() - started
    return {"n": n, "seconds": took, "rate": n / took}


def scn_enqueue_bulk(p: dict[str, Any]) -> dict[str, Any]:
    """``n`` jobs in batches of ``batch``, one transaction per batch.

    huey has no bulk enqueue; its fastest public path is a loop of enqueues.
    """
    import bench_jobs

    lib, path, n, batch = p["lib"], p["path"], p["n"], p["batch"]
    if lib == "tinydj":
        _tinydj(path)
        bench_jobs.noop.send_later_many([(-1,)])  # warm-up
        started = time.perf_counter()
        for k in range(0, n, batch):
            bench_jobs.noop.send_later_many([(i,) for i in range(k, min(n, k + batch))])
        method = f"noop.send_later_many(batch of {batch} arg tuples)"
    elif lib == "huey":
        _, tasks = bench_jobs.make_huey(path)
        tasks.noop(-1)
        started = time.perf_counter()
        for i in range(n):
            tasks.noop(i)
        method = "loop of noop(i) (huey has no bulk enqueue), one transaction each"
    elif lib == "own":
        own = bench_jobs.own_connect(path)
        started = time.perf_counter()
        for k in range(0, n, batch):
            bench_jobs.own_insert_bulk(own, k, min(batch, n - k))
        method = f"tinydj's insert_batch statements in bare sqlite3, batches of {batch}"
    else:
        conn = bench_jobs.floor_connect(path)
        started = time.perf_counter()
        for k in range(0, n, batch):
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                bench_jobs.FLOOR_INSERT,
                [(now, bench_jobs.floor_payload(i)) for i in range(k, min(n, k + batch))],
            )
            conn.execute("COMMIT")
        method = f"executemany, batches of {batch}, one transaction each"
    took = time.perf_counter() - started
    return {"n": n, "seconds": took, "rate": n / took, "method": method}


# -- drain -------------------------------------------------------------------


def _fork_and_time(target: Callable[[Any], None], procs: int) -> float:
    """Fork ``procs`` children running ``target(barrier)``; each calls
    ``barrier.wait()`` when set up. Time from the barrier to the last exit."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(procs + 1)
    children = [ctx.Process(target=target, args=(barrier,)) for _ in range(procs)]
    for child in children:
        child.start()
    barrier.wait(timeout=60)
    started = time.perf_counter()
    for child in children:
        child.join()
    took = time.perf_counter() - started
    bad = [c.exitcode for c in children if c.exitcode != 0]
    if bad:
        raise RuntimeError(f"worker process(es) failed with exit codes {bad}")
    return took


def _drain_tinydj(path: str, mode: str, batch_size: int | None = None) -> tuple[float, str]:
    import tinydj

    if mode in ("t1", "t4"):
        config = tinydj.configure(sqlite_url(path))
        extra: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
        worker = tinydj.Worker(threads=1 if mode == "t1" else 4, config=config, **extra)
        worker._prepare()  # table check and @every rows (none here), outside the timing
        started = time.perf_counter()
        worker.start(exit_on_complete=True)
        worker.join()
        took = time.perf_counter() - started
        worker.stop()
        options = "".join(f", {k}={v}" for k, v in extra.items())
        return (
            took,
            f"Worker(threads={worker.threads}{options}).start(exit_on_complete=True); join()",
        )
    if mode == "p2":

        def child(barrier: Any) -> None:
            config = tinydj.configure(sqlite_url(path))
            worker = tinydj.Worker(threads=1, config=config)
            worker._prepare()
            barrier.wait(timeout=60)
            worker.start(exit_on_complete=True)
            worker.join()
            worker.stop()

        return _fork_and_time(child, 2), (
            "2 forked processes, each Worker(threads=1).start(exit_on_complete=True)"
        )
    if mode == "p2cli":
        cmd = [
            sys.executable, "-m", "tinydj", "work", "-q", "--exit-on-complete",
            "--threads", "1", "--database", sqlite_url(path),
        ]  # fmt: skip
        started = time.perf_counter()
        children = [subprocess.Popen(cmd, env=child_env()) for _ in range(2)]
        codes = [c.wait(timeout=600) for c in children]
        took = time.perf_counter() - started
        if any(codes):
            raise RuntimeError(f"tinydj work exited with {codes}")
        return took, "2 x `python -m tinydj work -q --exit-on-complete --threads 1` (spawn to exit)"
    raise ValueError(mode)


def _wait_empty(path: str, table: str) -> None:
    """Poll (2 ms) until ``table`` has no row, from a connection of its own."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        while conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            time.sleep(0.002)
    finally:
        conn.close()


def _drain_huey(path: str, mode: str) -> tuple[float, str]:
    import bench_jobs

    huey, _ = bench_jobs.make_huey(path)
    if mode == "t1":
        started = time.perf_counter()
        while True:
            task = huey.dequeue()
            if task is None:
                break
            huey.execute(task)
        return time.perf_counter() - started, "loop of huey.execute(huey.dequeue()) in one thread"
    from huey.consumer import Consumer

    workers, kind = (4, "thread") if mode == "t4" else (2, "process")
    consumer = Consumer(
        huey, workers=workers, worker_type=kind, periodic=False, check_worker_health=False
    )
    started = time.perf_counter()
    consumer.start()
    _wait_empty(path, "task")
    # The queue is empty; stop the workers (each finishes the task it holds).
    consumer.stop_flag.set()
    for _, proc in consumer.worker_threads:
        proc.join()
    took = time.perf_counter() - started
    consumer.scheduler.join()
    return took, (
        f"Consumer(workers={workers}, worker_type={kind!r}); timed until the task table is "
        "empty (2 ms poll) and the workers have exited"
    )


def _drain_floor(path: str, mode: str, batched: bool = False) -> tuple[float, str]:
    """Either floor: ``floor_drain`` (a statement per step) or ``batched_drain``."""
    import bench_jobs

    drain = bench_jobs.batched_drain if batched else bench_jobs.floor_drain
    if mode == "t1":
        started = time.perf_counter()
        drain(path, "w1")
        what = (
            "BEGIN IMMEDIATE; DELETE last batch; UPDATE ... LIMIT 128 RETURNING; COMMIT"
            if batched
            else "lock+delete loop"
        )
        return time.perf_counter() - started, f"one connection, {what}"
    if mode == "t4":
        threads = [threading.Thread(target=drain, args=(path, f"w{i}")) for i in range(4)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started, "4 threads, a connection each"

    def child(barrier: Any) -> None:
        barrier.wait(timeout=60)
        drain(path, f"p{os.getpid()}")

    return _fork_and_time(child, 2), "2 forked processes, a connection each"


def scn_drain(p: dict[str, Any]) -> dict[str, Any]:
    """Set up a backlog of ``n`` no-op jobs (untimed), then time draining it."""
    import bench_jobs

    lib, path, n, mode = p["lib"], p["path"], p["n"], p["mode"]
    if lib == "tinydj":
        _tinydj_backlog(path, n)
        took, method = _drain_tinydj(path, mode, p.get("batch_size"))
        left = count_rows(path, "delayed_jobs")
    elif lib == "huey":
        huey, tasks = bench_jobs.make_huey(path)
        _huey_backlog(huey, tasks, n)
        huey.storage.close()
        took, method = _drain_huey(path, mode)
        left = count_rows(path, "task")
    elif lib == "batched":
        _batched_backlog(path, n)
        took, method = _drain_floor(path, mode, batched=True)
        left = count_rows(path, "bjobs")
    else:
        _floor_backlog(path, n)
        took, method = _drain_floor(path, mode)
        left = count_rows(path, "jobs")
    if left:
        raise RuntimeError(f"{left} of {n} jobs were left in the table")
    return {
        "n": n,
        "seconds": took,
        "rate": n / took,
        "method": method,
        "maxrss_mb": maxrss_mb(),
    }


# -- pickup latency ------------------------------------------------------------


def _samples(count: int, enqueue: Callable[[], None], receive: Callable[[], float]) -> list[float]:
    """Enqueue one probe at a time into an idle worker; collect its latency.

    Between probes the benchmark sleeps 2-8 ms (random), so that the worker
    is idle (in its wait) when the next probe arrives.
    """
    for _ in range(5):  # warm-up: imports, first connections, caches
        enqueue()
        receive()
    out = []
    for _ in range(count):
        time.sleep(random.uniform(0.002, 0.008))
        enqueue()
        out.append(receive())
    return out


def _latency_stats(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    return {
        "samples": len(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def scn_latency_local(p: dict[str, Any]) -> dict[str, Any]:
    """Worker threads in this process; latency = job start - moment before enqueue."""
    import bench_jobs

    lib, path, count = p["lib"], p["path"], p["samples"]

    def receive() -> float:
        return bench_jobs.LOCAL.get(timeout=30)

    if lib == "tinydj":
        import tinydj

        config = _tinydj(path)
        worker = tinydj.Worker(threads=1, config=config).start()
        try:
            values = _samples(
                count,
                lambda: bench_jobs.probe_local.send_later(time.perf_counter()),
                receive,
            )
        finally:
            worker.stop()
        method = "Worker(threads=1).start() in the benchmark process; probe.send_later()"
    else:
        from huey.consumer import Consumer

        huey, tasks = bench_jobs.make_huey(path)
        consumer = Consumer(
            huey,
            workers=1,
            worker_type="thread",
            periodic=False,
            initial_delay=HUEY_POLL,
            max_delay=HUEY_POLL,
            check_worker_health=False,
        )
        consumer.start()
        try:
            values = _samples(count, lambda: tasks.probe_local(time.perf_counter()), receive)
        finally:
            consumer.stop_flag.set()
            for _, proc in consumer.worker_threads:
                proc.join()
            consumer.scheduler.join()
        method = f"Consumer(workers=1, thread, initial_delay=max_delay={HUEY_POLL}) in-process"
    return {**_latency_stats(values), "method": method}


def _stop_process(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, seconds) of process ``pid`` so far; None
    where /proc is missing. Per-thread scheduler statistics (nanoseconds) if
    the kernel keeps them, else /proc/PID/stat (clock ticks)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total, ok = 0, True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            ok = False
            break
    if ok:
        return total / 1e9
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_cpu(pid: int, seconds: float) -> float | None:
    """Share of one core (percent) process ``pid`` uses while idle for ``seconds``."""
    time.sleep(0.5)  # the last probe's job has finished
    before, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    after, t1 = _cpu_seconds(pid), time.monotonic()
    if before is None or after is None:
        return None
    return (after - before) / (t1 - t0) * 100


def scn_latency_remote(p: dict[str, Any]) -> dict[str, Any]:
    """A worker in another process; the job sends its start time back over UDP.
    Then the idle worker's CPU share over ``idle_seconds``."""
    import bench_jobs

    lib, path, count = p["lib"], p["path"], p["samples"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(60)
    port = sock.getsockname()[1]

    def receive() -> float:
        return float(sock.recv(64).decode())

    if lib == "tinydj":
        config = _tinydj(path)
        cmd = [
            sys.executable, "-m", "tinydj", "work", "-q", "--threads", "1",
            "--database", sqlite_url(path),
        ]  # fmt: skip
        stop_signal = signal.SIGTERM

        def enqueue() -> None:
            bench_jobs.probe_udp.send_later(time.time(), port)

        method = "`python -m tinydj work -q --threads 1` (default poll interval 1 s)"
    else:
        _, tasks = bench_jobs.make_huey(path)
        code = "import sys, bench_jobs; bench_jobs.huey_consumer_main(sys.argv[1], 1, 'thread', %r)"
        cmd = [sys.executable, "-c", code % HUEY_POLL, path]
        stop_signal = signal.SIGINT  # huey's graceful stop

        def enqueue() -> None:
            tasks.probe_udp(time.time(), port)

        method = f"huey Consumer(workers=1, thread, initial_delay=max_delay={HUEY_POLL}) process"
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL)
    try:
        values = _samples(count, enqueue, receive)
        idle_cpu = _idle_cpu(proc.pid, p.get("idle_seconds", 5.0))
    finally:
        _stop_process(proc, stop_signal)
        sock.close()
        if lib == "tinydj":
            config.store.close()
    return {**_latency_stats(values), "idle_cpu_pct": idle_cpu, "method": method}


# -- reserve cost with many rows that are not due ------------------------------

_FILLER = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT {rows})
INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, created_at, updated_at)
SELECT {priority}, 0,
       'tinydj: 1' || char(10) || 'function: bench_jobs:noop' || char(10)
           || 'args: [' || x || ']' || char(10),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day', '+' || x || ' seconds') || '000',
       'default', '2024-01-01 00:00:00.000000', '2024-01-01 00:00:00.000000'
FROM n
"""


def _query_plans(config: Any, action: Callable[[], Any]) -> list[dict[str, Any]]:
    """EXPLAIN QUERY PLAN of the SELECT/UPDATE statements ``action`` runs."""
    statements: list[str] = []
    conn = config.database.connection()
    conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    plans = []
    for sql in statements:
        head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if head not in ("SELECT", "UPDATE", "DELETE", "WITH") or "delayed_jobs" not in sql:
            continue
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        plans.append({"sql": sql, "plan": [row[-1] for row in rows]})
    return plans


def scn_reserve_fill(p: dict[str, Any]) -> dict[str, Any]:
    """A tinydj table with ``filler`` rows that are not due (from tomorrow on, 1 s apart)."""
    path, filler, mixed = p["path"], p["filler"], p.get("mixed_priorities", False)
    config = _tinydj(path)
    config.store.close()
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN")
    conn.execute(_FILLER.format(rows=filler, priority="(x % 21) - 10" if mixed else "0"))
    conn.execute("COMMIT")
    conn.close()
    return {"filler": filler, "mixed_priorities": mixed, "seconds": time.perf_counter() - started}


def _without_statistics(path: str) -> None:
    """This process as without tinydj's SQLite planner statistics (the "before")."""
    import tinydj.schema

    if hasattr(tinydj.schema, "write_planner_statistics"):
        tinydj.schema.write_planner_statistics = lambda conn: False  # type: ignore[assignment]
    conn = sqlite3.connect(path, isolation_level=None)
    with contextlib.suppress(sqlite3.OperationalError):  # no sqlite_stat1 at all
        conn.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'delayed_jobs'")
    conn.close()


def scn_reserve(p: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` due jobs into a filled table, drain them with one worker
    thread (``start(exit_on_complete=True)``: its last reserve finds nothing, as
    every idle poll does), then time ``idle`` reserves that find nothing."""
    import bench_jobs

    import tinydj

    path, jobs = p["path"], p["jobs"]
    if not p.get("stats", True):
        _without_statistics(path)
    config = tinydj.configure(sqlite_url(path))
    filler = count_rows(path, "delayed_jobs")
    warm = tinydj.Worker(threads=1, config=config)
    bench_jobs.noop.send_later_many([(i,) for i in range(50)])
    warm.work_off(50)  # warm-up: imports, connection, the index pages
    for k in range(0, jobs, 1000):
        bench_jobs.noop.send_later_many([(i,) for i in range(k, min(jobs, k + 1000))])
    worker = tinydj.Worker(threads=1, config=config)
    worker._prepare()
    started = time.perf_counter()
    worker.start(exit_on_complete=True)
    worker.join()
    took = time.perf_counter() - started
    worker.stop()
    idle = bench_jobs.idle_reserves(config.store, p.get("idle", 20))
    plan = None
    if p.get("plan"):
        # How SQLite runs the statements of one reserve (diagnostic): the SQL
        # is captured as executed, so this follows whatever store.py does.
        bench_jobs.noop.send_later(-1)
        plan = _query_plans(config, lambda: warm.work_off(1))
    left = count_rows(path, "delayed_jobs")
    if left != filler:
        raise RuntimeError(f"{left - filler} due jobs were left")
    return {
        "filler": filler,
        "jobs": jobs,
        "stats": p.get("stats", True),
        "rate": jobs / took,
        "us_per_job": took / jobs * 1e6,
        "idle_ms": statistics.median(idle) * 1000,
        "plan": plan,
    }


# -- memory ----------------------------------------------------------------------


def scn_backlog(p: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    _tinydj_backlog(p["path"], p["n"])
    return {"n": p["n"], "seconds": time.perf_counter() - started}


def scn_memory(p: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of a process that drains an existing backlog with Worker(threads=1)."""
    import tinydj

    path = p["path"]
    config = tinydj.configure(sqlite_url(path))
    n = count_rows(path, "delayed_jobs")
    worker = tinydj.Worker(threads=1, config=config)
    worker._prepare()
    before = maxrss_mb()
    started = time.perf_counter()
    worker.start(exit_on_complete=True)
    worker.join()
    took = time.perf_counter() - started
    worker.stop()
    left = count_rows(path, "delayed_jobs")
    if left:
        raise RuntimeError(f"{left} of {n} jobs were left")
    return {
        "n": n,
        "seconds": took,
        "rate": n / took,
        "maxrss_before_mb": before,
        "maxrss_mb": maxrss_mb(),
    }


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "enqueue_single": scn_enqueue_single,
    "enqueue_bulk": scn_enqueue_bulk,
    "drain": scn_drain,
    "latency_local": scn_latency_local,
    "latency_remote": scn_latency_remote,
    "reserve_fill": scn_reserve_fill,
    "reserve": scn_reserve,
    "backlog": scn_backlog,
    "memory": scn_memory,
}


def child_main(name: str, params: str) -> int:
    return common.child_main(SCENARIOS, name, params)


# =============================================================================
# The parent: plan, run the children, tabulate.
# =============================================================================


class Runner:
    def __init__(self, tmpdir: str, verbose: bool) -> None:
        self.tmpdir = tmpdir
        self.verbose = verbose
        self.counter = 0
        self.errors: list[str] = []

    def path(self, label: str) -> str:
        self.counter += 1
        return os.path.join(self.tmpdir, f"{self.counter:03d}-{label}.db")

    def run(
        self, name: str, params: dict[str, Any], timeout: float = 900, keep: bool = False
    ) -> dict[str, Any] | None:
        label = f"{name} {json.dumps({k: v for k, v in params.items() if k != 'path'})}"
        return run_child(
            __file__,
            name,
            params,
            label=label,
            errors=self.errors,
            verbose=self.verbose,
            timeout=timeout,
            quiet_keys=("method", "plan", "us_per_job_all"),
            after=None if keep else (lambda: self.cleanup(params.get("path"))),
        )

    @staticmethod
    def cleanup(path: str | None) -> None:
        if not path:
            return
        for suffix in ("", "-wal", "-shm", "-journal", ".empty"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)


def median_of(results: list[dict[str, Any] | None], key: str) -> float | None:
    values = [r[key] for r in results if r is not None and r.get(key) is not None]
    return statistics.median(values) if values else None


def plan_sizes(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    sizes = {
        "reps": 3,
        "enqueue_n": 1000 if quick else 5000,
        "bulk_n": 5000 if quick else 20000,
        "batch": 1000,
        "drain_n": 5000 if quick else 20000,
        "latency_samples": 100 if quick else 200,
        "idle_seconds": 3.0 if quick else 5.0,
        "reserve_sizes": [10_000, 100_000, 1_000_000],
        "reserve_jobs": 1000 if quick else 2000,
        "reserve_reps": 5,
        "memory_n": 100_000,  # a few seconds; a smaller backlog makes the growth noise
        "mixed_filler": 100_000,
        "mixed_jobs": 1000 if quick else 2000,
        "idle_samples": 50,
    }
    for key in list(sizes):
        value = getattr(args, key, None)
        if value is not None:
            sizes[key] = value
    return sizes


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    sizes = plan_sizes(args)
    groups = set(args.only.split(",")) if args.only else set(GROUPS)
    libs = [lib for lib in LIBS if lib in set(args.libs.split(","))]
    tmpdir = tempfile.mkdtemp(prefix="tinydj-bench-", dir=args.tmpdir)
    runner = Runner(tmpdir, verbose=not args.silent)
    reps = sizes["reps"]
    out: dict[str, Any] = {"sizes": sizes, "results": {}}
    res = out["results"]
    began = time.perf_counter()
    try:
        if "enqueue" in groups:
            print("enqueue ...", file=sys.stderr)
            # (the batched floor enqueues as the floor does)
            # ("own": tinydj's own statements in bare sqlite3, on its schema)
            enqueuers = [lib for lib in libs if lib != "batched"]
            enqueuers += ["own"] if "tinydj" in libs else []
            single: dict[str, list[Any]] = {lib: [] for lib in enqueuers}
            bulk: dict[str, list[Any]] = {lib: [] for lib in enqueuers}
            for _ in range(reps):
                for lib in enqueuers:
                    single[lib].append(
                        runner.run(
                            "enqueue_single",
                            {"lib": lib, "n": sizes["enqueue_n"], "path": runner.path("single")},
                        )
                    )
                    n = (
                        sizes["bulk_n"]
                        if lib != "huey"
                        else min(sizes["bulk_n"], sizes["enqueue_n"])
                    )
                    bulk[lib].append(
                        runner.run(
                            "enqueue_bulk",
                            {
                                "lib": lib,
                                "n": n,
                                "batch": sizes["batch"],
                                "path": runner.path("bulk"),
                            },
                        )
                    )
            res["enqueue_single"] = summarize(single, "rate")
            res["enqueue_bulk"] = summarize(bulk, "rate")

        if "drain" in groups:
            print("drain ...", file=sys.stderr)
            modes = ["t1", "t4", "p2"]
            drains: dict[str, dict[str, list[Any]]] = {m: {lib: [] for lib in libs} for m in modes}
            for _ in range(reps):
                for mode in modes:
                    for lib in libs:
                        drains[mode][lib].append(
                            runner.run(
                                "drain",
                                {
                                    "lib": lib,
                                    "mode": mode,
                                    "n": sizes["drain_n"],
                                    "path": runner.path(f"drain-{lib}-{mode}"),
                                },
                            )
                        )
            for mode in modes:
                res[f"drain_{mode}"] = summarize(drains[mode], "rate", extra=("maxrss_mb",))
            if "tinydj" in libs:
                cli = [
                    runner.run(
                        "drain",
                        {
                            "lib": "tinydj",
                            "mode": "p2cli",
                            "n": sizes["drain_n"],
                            "path": runner.path("drain-cli"),
                        },
                    )
                ]
                res["drain_p2cli"] = summarize({"tinydj": cli}, "rate")
            if "tinydj" in libs and args.tinydj_batch:
                batched = [
                    runner.run(
                        "drain",
                        {
                            "lib": "tinydj",
                            "mode": "t1",
                            "n": sizes["drain_n"],
                            "batch_size": args.tinydj_batch,
                            "path": runner.path("drain-batch"),
                        },
                    )
                    for _ in range(reps)
                ]
                res["drain_t1_batch"] = summarize({"tinydj": batched}, "rate")
                res["drain_t1_batch"]["batch_size"] = args.tinydj_batch

        if "latency" in groups:
            print("latency ...", file=sys.stderr)
            for kind in ("local", "remote"):
                per: dict[str, list[Any]] = {}
                for lib in libs:
                    if lib in ("floor", "batched"):
                        continue
                    per[lib] = [
                        runner.run(
                            f"latency_{kind}",
                            {
                                "lib": lib,
                                "samples": sizes["latency_samples"],
                                "idle_seconds": sizes["idle_seconds"],
                                "path": runner.path(f"lat-{kind}-{lib}"),
                            },
                        )
                    ]
                res[f"latency_{kind}"] = {
                    lib: (rs[0] if rs and rs[0] else None) for lib, rs in per.items()
                }

        if "reserve" in groups and "tinydj" in libs:
            print("reserve ...", file=sys.stderr)
            # Fill each table once, then measure the sizes in turn, one fresh
            # process per measurement, so that drift hits all sizes alike.
            fills = sizes["reserve_sizes"]
            paths = {f: runner.path(f"reserve-{f}") for f in fills}
            filled = {
                f: runner.run("reserve_fill", {"filler": f, "path": paths[f]}, keep=True)
                for f in fills
            }
            # With tinydj's planner statistics (as shipped) and without them
            # (sqlite_stat1 rows deleted, their writer disabled: the "before").
            variants = {"reserve": True, "reserve_nostats": False}
            runs: dict[str, dict[int, list[Any]]] = {v: {f: [] for f in fills} for v in variants}
            for rep in range(sizes["reserve_reps"]):
                for f in fills:
                    for variant, stats in variants.items():
                        if filled[f]:
                            params = {
                                "jobs": sizes["reserve_jobs"],
                                "path": paths[f],
                                "plan": rep == 0,
                                "stats": stats,
                                "idle": sizes["idle_samples"] if stats else 5,
                            }
                            runs[variant][f].append(runner.run("reserve", params, keep=True))
            for f in fills:
                runner.cleanup(paths[f])
            for variant in variants:
                scaling: dict[str, Any] = {}
                for f in fills:
                    ok = [r for r in runs[variant][f] if r]
                    scaling[str(f)] = None
                    if ok:
                        scaling[str(f)] = {
                            "filler": f,
                            "jobs": sizes["reserve_jobs"],
                            "rate": median_of(ok, "rate"),
                            "us_per_job": median_of(ok, "us_per_job"),
                            "us_per_job_all": [r["us_per_job"] for r in ok],
                            "idle_ms": median_of(ok, "idle_ms"),
                            "fill_seconds": filled[f]["seconds"] if filled[f] else None,
                            "plan": ok[0]["plan"],
                        }
                res[variant] = scaling
            if sizes["mixed_filler"]:
                path = runner.path("reserve-mixed")
                fill = {"filler": sizes["mixed_filler"], "mixed_priorities": True, "path": path}
                if runner.run("reserve_fill", fill, keep=True):
                    for variant, stats in variants.items():
                        params = {"jobs": sizes["mixed_jobs"], "path": path, "plan": True}
                        mixed = runner.run("reserve", {**params, "stats": stats}, keep=True)
                        res[f"{variant}_mixed"] = mixed and {**mixed, "mixed_priorities": True}
                runner.cleanup(path)

        if "memory" in groups and "tinydj" in libs:
            print("memory ...", file=sys.stderr)
            # Two backlogs, a tenth and the whole --memory-n: flat memory means
            # the same peak for both. Each is written by another process, so
            # that the peak measured is the worker's alone; the file is kept
            # for the drain.
            res["memory_runs"] = []
            for n in (sizes["memory_n"] // 10, sizes["memory_n"]):
                path = runner.path(f"memory{n}")
                if runner.run("backlog", {"path": path, "n": n}, keep=True):
                    res["memory_runs"].append(runner.run("memory", {"path": path}))
                runner.cleanup(path)
    finally:
        if args.keep:
            print(f"(kept {tmpdir})", file=sys.stderr)
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)
    out["errors"] = runner.errors
    out["elapsed_seconds"] = time.perf_counter() - began
    return out


def summarize(
    per_lib: dict[str, list[Any]], key: str, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for lib, results in per_lib.items():
        ok = [r for r in results if r]
        if not ok:
            summary[lib] = None
            continue
        entry = {
            key: median_of(ok, key),
            "runs": [r[key] for r in ok],
            "n": ok[0].get("n"),
            "method": ok[0].get("method"),
        }
        for name in extra:
            entry[name] = median_of(ok, name)
        summary[lib] = entry
    return summary


# -- output -------------------------------------------------------------------------


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _fmt_rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}/s"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def render(out: dict[str, Any]) -> str:
    res = out["results"]
    s = out["sizes"]
    rows: list[tuple[str, ...]] = []
    head = (
        "measure", "tinydj", "huey", "floor", "batched", "tinydj/huey", "tinydj/floor",
        "tinydj/batched",
    )  # fmt: skip
    blank = ("",) * (len(head) - 2)

    def rate_row(label: str, key: str) -> None:
        data = res.get(key)
        if not data:
            return
        t, h, f, b = (_get(data, lib, "rate") for lib in LIBS)
        rows.append(
            (label, *map(_fmt_rate, (t, h, f, b)), _ratio(t, h), _ratio(t, f), _ratio(t, b))
        )

    def own_row(key: str) -> None:
        """tinydj's own statements in bare sqlite3: the schema's share of the gap."""
        data = res.get(key) or {}
        o, t, f = (_get(data, lib, "rate") for lib in ("own", "tinydj", "floor"))
        if o is not None:
            label = f"  its statements in bare sqlite3 (tinydj: {_ratio(t, o)} of them)"
            rows.append((label, _fmt_rate(o), "", _fmt_rate(f), "", "", _ratio(o, f), ""))

    rate_row(f"enqueue, single ({s['enqueue_n']:,} x 1 txn)", "enqueue_single")
    own_row("enqueue_single")
    rate_row(f"enqueue, bulk ({s['bulk_n']:,} in txns of {s['batch']:,})", "enqueue_bulk")
    own_row("enqueue_bulk")
    rate_row(f"drain {s['drain_n']:,}, 1 thread", "drain_t1")
    rate_row(f"drain {s['drain_n']:,}, 4 threads", "drain_t4")
    rate_row(f"drain {s['drain_n']:,}, 2 processes (fork)", "drain_p2")
    rate_row(f"drain {s['drain_n']:,}, 2 x `tinydj work` CLI", "drain_p2cli")
    if res.get("drain_t1_batch"):
        b = res["drain_t1_batch"]["batch_size"]
        rate_row(
            f"drain {s['drain_n']:,}, 1 thread, batch_size={b} (non-default)", "drain_t1_batch"
        )

    def peer_row(label: str, t: float | None, h: float | None, unit: str) -> None:
        shown = ["—" if v is None else f"{v:.2f}{unit}" for v in (t, h)]
        rows.append((label, *shown, "", "", _ratio(t, h), "", ""))

    for kind, label in (("local", "same process"), ("remote", "other process")):
        data = res.get(f"latency_{kind}")
        if not data:
            continue
        for q in ("p50", "p95", "p99"):
            t, h = _get(data, "tinydj", f"{q}_ms"), _get(data, "huey", f"{q}_ms")
            peer_row(f"pickup latency {q}, {label}", t, h, " ms")
        t, h = _get(data, "tinydj", "idle_cpu_pct"), _get(data, "huey", "idle_cpu_pct")
        if t is not None or h is not None:
            peer_row("idle worker CPU, other process (% of a core)", t, h, "%")
    for variant, note in (("reserve", ""), ("reserve_nostats", ", no planner stats")):
        reserve = res.get(variant) or {}
        base = None
        jobs = s["reserve_jobs"]
        for filler, r in reserve.items():
            if not r:
                continue
            base = base or r
            rows.append(
                (
                    f"cost flat: drain {jobs:,} due + {int(filler):,} future{note}",
                    _fmt_rate(r["rate"]),
                    *blank[:5],
                    f"{base['rate'] / r['rate']:.2f}x of 10k",
                )
            )
            rows.append(
                (
                    f"cost flat: idle poll, {int(filler):,} future{note}",
                    f"{r['idle_ms']:.2f} ms",
                    *blank[:5],
                    f"{r['idle_ms'] / base['idle_ms']:.2f}x of 10k",
                )
            )
        mixed = res.get(f"{variant}_mixed")
        if mixed:
            rows.append(
                (
                    f"  {mixed['filler']:,} future, priorities -10..10{note}",
                    _fmt_rate(mixed["rate"]),
                    *blank[:5],
                    f"idle {mixed['idle_ms']:.2f} ms",
                )
            )
    drain1 = res.get("drain_t1") or {}
    if drain1:
        mem = (_get(drain1, lib, "maxrss_mb") for lib in LIBS)
        rows.append(
            (
                f"peak RSS, 1-thread drain of {s['drain_n']:,} (incl. setup)",
                *("—" if v is None else f"{v:.0f} MB" for v in mem),
                "",
                "",
                "",
            )
        )
    for mem_run in [r for r in res.get("memory_runs") or [] if r]:
        rows.append(
            (
                f"peak RSS, worker draining {mem_run['n']:,}",
                f"{mem_run['maxrss_mb']:.0f} MB",
                *blank[:5],
                f"(before: {mem_run['maxrss_before_mb']:.0f} MB)",
            )
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)
        ).rstrip()
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "rates: higher is better; latency and idle cost: lower is better (a latency "
        "ratio below 1x favours tinydj).\n"
        "floor: bare sqlite3, a statement per step (2 commits per job); batched: bare sqlite3, "
        "one transaction per 128 jobs (issue 14); its statements: tinydj's own INSERTs on "
        "its own table, run by bare sqlite3 (the rest of the gap to the floor is the schema's).\n"
        "cost flat: one worker thread drains the due jobs beside N rows due tomorrow "
        "(start(exit_on_complete=True)); idle poll: one reserve that finds nothing."
    )
    return "\n".join(lines)


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 14, evaluated on this run's medians."""
    res = out["results"]
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, goal: float, higher: bool, unit: str) -> None:
        if value is None:
            checks.append({"target": name, "value": None, "goal": goal, "met": None})
            return
        met = value >= goal if higher else value <= goal
        # How far from the goal, as a factor of the goal (positive: margin).
        margin = (value / goal - 1) if higher else (1 - value / goal)
        checks.append(
            {"target": name, "value": value, "goal": goal, "met": met, "margin": margin,
             "unit": unit}
        )  # fmt: skip

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    def rate(key: str, lib: str) -> float | None:
        return _get(res, key, lib, "rate")  # type: ignore[no-any-return]

    check(
        "drain 1 thread >= 50% of the batched floor",
        ratio(rate("drain_t1", "tinydj"), rate("drain_t1", "batched")),
        0.5, True, "of batched",
    )  # fmt: skip
    check(
        "drain 2 processes >= 1.5x 1 thread",
        ratio(rate("drain_p2", "tinydj"), rate("drain_t1", "tinydj")),
        1.5, True, "x 1 thread",
    )  # fmt: skip
    check(
        "single enqueue >= 60% of a bare INSERT",
        ratio(rate("enqueue_single", "tinydj"), rate("enqueue_single", "floor")),
        0.6, True, "of floor",
    )  # fmt: skip
    check(
        "bulk enqueue >= 60% of a bare executemany",
        ratio(rate("enqueue_bulk", "tinydj"), rate("enqueue_bulk", "floor")),
        0.6, True, "of floor",
    )  # fmt: skip
    reserve = res.get("reserve") or {}
    sizes = [k for k, v in reserve.items() if v]
    lo, hi = (reserve[sizes[0]], reserve[sizes[-1]]) if len(sizes) > 1 else (None, None)
    span = f"{int(sizes[-1]):,} vs {int(sizes[0]):,}" if len(sizes) > 1 else "largest vs smallest"
    check(
        f"drain beside future rows within 1.3x ({span})",
        ratio(lo and lo["rate"], hi and hi["rate"]), 1.3, False, "x slower",
    )  # fmt: skip
    check(
        f"idle poll beside future rows within 1.3x ({span})",
        ratio(hi and hi["idle_ms"], lo and lo["idle_ms"]), 1.3, False, "x the cost",
    )  # fmt: skip
    check(
        "latency p50 other process < 1 ms",
        _get(res, "latency_remote", "tinydj", "p50_ms"), 1.0, False, "ms",
    )  # fmt: skip
    check(
        "idle worker (other process) < 1% of a core",
        _get(res, "latency_remote", "tinydj", "idle_cpu_pct"), 1.0, False, "% of a core",
    )  # fmt: skip
    check(
        "worker memory flat with the backlog (growth, 10x the backlog) within 1.3x",
        _memory_growth(res.get("memory_runs") or []), 1.3, False, "x the growth",
    )  # fmt: skip
    return checks


def _memory_growth(runs: list[dict[str, Any] | None]) -> float | None:
    """How much more a worker's peak RSS grew while draining the larger
    backlog than the smaller one (1 MB added to both: the page granularity
    of a few MB would otherwise make a ratio of noise)."""
    if len(runs) < 2 or not all(runs):
        return None
    small, large = (r["maxrss_mb"] - r["maxrss_before_mb"] + 1.0 for r in runs)  # type: ignore[index]
    return large / small


def render_targets(checks: list[dict[str, Any]]) -> str:
    lines = ["targets (issue 14):"]
    for c in checks:
        if c["met"] is None:
            lines.append(f"  [ n/a ] {c['target']}: not measured")
            continue
        value = c["value"]
        shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
        verdict = " MET " if c["met"] else "MISS "
        how = f"{abs(c['margin']) * 100:.0f}% {'better than' if c['met'] else 'short of'} the goal"
        lines.append(f"  [{verdict}] {c['target']}: {shown} {c['unit']} ({how})")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import peewee

    import tinydj

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "tinydj": tinydj.__version__,
        "peewee": peewee.__version__,
    }
    try:
        import huey

        info["huey"] = huey.__version__
    except ImportError:
        info["huey"] = None
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
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--json", metavar="PATH", help="write results as JSON (- for stdout); "
                        "default benchmarks/results/latest.json")  # fmt: skip
    parser.add_argument("--only", metavar="GROUPS", help=f"comma list of {','.join(GROUPS)}")
    parser.add_argument("--libs", default=",".join(LIBS), help="comma list (default: all)")
    parser.add_argument("--reps", type=int, help="repetitions of enqueue and drain runs (3)")
    parser.add_argument("--enqueue-n", type=int, help="single enqueues (5,000; quick 1,000)")
    parser.add_argument("--bulk-n", type=int, help="bulk-enqueued jobs (20,000; quick 5,000)")
    parser.add_argument("--batch", type=int, help="bulk batch size (1,000)")
    parser.add_argument("--drain-n", type=int, help="backlog drained (20,000; quick 5,000)")
    parser.add_argument("--latency-samples", type=int, help="latency samples (200; quick 100)")
    parser.add_argument(
        "--idle-seconds", type=float, help="idle worker CPU measured over (5 s; quick 3 s)"
    )
    parser.add_argument(
        "--reserve-sizes",
        type=lambda t: [int(x) for x in t.split(",")],
        help="not-due rows, comma list (10000,100000,1000000)",
    )
    parser.add_argument(
        "--reserve-jobs", type=int, help="due jobs run per size (2,000; quick 1,000)"
    )
    parser.add_argument("--reserve-reps", type=int, help="repetitions per reserve size (5)")
    parser.add_argument(
        "--mixed-filler",
        type=int,
        help="not-due rows with priorities -10..10 for the diagnostic reserve row "
        "(100,000; 0 = skip)",
    )
    parser.add_argument(
        "--tinydj-batch",
        type=int,
        metavar="N",
        help="also drain with Worker(batch_size=N), a non-default setting (extra row)",
    )
    parser.add_argument(
        "--memory-n",
        type=int,
        help="the larger backlog of the memory runs (100,000; the other is a tenth)",
    )
    parser.add_argument("--tmpdir", help="where the SQLite files go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--silent", action="store_true", help="no per-run progress on stderr")
    args = parser.parse_args(argv)
    if "huey" in args.libs:
        try:
            import huey  # noqa: F401
        except ImportError:
            parser.error(
                "huey is not installed: pip install -e '.[bench]' (or --libs tinydj,floor)"
            )

    load_before = os.getloadavg()[0]
    out = {"environment": environment(), **run_all(args)}
    out["environment"]["loadavg_1min"] = {"start": load_before, "end": os.getloadavg()[0]}
    out["targets"] = targets(out)
    table = render(out)
    out["table"] = table
    print()
    print(f"tinydj benchmarks ({'quick' if args.quick else 'full'}; medians of "
          f"{out['sizes']['reps']} run(s); {out['environment']['cpus']} CPUs, "
          f"SQLite {out['environment']['sqlite']}, huey {out['environment']['huey']}, "
          f"Python {out['environment']['python']})")  # fmt: skip
    print(table)
    if load_before > 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: the machine was busy when this run started (1-minute load average "
            f"{load_before:.1f} on {os.cpu_count()} CPUs); other processes may have competed."
        )
    print()
    print(render_targets(out["targets"]))
    if out["errors"]:
        print(f"\n{len(out['errors'])} measurement(s) failed; see stderr above")
    print(f"\n(total {out['elapsed_seconds']:.0f} s)")
    dest = args.json or os.path.join(HERE, "results", "latest.json")
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
