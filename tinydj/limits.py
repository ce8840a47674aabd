"""Concurrency limits: at most N jobs of one key run at once, on all workers.

``@job(concurrency=2)`` limits a function; ``concurrency_key="customer_id"``
(an argument's name, or a function of the call's arguments) gives each value
a limit of its own: one import per customer at a time. A limited job's row
carries its key in ``concurrency_key`` (``module:qualname`` or
``module:qualname/<value>``); the table ``tinydj_concurrency`` holds each
key's limit, written at enqueue.

How many jobs of a key run is counted from the rows themselves: the jobs of
the key whose lease is live. Nothing is counted up and down, so nothing can
drift: a finished job (its row deleted or unlocked) frees its slot at once, a
worker that dies frees its slots when its leases expire, a row deleted by hand
frees its slot too.

The ordinary reserve never takes a limited job (its statement and index leave
them out), so jobs without limits pay nothing for the feature. While limited
jobs exist, a worker's reserve transaction first runs ``Gate.take``:

1. the keys at their limit (a GROUP BY over the limited jobs' leases);
2. due limited jobs of other keys, in run order;
3. per key, in sorted order (no deadlocks): lock the key's row of
   ``tinydj_concurrency`` (PostgreSQL, MySQL: ``FOR UPDATE``; SQLite's write
   lock serializes reservations already), count the running jobs again, and
   take one job if a slot is free.

The lock makes steps 3 of two workers for one key run one after the other,
and the count is a fresh read (READ COMMITTED, set for the transaction), so
the limit holds across threads, processes and hosts. One job per key per
reservation: a thread runs its batch one job after another, so a second job
of the key in the same batch would hold a slot without running.

Jobs over their limit wait in ``delayed_jobs`` as ready rows; they are not
failed, and as long as their key is full they are not even read (step 1
leaves them out). A worker that frees a slot takes the next job itself, in
the transaction that acknowledges the finished one.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from . import control
from .models import TABLE
from .sql import MYSQL, SQLITE
from .store import Store

__all__ = ["MAX_LIMIT", "Concurrency", "Gate", "concurrency", "copy_limits", "declare"]

log = logging.getLogger("tinydj.worker")

#: Largest ``concurrency=`` accepted.
MAX_LIMIT = 100_000
#: Longest value of the ``concurrency_key`` column.
MAX_KEY = 255
_TABLE = control.CONCURRENCY_TABLE

# -- the option ---------------------------------------------------------------


@dataclass(frozen=True)
class Concurrency:
    """``@job(concurrency=limit, concurrency_key=by)`` of one function."""

    limit: int
    #: None (one limit for the function), an argument's name, or a function
    #: of the call's arguments returning the key's value.
    by: str | Callable[..., object] | None = None
    #: The function's signature, to find a named argument.
    signature: inspect.Signature | None = None

    def key(self, path: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        """The ``concurrency_key`` of one call of the function at ``path``."""
        if self.by is None:
            return _fit(path)
        if callable(self.by):
            value = self.by(*args, **kwargs)
            what = f"concurrency_key {getattr(self.by, '__name__', 'function')}() returned"
        else:
            assert self.signature is not None
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            value = bound.arguments[self.by]
            what = f"argument {self.by!r} (concurrency_key) is"
        return _fit(f"{path}/{_text(value, what)}")


def _text(value: object, what: str) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise TypeError(
            f"{what} {type(value).__name__} {value!r:.60}: a concurrency key must be a str, "
            "an int or a UUID (e.g. concurrency_key=lambda customer, **_: customer.id)"
        )
    return str(value)


def _fit(key: str) -> str:
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    head = key.split("/", 1)[0]
    short = f"{head}/#{digest}"
    return short if len(short) <= MAX_KEY else f"#{digest}"


def concurrency(limit: object, by: object, fn: Callable[..., Any]) -> Concurrency | None:
    """Check ``@job``'s ``concurrency`` and ``concurrency_key`` for ``fn``;
    None when neither is set. Raises ``ValueError``/``TypeError`` quoting a bad value."""
    if limit is None:
        if by is not None:
            raise ValueError(
                f"concurrency_key={by!r} needs a limit: @job(concurrency=1, concurrency_key=...)"
            )
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"concurrency must be an int (jobs at once), not {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"concurrency must be between 1 and {MAX_LIMIT}, not {limit}")
    if by is None or callable(by):
        return Concurrency(limit, by)
    if not isinstance(by, str):
        raise TypeError(f"concurrency_key must be an argument's name or a function, not {by!r:.60}")
    signature = inspect.signature(fn)
    if by not in signature.parameters:
        names = ", ".join(signature.parameters) or "none"
        raise ValueError(
            f"concurrency_key={by!r} is not an argument of {fn.__qualname__} (it has: {names})"
        )
    return Concurrency(limit, by, signature)


# -- enqueue: each key's limit --------------------------------------------------

_declared: weakref.WeakKeyDictionary[Store, dict[str, int]] = weakref.WeakKeyDictionary()
_declared_lock = threading.Lock()


def declare(store: Store, key: str, limit: int) -> None:
    """Make sure ``tinydj_concurrency`` holds ``limit`` for ``key`` (before a
    job of the key is inserted; in the caller's transaction, if one is open).

    Once per process and key: a read, and a write only when the row is
    missing or holds another limit (the code changed), so that enqueueing
    never waits for the row lock a reserving worker holds.
    """
    with _declared_lock:
        if _declared.get(store, {}).get(key) == limit:
            return
    control.ensure_tables(store)

    def go() -> None:
        row = store.query(f"SELECT max_running FROM {_TABLE} WHERE name = ?", (key,)).fetchone()
        if row is None:
            insert = "INSERT IGNORE INTO" if store.dialect is MYSQL else "INSERT INTO"
            tail = "" if store.dialect is MYSQL else " ON CONFLICT (name) DO NOTHING"
            store.query(f"{insert} {_TABLE} (name, max_running) VALUES (?, ?){tail}", (key, limit))
        elif int(row[0]) != limit:
            store.query(f"UPDATE {_TABLE} SET max_running = ? WHERE name = ?", (limit, key))

    store._run(go)
    if not store.db.in_transaction():  # a rollback could undo it otherwise
        with _declared_lock:
            _declared.setdefault(store, {})[key] = limit


def copy_limits(source: Store, target: Store) -> int:
    """Declare every limit of ``source`` in ``target`` (``tinydj move``: the
    jobs it moves keep their keys, and would wait for a limit otherwise)."""
    control.ensure_tables(source)
    found = source._run(lambda: source.query(f"SELECT name, max_running FROM {_TABLE}").fetchall())
    for name, limit in found:
        declare(target, str(name), int(limit))
    return len(found)


def _known(store: Store) -> bool:
    with _declared_lock:
        return bool(_declared.get(store))


# -- the worker: taking limited jobs --------------------------------------------

_SATURATED = (
    f"SELECT h.concurrency_key FROM {TABLE} h JOIN {_TABLE} c ON c.name = h.concurrency_key "
    "WHERE h.concurrency_key IS NOT NULL AND h.failed_at IS NULL AND h.locked_at >= ? "
    "GROUP BY h.concurrency_key, c.max_running HAVING COUNT(*) >= c.max_running"
)
_RUNNING = (
    f"SELECT COUNT(*) FROM {TABLE} WHERE concurrency_key = ? AND failed_at IS NULL "
    "AND locked_at >= ?"
)
_DUE = "failed_at IS NULL AND run_at <= ? AND (locked_at IS NULL OR locked_at < ?)"


def _in(column: str, n: int, negate: bool = False) -> str:
    if not n:
        return ""
    return f" AND {column} {'NOT IN' if negate else 'IN'} ({', '.join(['?'] * n)})"


@dataclass(frozen=True)
class Reservation:
    """What one reserve asks for: times as the store binds them, queues."""

    now: Any
    expired_before: Any
    queues: Sequence[str]
    excluded: Sequence[str]


class Gate:
    """Takes a worker's limited jobs inside its reserve transaction.

    ``active()`` says whether any limit exists (read again at most every
    ``recheck`` seconds until one does; a limit declared in this process
    counts at once), so that workers of applications without limits run no
    extra statement.
    """

    def __init__(self, store: Store, recheck: float, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.recheck = recheck
        self._clock = clock
        self._active = False
        self._next_check = 0.0
        self._missing: set[str] = set()  # keys whose limit row is gone (warned once)
        locks = "" if store.dialect is SQLITE else " FOR UPDATE"
        self._lock_sql = f"SELECT max_running FROM {_TABLE} WHERE name = ?{locks}"
        self._skip = store.dialect.skip_locked

    def active(self) -> bool:
        if self._active or _known(self.store):
            self._active = True
            return True
        tick = self._clock()
        if tick >= self._next_check:
            self._next_check = tick + self.recheck
            control.ensure_tables(self.store)
            found = self.store._run(
                lambda: self.store.query(f"SELECT 1 FROM {_TABLE} LIMIT 1").fetchone()
            )
            self._active = found is not None
        return self._active

    def take(self, want: Reservation, limit: int) -> list[int]:
        """Ids of up to ``limit`` due limited jobs that may start now, one per
        key with a free slot (call inside the reserve transaction)."""
        query = self.store.query
        full = [str(r[0]) for r in query(_SATURATED, (want.expired_before,)).fetchall()]
        keys = self._candidates(want, full, limit)
        taken: list[int] = []
        for key in sorted(keys):
            picked = self._take_one(want, key)
            if picked is not None:
                taken.append(picked)
        return taken

    def _candidates(self, want: Reservation, full: Sequence[str], limit: int) -> list[str]:
        sql = (
            f"SELECT concurrency_key FROM {TABLE} WHERE concurrency_key IS NOT NULL AND {_DUE}"
            f"{_in('queue', len(want.queues))}{_in('queue', len(want.excluded), True)}"
            f"{_in('concurrency_key', len(full), True)} ORDER BY priority, run_at, id LIMIT ?"
        )
        params = (
            want.now,
            want.expired_before,
            *want.queues,
            *want.excluded,
            *full,
            limit,
        )
        found = self.store.query(sql, params).fetchall()
        return list(dict.fromkeys(str(r[0]) for r in found))[:limit]

    def _take_one(self, want: Reservation, key: str) -> int | None:
        query = self.store.query
        row = query(self._lock_sql, (key,)).fetchone()
        if row is None:
            self._warn_missing(key)
            return None
        running = query(_RUNNING, (key, want.expired_before)).fetchone()[0]
        if int(running) >= int(row[0]):
            return None
        sql = (
            f"SELECT id FROM {TABLE} WHERE concurrency_key = ? AND {_DUE}"
            f"{_in('queue', len(want.queues))}{_in('queue', len(want.excluded), True)}"
            f" ORDER BY priority, run_at, id LIMIT 1{self._skip}"
        )
        params = (key, want.now, want.expired_before, *want.queues, *want.excluded)
        found = query(sql, params).fetchone()
        return None if found is None else int(found[0])

    def _warn_missing(self, key: str) -> None:
        if key not in self._missing:
            self._missing.add(key)
            log.warning(
                "jobs with concurrency key %r wait: its limit is missing from %s "
                "(enqueue one of them again from the application to restore it)",
                key,
                _TABLE,
                extra={"action": "concurrency_limit_missing"},
            )


def reservation(
    store: Store,
    now: datetime,
    expired_before: datetime,
    queues: Sequence[str],
    excluded: Sequence[str],
) -> Reservation:
    """A ``Reservation`` with the times bound as ``store`` binds them."""
    bind = store.dialect.bind_time
    return Reservation(bind(now), bind(expired_before), tuple(queues), tuple(excluded))
