"""Enqueueing: the INSERTs of new jobs, unique and recurring rows.

``Inserts`` is the part of a ``Store`` on every producer's path
(``Store.insert``, ``insert_unique`` and ``upsert`` call it). One job is one
INSERT in autocommit. Many jobs are one transaction, in the cheapest shape
the dialect has: when only the handlers differ (one call's
``send_later_many``), multi-row INSERTs of the handlers with the shared values
repeated (SQLite, ``BATCH_ROWS`` rows a statement) or one ``unnest`` of a
handler array (PostgreSQL); otherwise ``executemany`` (SQLite), multi-row
INSERT ... RETURNING (PostgreSQL) or an INSERT per row (MySQL). On SQLite the
ids of a transaction's rows are consecutive (the write lock is held), so the
last rowid gives them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any

from . import rows
from .connection import Connection
from .job import Job, NewJob
from .schema import Schema
from .sql import ARRAY_ROWS, BATCH_ROWS, INSERT_ROWS, MYSQL, POSTGRES, Statements

__all__ = ["Inserts"]

#: What a ``NewJob`` shares with the other rows of one call's bulk insert
#: (all but the handler), and its handler.
_SHAPE = itemgetter(1, 2, 3, 4, 5, 6)
_HANDLER = itemgetter(0)


class Inserts:
    """Inserting the new jobs of one store's table."""

    def __init__(
        self,
        connection: Connection,
        sql: Statements,
        schema: Schema,
        inserted: Callable[[], None],
    ) -> None:
        """``inserted``: called after each insert (the doorbell of this
        process's workers)."""
        self.sql, self.connection, self._schema = sql, connection, schema
        self.dialect = connection.dialect
        self._run, self._execute = connection.run, connection.execute
        self._t = connection.dialect.bind_time
        self._inserted = inserted

    def insert(self, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        """``Store.insert`` (see there)."""
        if not jobs:
            return []
        if not self._schema._ready:
            self._schema.ensure()
        t = self._t(now)
        if len(jobs) == 1:
            job = jobs[0]
            params = job.params(t, t if job.run_at is now else self._t(job.run_at))
            job_id = self._run(lambda: self._insert_one(params))
            self._inserted()
            return [job.inserted(job_id, now)]
        ids = self._run(lambda: self._insert_many(jobs, now, t))
        self._inserted()
        return list(map(NewJob.inserted, jobs, ids, repeat(now)))

    def _insert_one(self, params: Sequence[Any]) -> int:
        if self.dialect.returning and not self.dialect.text_times:
            return int(self._execute(self.sql.insert_returning_id, params).fetchone()[0])
        return int(self._execute(self.sql.insert, params).lastrowid)

    def _insert_many(self, jobs: Sequence[NewJob], now: datetime, t: Any) -> list[int]:
        first = jobs[0]
        if not _one_shape(jobs) or self.dialect is MYSQL:
            params = [j.params(t, t if j.run_at is now else self._t(j.run_at)) for j in jobs]
            with self.connection.transaction():
                return self._insert_rows(params)
        run_at = t if first.run_at is now else self._t(first.run_at)
        shared = (first.priority, run_at, first.queue, t)
        if self.dialect is POSTGRES and len(jobs) <= ARRAY_ROWS:  # one statement
            return self._insert_batch(shared, jobs)
        with self.connection.transaction():
            return self._insert_batch(shared, jobs)

    def _insert_rows(self, params: Sequence[Sequence[Any]]) -> list[int]:
        """Insert rows of ``Statements.insert`` in the open transaction."""
        if self.dialect.text_times:
            self.connection.executemany(self.sql.insert, params)
            return self._last_ids(len(params))
        if not self.dialect.returning:
            return [self._execute(self.sql.insert, p).lastrowid for p in params]
        ids: list[int] = []
        for i in range(0, len(params), INSERT_ROWS):
            part = params[i : i + INSERT_ROWS]
            flat = [v for p in part for v in p]
            cursor = self._execute(self.sql.insert_rows(len(part)), flat)
            ids.extend(r[0] for r in cursor.fetchall())
        return ids

    def _insert_batch(self, shared: tuple[Any, ...], jobs: Sequence[NewJob]) -> list[int]:
        """Insert rows that differ only in their handler (``Statements.insert_batch``):
        ``shared`` is (priority, run_at, queue, now), as bound."""
        handlers = list(map(_HANDLER, jobs))
        n = len(handlers)
        if self.dialect is POSTGRES:
            ids: list[int] = []
            for i in range(0, n, ARRAY_ROWS):
                params = (*shared, shared[-1], handlers[i : i + ARRAY_ROWS])
                ids.extend(r[0] for r in self._execute(self.sql.insert_batch(0), params))
            return ids
        priority, run_at, queue, t = shared
        done = 0
        while done < n:  # BATCH_ROWS at a time, then the rest in powers of two
            size = min(BATCH_ROWS, 1 << ((n - done).bit_length() - 1))
            values = [
                v for h in handlers[done : done + size] for v in (priority, h, run_at, queue, t, t)
            ]
            self._execute(self.sql.insert_batch(size), values)
            done += size
        return self._last_ids(n)

    def _last_ids(self, n: int) -> list[int]:
        """The ids of the last ``n`` rows inserted (SQLite): under the write
        lock rowids are handed out in sequence."""
        last = self._execute(self.sql.last_rowid).fetchone()[0]
        return list(range(last - n + 1, last + 1))

    def insert_unique(self, job: NewJob, now: datetime) -> Job:
        """``Store.insert_unique`` (see there)."""
        self._schema.ensure()
        t = self._t(now)
        params = job.params(t, self._t(job.run_at))
        return self._keyed(job, params, self.sql.insert_unique, self.sql.insert_unique_returning)

    def upsert(
        self, job: NewJob, now: datetime, soonest: datetime, *, replace: bool = False
    ) -> Job:
        """``Store.upsert`` (see there)."""
        self._schema.ensure()
        t = self._t(now)
        params = (*job.params(t, self._t(job.run_at)), self._t(soonest))
        if replace:
            return self._keyed(job, params, self.sql.replace, self.sql.replace_returning)
        return self._keyed(job, params, self.sql.upsert, self.sql.upsert_returning)

    def _keyed(self, job: NewJob, params: Sequence[Any], sql: str, returning: str) -> Job:
        """Run the INSERT of a keyed row (``returning``: its RETURNING form)
        and return the row that holds the key afterwards."""

        def go() -> Any:
            if self.dialect.returning:
                return self._execute(returning, params).fetchone()
            with self.connection.transaction():
                self._execute(sql, params)
                return self._execute(self.sql.select_by_key, (job.key,)).fetchone()

        row = self._run(go)
        self._inserted()
        return rows.read_lenient(row)


def _one_shape(jobs: Sequence[NewJob]) -> bool:
    """True when the jobs differ only in their handlers and carry no key,
    interval or concurrency key (one call's bulk)."""
    first = jobs[0]
    if first.key is not None or first.reoccur_in is not None:
        return False
    if first.concurrency_key is not None:
        return False
    shape = _SHAPE(first)
    return all(map(shape.__eq__, map(_SHAPE, jobs)))
