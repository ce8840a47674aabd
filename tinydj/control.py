"""Workers, paused queues and per-minute outcomes: the small tables beside ``delayed_jobs``.

Four tables, created on first use (SQLite, PostgreSQL, MariaDB/MySQL); all of
their SQL is in this module:

- ``tinydj_workers``: one row per running worker, refreshed with its lease
  heartbeat. A worker whose ``heartbeat_at`` is older than the lock timeout is
  dead (it may have been killed without unregistering).
- ``tinydj_queues``: one row per paused queue. Workers skip paused queues;
  running jobs finish.
- ``tinydj_stats``: jobs finished and failed per minute and queue. Finished
  jobs are deleted from ``delayed_jobs``, so this is the only history; workers
  add to it in batches (``Tally``), and the dashboard's chart fills as they do.
- ``tinydj_concurrency``: each concurrency key's limit; its SQL is in
  ``tinydj.limits``.

Every function takes ``store`` (default: the configured one) and, where it
matters, ``now`` (naive UTC): time is a parameter.

>>> control.pause("mail", now=utcnow())  # doctest: +SKIP
>>> sorted(control.paused_queues())  # doctest: +SKIP
['mail']
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from .sql import MYSQL, POSTGRES, SQLITE
from .store import Store

__all__ = [
    "STATS_RETENTION",
    "Tally",
    "WorkerInfo",
    "ensure_tables",
    "format_workers",
    "heartbeat",
    "list_workers",
    "outcomes",
    "pause",
    "paused_queues",
    "prune_workers",
    "record_outcomes",
    "register_worker",
    "resume",
    "unregister_worker",
]

#: Per-minute counters older than this are deleted when new ones are recorded.
STATS_RETENTION = timedelta(days=2)
#: Workers count as alive while their heartbeat is younger than this (seconds),
#: unless the caller passes its own lock timeout.
DEFAULT_LOCK_TIMEOUT = 30.0

_WORKERS = "tinydj_workers"
_QUEUES = "tinydj_queues"
_STATS = "tinydj_stats"
#: Each concurrency key's limit (``tinydj.limits``), and the row a worker
#: locks while it starts a job of that key.
CONCURRENCY_TABLE = "tinydj_concurrency"
_PG_LOCK = 7_402_158

_DATETIME = {SQLITE.name: "DATETIME", POSTGRES.name: "TIMESTAMP", MYSQL.name: "DATETIME(6)"}


def _ddl(dialect_name: str) -> list[str]:
    ts = _DATETIME[dialect_name]
    return [
        f"CREATE TABLE IF NOT EXISTS {_WORKERS} ("
        "name VARCHAR(255) NOT NULL PRIMARY KEY, host VARCHAR(255) NOT NULL, "
        "pid INTEGER NOT NULL, threads INTEGER NOT NULL, queues TEXT, "
        f"started_at {ts} NOT NULL, heartbeat_at {ts} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {_QUEUES} ("
        f"name VARCHAR(255) NOT NULL PRIMARY KEY, paused_at {ts} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {_STATS} ("
        f"minute {ts} NOT NULL, queue VARCHAR(255) NOT NULL, "
        "finished INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, "
        "PRIMARY KEY (minute, queue))",
        f"CREATE TABLE IF NOT EXISTS {CONCURRENCY_TABLE} ("
        "name VARCHAR(255) NOT NULL PRIMARY KEY, max_running INTEGER NOT NULL)",
    ]


_ready: weakref.WeakSet[Store] = weakref.WeakSet()
_ready_lock = threading.Lock()


def _store(store: Store | None) -> Store:
    if store is None:
        from .config import get_config

        store = get_config().store
    ensure_tables(store)
    return store


def ensure_tables(store: Store) -> None:
    """Create the control tables unless they exist (once per Store)."""
    if store in _ready:
        return
    with _ready_lock:
        if store in _ready:
            return
        store._run(lambda: _create(store))
        if not store.db.in_transaction():
            _ready.add(store)


def _create(store: Store) -> None:
    statements = _ddl(store.dialect.name)
    if store.dialect is MYSQL:
        # DDL commits implicitly on MySQL: use a connection of its own.
        with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
            conn = store.db._connect()  # type: ignore[attr-defined]
        try:
            cursor = conn.cursor()
            for sql in statements:
                cursor.execute(sql)
        finally:
            conn.close()
        return
    with store.db.atomic():
        if store.dialect is POSTGRES:
            # CREATE TABLE IF NOT EXISTS races on Postgres' catalog otherwise.
            store.query("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK,))
        for sql in statements:
            store.query(sql)


def _dt(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


# -- workers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One registered worker, as ``list_workers`` reads it."""

    name: str
    host: str
    pid: int
    threads: int
    #: The queues it takes jobs from; empty: every queue.
    queues: tuple[str, ...]
    started_at: datetime
    heartbeat_at: datetime
    #: Its heartbeat is younger than the lock timeout.
    alive: bool


def register_worker(
    name: str,
    *,
    host: str,
    pid: int,
    threads: int,
    queues: Iterable[str] | None,
    now: datetime,
    store: Store | None = None,
) -> None:
    """Record a starting worker (replacing an older row of the same name)."""
    s = _store(store)
    queue_text = ",".join(queues or ())
    t = s._t(now)

    def go() -> None:
        with s.connection.transaction():
            s.query(f"DELETE FROM {_WORKERS} WHERE name = ?", (name,))
            s.query(
                f"INSERT INTO {_WORKERS} (name, host, pid, threads, queues, started_at, "
                "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, host, pid, threads, queue_text, t, t),
            )

    s._run(go)


def heartbeat(name: str, *, now: datetime, store: Store | None = None) -> bool:
    """Refresh a worker's heartbeat; False if its row is gone (register again)."""
    s = _store(store)
    sql = f"UPDATE {_WORKERS} SET heartbeat_at = ? WHERE name = ?"
    return bool(s._run(lambda: s.query(sql, (s._t(now), name)).rowcount))


def unregister_worker(name: str, *, store: Store | None = None) -> bool:
    """Remove a stopping worker's row; False if it was not there."""
    s = _store(store)
    sql = f"DELETE FROM {_WORKERS} WHERE name = ?"
    return bool(s._run(lambda: s.query(sql, (name,)).rowcount))


def list_workers(
    *, now: datetime, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, store: Store | None = None
) -> list[WorkerInfo]:
    """Registered workers, live ones first, then by name."""
    s = _store(store)
    sql = (
        f"SELECT name, host, pid, threads, queues, started_at, heartbeat_at FROM {_WORKERS} "
        "ORDER BY name"
    )
    rows = s._run(lambda: s.query(sql).fetchall())
    oldest = now - timedelta(seconds=lock_timeout)
    workers = [
        WorkerInfo(
            name=str(r[0]),
            host=str(r[1]),
            pid=int(r[2]),
            threads=int(r[3]),
            queues=tuple(q for q in str(r[4] or "").split(",") if q),
            started_at=_dt(r[5]),
            heartbeat_at=_dt(r[6]),
            alive=_dt(r[6]) >= oldest,
        )
        for r in rows
    ]
    workers.sort(key=lambda w: (not w.alive, w.name))
    return workers


def format_workers(workers: Iterable[WorkerInfo], now: datetime) -> list[str]:
    """Lines for ``tinydj workers``: a header, then one aligned line per worker.

    >>> print("\n".join(format_workers(list_workers(now=now), now)))  # doctest: +SKIP
    STATE  NAME                   HOST   PID  THREADS  QUEUES  HEARTBEAT
    live   host:web-1 pid:42 w1   web-1  42   4        all     3s ago
    """
    rows = [("STATE", "NAME", "HOST", "PID", "THREADS", "QUEUES", "HEARTBEAT")]
    for w in workers:
        age = max(0, int((now - w.heartbeat_at).total_seconds()))
        rows.append(
            (
                "live" if w.alive else "dead",
                w.name,
                w.host,
                str(w.pid),
                str(w.threads),
                ",".join(w.queues) or "all",
                f"{age}s ago",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(n) for c, n in zip(r, widths, strict=True)).rstrip() for r in rows]


def prune_workers(*, before: datetime, store: Store | None = None) -> int:
    """Delete workers whose last heartbeat is older than ``before``; return how many."""
    s = _store(store)
    sql = f"DELETE FROM {_WORKERS} WHERE heartbeat_at < ?"
    return int(s._run(lambda: s.query(sql, (s._t(before),)).rowcount))


# -- paused queues -----------------------------------------------------------


def pause(queue: str, *, now: datetime, store: Store | None = None) -> bool:
    """Pause a queue: workers stop taking its jobs. False if it was paused already."""
    if not queue:
        raise ValueError("queue name must not be empty")
    s = _store(store)

    def go() -> bool:
        with s.connection.transaction():
            row = s.query(f"SELECT 1 FROM {_QUEUES} WHERE name = ?", (queue,)).fetchone()
            if row:
                return False
            s.query(f"INSERT INTO {_QUEUES} (name, paused_at) VALUES (?, ?)", (queue, s._t(now)))
            return True

    try:
        return s._run(go)
    except peewee.IntegrityError:  # paused by someone else at the same moment
        return False


def resume(queue: str, *, store: Store | None = None) -> bool:
    """Resume a paused queue; False if it was not paused."""
    s = _store(store)
    sql = f"DELETE FROM {_QUEUES} WHERE name = ?"
    return bool(s._run(lambda: s.query(sql, (queue,)).rowcount))


def paused_queues(*, store: Store | None = None) -> dict[str, datetime]:
    """Paused queues and when they were paused."""
    s = _store(store)
    rows = s._run(lambda: s.query(f"SELECT name, paused_at FROM {_QUEUES}").fetchall())
    return {str(r[0]): _dt(r[1]) for r in rows}


# -- per-minute outcomes -----------------------------------------------------


def record_outcomes(
    counts_by_minute: Mapping[tuple[datetime, str], tuple[int, int]],
    *,
    store: Store | None = None,
) -> None:
    """Add ``(finished, failed)`` counts to the per-minute counters.

    Keys are ``(minute, queue)``; the time is truncated to its minute. A
    "failed" count is a run that raised (whether it will be retried or not).
    Counters older than ``STATS_RETENTION`` are deleted in the same step.
    """
    merged: dict[tuple[datetime, str], list[int]] = {}
    for (when, queue), (finished, failed) in counts_by_minute.items():
        cell = merged.setdefault((_minute(when), queue), [0, 0])
        cell[0] += finished
        cell[1] += failed
    if not merged:
        return
    s = _store(store)
    if s.dialect is MYSQL:
        upsert = (
            "ON DUPLICATE KEY UPDATE finished = finished + VALUES(finished), "
            "failed = failed + VALUES(failed)"
        )
    else:
        upsert = (
            "ON CONFLICT (minute, queue) DO UPDATE SET "
            f"finished = {_STATS}.finished + excluded.finished, "
            f"failed = {_STATS}.failed + excluded.failed"
        )
    sql = f"INSERT INTO {_STATS} (minute, queue, finished, failed) VALUES (?, ?, ?, ?) {upsert}"
    oldest = s._t(min(k[0] for k in merged) - STATS_RETENTION)

    def go() -> None:
        with s.connection.transaction():
            for (minute, queue), (finished, failed) in sorted(merged.items()):
                s.query(sql, (s._t(minute), queue, finished, failed))
            s.query(f"DELETE FROM {_STATS} WHERE minute < ?", (oldest,))

    s._run(go)


def outcomes(
    *, since: datetime, until: datetime, queue: str | None = None, store: Store | None = None
) -> list[tuple[datetime, int, int]]:
    """``(minute, finished, failed)`` for every minute in ``[since, until]``.

    Minutes without counters are included with zeros, oldest first; the
    counts of all queues are added up unless ``queue`` is given.
    """
    s = _store(store)
    start, end = _minute(since), _minute(until)
    sql = (
        f"SELECT minute, SUM(finished), SUM(failed) FROM {_STATS} WHERE minute >= ? AND minute <= ?"
    )
    params: list[Any] = [s._t(start), s._t(end)]
    if queue is not None:
        sql += " AND queue = ?"
        params.append(queue)
    sql += " GROUP BY minute"
    rows = s._run(lambda: s.query(sql, params).fetchall())
    found = {_dt(r[0]): (int(r[1]), int(r[2])) for r in rows}
    result: list[tuple[datetime, int, int]] = []
    minute = start
    while minute <= end:
        finished, failed = found.get(minute, (0, 0))
        result.append((minute, finished, failed))
        minute += timedelta(minutes=1)
    return result


class Tally:
    """Counts outcomes in memory until ``flush`` writes them in one transaction.

    Thread-safe: a worker's threads share one Tally and flush it with the
    lease heartbeat.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[datetime, str], tuple[int, int]] = {}

    def add(self, now: datetime, queue: str, *, failed: bool = False) -> None:
        """Count one run of a job of ``queue`` that ended at ``now``."""
        key = (_minute(now), queue)
        with self._lock:
            finished, failures = self._counts.get(key, (0, 0))
            self._counts[key] = (finished, failures + 1) if failed else (finished + 1, failures)

    def flush(self, store: Store | None = None) -> int:
        """Write and forget the counts; return how many runs they held.

        If writing fails the counts are kept for the next flush.
        """
        with self._lock:
            counts, self._counts = self._counts, {}
        try:
            record_outcomes(counts, store=store)
        except Exception:
            with self._lock:
                for key, (f, e) in counts.items():
                    old = self._counts.get(key, (0, 0))
                    self._counts[key] = (old[0] + f, old[1] + e)
            raise
        return sum(f + e for f, e in counts.values())
