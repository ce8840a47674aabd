"""The worker's reservation: lock the next due jobs, delete the finished ones.

``Reservations`` is the part of a ``Store`` on every worker's hot path
(``Store.reserve`` and ``Store.ack`` call it): one statement or one short
transaction per batch, in the shape each dialect answers fastest (see
docs/design.md, "The hot path"): SQLite one ``UPDATE ... RETURNING`` in
``BEGIN IMMEDIATE``, after the DELETE of the finished batch; PostgreSQL both
in one statement in autocommit (while no concurrency limit exists); MySQL a
``MIN(priority)`` seek and a locking SELECT per priority, an UPDATE by id and
a SELECT of the rows. A reserved row that cannot be read is failed here, alone.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from . import rows
from .connection import Connection
from .job import Job
from .sql import CHUNK, MYSQL, POSTGRES, Statements, chunks

__all__ = ["Reservations"]

log = logging.getLogger("tinydj.store")
_RUN_ORDER = operator.attrgetter("priority", "run_at", "id")
_BY_RUN_AT = operator.itemgetter(1, 0)


class Reservations:
    """Reserving and acknowledging the jobs of one store's table."""

    def __init__(self, connection: Connection, sql: Statements) -> None:
        self.sql, self.connection = sql, connection
        self.dialect, self.db = connection.dialect, connection.db
        self._run, self._execute = connection.run, connection.execute
        self._t = connection.dialect.bind_time

    def reserve(
        self,
        worker: str,
        now: datetime,
        expired_before: datetime,
        queues: Sequence[str] | None = None,
        limit: int = 1,
        done: Sequence[int] = (),
        *,
        exclude: Sequence[str] = (),
        limited: Callable[[int], list[int]] | None = None,
    ) -> list[Job]:
        """``Store.reserve`` (see there)."""
        qs = list(queues or ())
        t_now, t_expired = self._t(now), self._t(expired_before)

        def take(n: int) -> list[Any]:
            """Lock due jobs: rows of ``RESERVED_COLUMNS``."""
            if self.dialect.returning:
                sql = self.sql.reserve(len(qs), len(exclude))
                params = self.sql.reserve_params(worker, t_now, t_expired, qs, exclude, n)
                return list(self._execute(sql, params).fetchall())
            ids = self._due_ids((t_now, t_expired), qs, exclude, n)
            return self._lock(worker, t_now, ids, slim=True)

        def go() -> tuple[list[Any], list[Any]]:
            if not done and self.dialect.returning and limited is None:
                return [], take(limit)  # (the pickup after a NOTIFY: a simpler statement)
            if self.dialect is POSTGRES and limited is None:
                return [], self._ack_and_take(worker, done, t_now, t_expired, qs, exclude, limit)
            if limited is not None and self.dialect is MYSQL:
                self._read_committed()  # before the transaction begins
            with self.connection.transaction():
                if limited is not None and self.dialect is POSTGRES:
                    self._read_committed()  # first in the transaction
                if done:
                    self._ack(worker, done)
                picked = self._lock(worker, t_now, limited(limit)) if limited else []
                return picked, take(limit - len(picked)) if len(picked) < limit else []

        full, slim = self._run(go)
        jobs = self._readable(full, worker, now) + self._readable(slim, worker, now, slim=True)
        jobs.sort(key=_RUN_ORDER)
        return jobs

    def _due_ids(
        self, due: tuple[Any, Any], queues: Sequence[str], exclude: Sequence[str], n: int
    ) -> list[int]:
        """Up to ``n`` due ids in run order, one priority at a time (MySQL:
        see ``Statements.next_priority``); each step is an index seek, so the
        cost does not grow with the rows scheduled for later. ``due``: (now,
        expired_before), as bound."""
        ids: list[int] = []
        priority = None
        while len(ids) < n:
            priority = self._next_priority(queues, priority)
            if priority is None:
                return ids
            ids += self._due_of_priority(due, queues, exclude, priority, n - len(ids))
        return ids

    def _due_of_priority(
        self,
        due: tuple[Any, Any],
        queues: Sequence[str],
        exclude: Sequence[str],
        priority: int,
        n: int,
    ) -> list[int]:
        """Up to ``n`` due ids of one priority in run order, locked: one seek,
        or for several queues a seek per queue, merged (the rows a merge
        drops stay locked until the reservation commits, unchanged)."""
        groups = [queues] if len(queues) <= 1 else [[q] for q in queues]
        found: list[Any] = []
        for group in groups:
            sql = self.sql.due_at(len(group), len(exclude))
            found += self._execute(sql, (*due, *group, *exclude, priority, n)).fetchall()
        if len(groups) > 1:
            found.sort(key=_BY_RUN_AT)
        return [r[0] for r in found[:n]]

    def _next_priority(self, queues: Sequence[str], above: int | None) -> int | None:
        """The lowest priority of a ready row (of ``queues``) above ``above``."""
        tail = () if above is None else (above,)
        if not queues:
            row = self._execute(self.sql.next_priority(False, bool(tail)), tail).fetchone()
            return None if row[0] is None else int(row[0])
        sql = self.sql.next_priority(True, bool(tail))
        found = [self._execute(sql, (q, *tail)).fetchone()[0] for q in queues]
        return min((int(p) for p in found if p is not None), default=None)

    def _ack_and_take(
        self,
        worker: str,
        done: Sequence[int],
        t_now: Any,
        t_expired: Any,
        queues: Sequence[str],
        exclude: Sequence[str],
        limit: int,
    ) -> list[Any]:
        """Postgres without a concurrency gate: delete the finished jobs and
        lock the next ones in one statement, outside any transaction (one
        round trip and one commit per batch); rows of ``RESERVED_COLUMNS``.

        The ids travel as one array literal: the server parses ``'{1,2}'``
        in one step, where ``ARRAY[1, 2]`` (a driver's list) is an expression
        per element that the planner transforms one by one (with a batch of
        128 that doubled the time to plan the statement)."""
        ids = "{" + ",".join(str(int(i)) for i in done) + "}"
        params = self.sql.reserve_params(worker, t_now, t_expired, queues, exclude, limit, ids)
        found = self._execute(self.sql.reserve_acking(len(queues), len(exclude)), params).fetchall()
        self._count_acked(worker, len(done), found[0][0] if found else 0)
        return [row[1:] for row in found if row[1] is not None]

    def _lock(
        self, worker: str, t_now: Any, ids: Sequence[int], *, slim: bool = False
    ) -> list[Any]:
        """Lock jobs chosen by id and return their rows (every column, or
        ``RESERVED_COLUMNS``: ``slim``)."""
        if not ids:
            return []
        if self.dialect.returning:
            sql = self.sql.lock_ids_returning(len(ids))
            return list(self._execute(sql, (t_now, worker, *ids)).fetchall())
        self._execute(self.sql.lock_ids(len(ids)), (t_now, worker, *ids))
        return list(self._execute(self.sql.select_ids(len(ids), slim), ids).fetchall())

    def _read_committed(self) -> None:
        """Make this (Postgres) or the next (MySQL) transaction READ COMMITTED:
        the concurrency gate counts running jobs with fresh reads after it
        took its lock (MySQL's default is REPEATABLE READ; a Postgres server
        may be set to it). SQLite serializes writers."""
        depth = self.db.transaction_depth()
        if (self.dialect is POSTGRES and depth == 1) or (self.dialect is MYSQL and not depth):
            self._execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")

    def _readable(
        self, raw: Sequence[Sequence[Any]], worker: str, now: datetime, *, slim: bool = False
    ) -> list[Job]:
        """The jobs of reserved rows (``slim``: of ``RESERVED_COLUMNS``); rows
        that cannot be read are failed."""
        jobs: list[Job] = []
        for row in raw:
            try:
                jobs.append(rows.read_reserved(row, worker, now) if slim else rows.read(row))
            except rows.UnreadableRow as bad:
                self._fail_unreadable(row[0], bad, worker, now)
        return jobs

    def _fail_unreadable(
        self, job_id: Any, bad: rows.UnreadableRow, worker: str, now: datetime
    ) -> None:
        log.error(
            "job %s FAILED without running: %s", job_id, bad.message, extra={"action": "bad_row"}
        )
        t = self._t(now)
        params = (t, bad.message, t, job_id, worker)
        self._run(lambda: self._execute(self.sql.fail_unreadable, params))

    def _ack(self, worker: str, ids: Sequence[int]) -> int:
        deleted = 0
        for part in chunks(ids):
            deleted += self._execute(self.sql.ack(len(part)), (worker, *part)).rowcount
        self._count_acked(worker, len(ids), deleted)
        return deleted

    def _count_acked(self, worker: str, finished: int, deleted: int) -> None:
        if deleted != finished:
            log.warning(
                "%d finished job(s) were no longer locked by %s (lease lost); "
                "another worker may have run them again",
                finished - deleted,
                worker,
                extra={"action": "lease_lost"},
            )

    def ack(self, worker: str, ids: Sequence[int]) -> int:
        """Delete finished jobs that ``worker`` still holds; return how many."""
        if not ids:
            return 0

        def go() -> int:
            if len(ids) <= CHUNK:
                return self._ack(worker, ids)
            with self.connection.transaction():
                return self._ack(worker, ids)

        return self._run(go)
