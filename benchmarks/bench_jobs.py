"""Jobs and helpers shared by the benchmark processes (tinydj, huey, raw sqlite3).

This module is imported by path (``bench_jobs``) in every process of a
benchmark: the benchmark itself, ``python -m tinydj work`` workers and huey
consumers, so ``benchmarks/`` must be on ``PYTHONPATH`` (``run.py`` does that).
Benchmarks only: nothing here is part of tinydj.
"""

from __future__ import annotations

import json
import queue
import socket
import sqlite3
import time
from types import SimpleNamespace
from typing import Any

import tinydj
from tinydj.sql import BATCH_ROWS, SQLITE, Statements

# -- tinydj jobs ---------------------------------------------------------------


@tinydj.job
def noop(*args: Any, **kwargs: Any) -> None:
    """The job every throughput benchmark runs: does nothing."""


@tinydj.job(concurrency=2, concurrency_key="key")
def limited(key: str, seconds: float) -> None:
    """``benchmarks/concurrency.py``'s limited work: two per key at once."""
    time.sleep(seconds)


#: Pickup latencies (seconds) recorded by ``probe_local`` in this process.
LOCAL: queue.SimpleQueue[float] = queue.SimpleQueue()


@tinydj.job
def probe_local(t0: float) -> None:
    """Record ``perf_counter() - t0`` where ``t0`` was taken just before enqueueing."""
    LOCAL.put(time.perf_counter() - t0)


@tinydj.job
def probe_udp(t0: float, port: int) -> None:
    """Send ``time.time() - t0`` (seconds, as text) to the benchmark on ``port``."""
    started = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(repr(started - t0).encode(), ("127.0.0.1", port))


# -- the same jobs for huey ----------------------------------------------------


def _huey_noop(*args: Any, **kwargs: Any) -> None:
    pass


def _huey_probe_local(t0: float) -> None:
    LOCAL.put(time.perf_counter() - t0)


def _huey_probe_udp(t0: float, port: int) -> None:
    started = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(repr(started - t0).encode(), ("127.0.0.1", port))


def make_huey(path: str, **options: Any) -> tuple[Any, SimpleNamespace]:
    """A ``SqliteHuey`` on ``path`` with its defaults, and the benchmark tasks.

    Task names are fixed, so that a consumer in another process that calls
    ``make_huey`` on the same file finds them.
    """
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=path, **options)
    tasks = SimpleNamespace(
        noop=huey.task(name="noop")(_huey_noop),
        probe_local=huey.task(name="probe_local")(_huey_probe_local),
        probe_udp=huey.task(name="probe_udp")(_huey_probe_udp),
    )
    return huey, tasks


def huey_consumer_main(path: str, workers: int, worker_type: str, delay: float) -> None:
    """Run a huey consumer on ``path`` in the foreground until SIGINT (graceful).

    ``delay`` is both the initial and the maximum polling delay of an idle
    worker (huey's ``-d`` and ``-m``).
    """
    from huey.consumer import Consumer

    huey, _ = make_huey(path)
    consumer = Consumer(
        huey,
        workers=workers,
        worker_type=worker_type,
        periodic=False,
        initial_delay=delay,
        max_delay=delay,
        check_worker_health=False,
    )
    consumer.run()


# -- the raw-sqlite floor --------------------------------------------------------

FLOOR_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, run_at REAL NOT NULL, "
    "locked_at REAL, locked_by TEXT, payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (run_at, id) WHERE locked_at IS NULL",
)
FLOOR_INSERT = "INSERT INTO jobs (run_at, payload) VALUES (?, ?)"
FLOOR_LOCK = (
    "UPDATE jobs SET locked_at = ?, locked_by = ? WHERE id = ("
    "SELECT id FROM jobs WHERE locked_at IS NULL AND run_at <= ? ORDER BY run_at, id LIMIT 1"
    ") RETURNING id, payload"
)
FLOOR_DELETE = "DELETE FROM jobs WHERE id = ?"


def floor_payload(i: int) -> str:
    """A payload of about the size of tinydj's handler for ``noop(i)``."""
    return f"tinydj: 1\nfunction: bench_jobs:noop\nargs: [{i}]\n"


def floor_connect(path: str) -> sqlite3.Connection:
    """An autocommit connection: each statement is its own transaction."""
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=NORMAL")
    for sql in FLOOR_SCHEMA:
        conn.execute(sql)
    return conn


# -- tinydj's own statements in bare sqlite3 ------------------------------------
# What an enqueue costs on tinydj's schema (its indexes, AUTOINCREMENT and
# trigger) with no Python of tinydj's around it: the gap between this and the
# floor is the schema's, the gap between tinydj and this is tinydj's code.


def own_connect(path: str) -> sqlite3.Connection:
    """An autocommit connection to a file with tinydj's table, made by tinydj."""
    config = tinydj.configure("sqlite:///" + path)
    tinydj.create_tables()
    config.database.close()
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def own_now() -> str:
    """The current time as tinydj binds it on SQLite (naive UTC ISO text)."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1e6) % 10**6:06d}"


def own_insert_one(conn: sqlite3.Connection, i: int) -> None:
    """tinydj's single INSERT of ``noop(i)`` (``Statements.insert``)."""
    t = own_now()
    params = (0, 0, floor_payload(i), t, "default", None, None, t, t, None)
    conn.execute(_OWN.insert, params)


def own_insert_bulk(conn: sqlite3.Connection, first: int, n: int) -> None:
    """tinydj's bulk INSERTs of ``noop(first) .. noop(first + n - 1)`` in one
    transaction: ``Statements.insert_batch``, ``BATCH_ROWS`` rows a statement."""
    t = own_now()
    conn.execute("BEGIN IMMEDIATE")
    for k in range(first, first + n, BATCH_ROWS):
        size = min(BATCH_ROWS, first + n - k)
        values = [v for i in range(k, k + size) for v in (0, floor_payload(i), t, "default", t, t)]
        conn.execute(_OWN.insert_batch(size), values)
    conn.execute("COMMIT")


_OWN = Statements(SQLITE)


def floor_drain(path: str, name: str) -> int:
    """Lock (UPDATE ... RETURNING) and delete due jobs one by one until none is left.

    Each statement is its own transaction: two commits per job.
    """
    conn = floor_connect(path)
    done = 0
    try:
        while True:
            now = time.time()
            rows = conn.execute(FLOOR_LOCK, (now, name, now)).fetchall()
            if not rows:
                return done
            row = rows[0]
            _huey_noop(row[1])
            conn.execute(FLOOR_DELETE, (row[0],))
            done += 1
    finally:
        conn.close()


# -- the batched sqlite floor (issue 14) -----------------------------------------
# The least tinydj's own design can do: one BEGIN IMMEDIATE transaction
# deletes the batch finished last and locks the next BATCH due rows with one
# UPDATE ... RETURNING; then each payload is json.loads'ed and its function
# called. WAL, synchronous=NORMAL.

BATCH = 128
BATCHED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bjobs (id INTEGER PRIMARY KEY, "
    "priority INTEGER NOT NULL DEFAULT 0, run_at REAL NOT NULL, locked_at REAL, "
    "locked_by TEXT, payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bjobs_ready ON bjobs (priority, run_at, id) "
    "WHERE locked_at IS NULL",
)
BATCHED_INSERT = "INSERT INTO bjobs (run_at, payload) VALUES (?, ?)"
BATCHED_LOCK = (
    "UPDATE bjobs SET locked_at = ?, locked_by = ? WHERE id IN ("
    "SELECT id FROM bjobs WHERE locked_at IS NULL AND run_at <= ? "
    f"ORDER BY priority, run_at, id LIMIT {BATCH}) RETURNING id, payload"
)
_DELETES: dict[int, str] = {}
#: What a batched-floor payload's "f" names.
FUNCTIONS = {"bench_jobs:noop": _huey_noop}


def batched_payload(i: int) -> str:
    return json.dumps({"f": "bench_jobs:noop", "args": [i]})


def _delete_ids(n: int) -> str:
    sql = _DELETES.get(n)
    if sql is None:
        sql = _DELETES[n] = f"DELETE FROM bjobs WHERE id IN ({', '.join(['?'] * n)})"
    return sql


def batched_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=NORMAL")
    for sql in BATCHED_SCHEMA:
        conn.execute(sql)
    return conn


def batched_drain(path: str, name: str) -> int:
    """Delete the last batch and lock the next in one transaction, until none is left."""
    conn = batched_connect(path)
    done: list[int] = []
    total = 0
    loads, functions = json.loads, FUNCTIONS
    try:
        while True:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            if done:
                conn.execute(_delete_ids(len(done)), done)
            rows = conn.execute(BATCHED_LOCK, (now, name, now)).fetchall()
            conn.execute("COMMIT")
            if not rows:
                return total
            done = []
            for job_id, payload in rows:
                job = loads(payload)
                functions[job["f"]](*job["args"])
                done.append(job_id)
            total += len(done)
    finally:
        conn.close()


def idle_reserves(store: Any, samples: int) -> list[float]:
    """Seconds per tinydj reserve that finds nothing due (what an idle poll costs)."""
    from datetime import UTC, datetime, timedelta

    out = []
    for _ in range(samples):
        now = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()
        got = store.reserve("bench-idle", now, now - timedelta(seconds=300), None, BATCH)
        out.append(time.perf_counter() - started)
        if got:
            raise RuntimeError(f"an idle reserve found {len(got)} job(s)")
    return out
