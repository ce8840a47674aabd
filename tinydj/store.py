"""The ``delayed_jobs`` table of one database, behind one small ``Store`` class.

The store executes; it does not write SQL. The statements of each dialect are
rendered once by ``sql.Statements``, the schema is ``schema.Schema``'s, rows
are read by ``rows.read`` (so that a row written by another program fails on
its own instead of ending a worker), and ``connection.Connection`` retries a
busy SQLite and reconnects after a lost connection.

Times travel as naive UTC: ISO text on SQLite (the column type is DATETIME,
which SQLite stores as text and compares as text, so one fixed format keeps the
order right), ``datetime`` objects elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import peewee

from . import rows
from .connection import SQLITE_BUSY_BUDGET, Connection
from .doorbell import Doorbell
from .inserting import Inserts
from .job import Job, NewJob
from .listener import Listener
from .models import make_model
from .reserving import Reservations
from .schema import Schema
from .sql import (
    MYSQL,
    PLAIN_COLUMNS,
    SQLITE,
    Dialect,
    Statements,
    chunks,
    dialect_for,
)
from .states import StateQueries

__all__ = ["SQLITE_BUSY_BUDGET", "Dialect", "Listener", "NewJob", "Store", "dialect_for"]

log = logging.getLogger(__name__)

#: The columns in ``COLUMNS`` order, as SQL (kept for scripts that used it).
_COLS = PLAIN_COLUMNS


class Store:
    """The ``delayed_jobs`` table of one database.

    Every method is one statement or one short transaction. Methods that
    finish a job (``ack``, ``finish``) check ``locked_by`` so that a worker that
    lost its lease cannot overwrite the work of the worker that took over.
    """

    def __init__(self, database: peewee.Database, *, serialize: bool = False) -> None:
        self.db = database
        self.dialect = dialect_for(database)
        self.sql = Statements(self.dialect)
        self.model = make_model(
            database,
            partial_indexes=self.dialect.partial_indexes,
            micro_datetimes=self.dialect is MYSQL,
            autoincrement=self.dialect is SQLITE,
        )
        # An in-memory SQLite database is one connection shared by all
        # threads (``serialize``): its users take turns.
        self.connection = Connection(database, self.dialect, shared=serialize)
        self._schema = Schema(self.connection, self.model)
        self._run = self.connection.run
        #: Statements written with ``?`` and ``"`` in this dialect; a time as bound.
        self._q = self.dialect.render
        self._t = self.dialect.bind_time
        self._execute = self.connection.execute
        self.doorbell = Doorbell()
        #: The command line's by-state queries (``tinydj.states``).
        self.states = StateQueries(self.connection, self._schema)
        self._reservations = Reservations(self.connection, self.sql)
        self._inserts = Inserts(self.connection, self.sql, self._schema, self._inserted)

    # -- wake-up of workers in this process ----------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a job inserted here becomes visible."""
        self.doorbell.add(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self.doorbell.remove(callback)

    def _inserted(self) -> None:
        self.doorbell.ring_after_commit(self.db)

    # -- plumbing ----------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the table and its indexes unless they exist (once per Store)."""
        self._schema.ensure()

    @property
    def schema_ready(self) -> bool:
        """True once the table is known to exist and be current."""
        return self._schema._ready

    @schema_ready.setter
    def schema_ready(self, ready: bool) -> None:
        # Integrations whose own migrations made the table (Django) skip the
        # check; False makes the next call check again.
        self._schema._ready = ready

    def listener(self) -> Listener | None:
        """A LISTEN connection that wakes idle workers (Postgres), else None."""
        return Listener(self.db, self.dialect.channel) if self.dialect.channel else None

    # -- enqueue (``inserting.Inserts``) -------------------------------------

    def insert(self, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        """Insert new jobs in one transaction; return them with their ids."""
        return self._inserts.insert(jobs, now)

    def insert_unique(self, job: NewJob, now: datetime) -> Job:
        """Insert a job with a unique ``key``, or return the row holding that key.

        One INSERT ... ON CONFLICT (Postgres, SQLite) or ON DUPLICATE KEY
        (MySQL): the unique index on ``key`` decides, whatever the number of
        processes enqueueing at once. The existing row is returned unchanged.
        """
        return self._inserts.insert_unique(job, now)

    def upsert(
        self, job: NewJob, now: datetime, soonest: datetime, *, replace: bool = False
    ) -> Job:
        """Insert a keyed (recurring) row, or update the row with that key.

        An update keeps the row's schedule, except that a changed interval
        brings ``run_at`` forward to ``soonest`` when that is earlier (with
        ``replace``, a changed spec sets ``run_at`` to ``soonest``: a new cron
        spec's first fire time).
        """
        return self._inserts.upsert(job, now, soonest, replace=replace)

    # -- the worker's side -------------------------------------------------

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
        """Lock up to ``limit`` due jobs for ``worker``, in run order.

        A job is due when ``run_at <= now``, it has not failed, and nobody
        holds it, or its holder's lease is older than ``expired_before`` (that
        worker died). ``done`` are ids this worker finished: they are deleted
        in the same transaction, so a worker that runs one job after another
        commits once per job. A row that cannot be read (written by another
        program) is failed here, with a ``last_error`` naming the column, and
        left out; the rest of the batch is returned. Jobs of the queues in
        ``exclude`` (paused ones) are not taken.

        Jobs with a concurrency limit are only taken through ``limited``
        (``limits.Gate.take``): called in the same transaction with the
        batch's size, it returns the ids of those that may start; the rest of
        the batch is filled with jobs without limits.
        """
        return self._reservations.reserve(
            worker, now, expired_before, queues, limit, done, exclude=exclude, limited=limited
        )

    def ack(self, worker: str, ids: Sequence[int]) -> int:
        """Delete finished jobs that ``worker`` still holds; return how many."""
        return self._reservations.ack(worker, ids)

    def finish(
        self,
        job_id: int,
        worker: str,
        now: datetime,
        *,
        attempts: int,
        last_error: str | None,
        run_at: datetime,
        failed_at: datetime | None = None,
        last_run_at: datetime | None = None,
        interruptions: int = 0,
    ) -> bool:
        """Unlock a job after a run that keeps its row.

        Used for a retry later (new ``run_at``), a permanent failure
        (``failed_at``) and a recurring run (next ``run_at``, ``last_run_at``).
        Returns False when ``worker`` no longer held the job.
        """
        params = (
            self._t(failed_at),
            attempts,
            last_error,
            self._t(run_at),
            self._t(failed_at),
            self._t(last_run_at),
            interruptions,
            self._t(now),
            job_id,
            worker,
        )
        updated = self._run(lambda: self._execute(self.sql.finish, params).rowcount)
        if not updated:
            log.warning(
                "job %s was no longer locked by %s (lease lost); its outcome was not recorded",
                job_id,
                worker,
                extra={"action": "lease_lost"},
            )
        return bool(updated)

    def _each_chunk(self, ids: Sequence[int], statement: Callable[[int], str], *head: Any) -> int:
        def go() -> int:
            count = 0
            for part in chunks(ids):
                count += self._execute(statement(len(part)), (*head, *part)).rowcount
            return count

        return int(self._run(go))

    def renew(self, worker: str, now: datetime, ids: Sequence[int]) -> int:
        """Refresh the leases of the jobs ``ids`` that ``worker`` holds; return how many."""
        return self._each_chunk(ids, self.sql.renew, self._t(now), worker)

    def cancel_requests(self, worker: str, ids: Sequence[int] | None = None) -> set[int]:
        """The ids held by ``worker`` (of ``ids``: by primary key; None: a scan
        of the table) whose cancellation was requested."""
        if ids is None:
            sql = self.sql.cancel_requested_all
            found = self._run(lambda: self._execute(sql, (worker,)).fetchall())
            return {int(r[0]) for r in found}

        def go() -> set[int]:
            requested: set[int] = set()
            for part in chunks(ids):
                sql = self.sql.cancel_requested(len(part))
                requested.update(int(r[0]) for r in self._execute(sql, (worker, *part)))
            return requested

        return self._run(go) if ids else set()

    def cancel(self, job_id: int, now: datetime, expired_before: datetime) -> str:
        """Cancel a job: ``"deleted"`` (nobody ran it: its row is gone),
        ``"requested"`` (a worker runs it: it is asked to stop), ``"failed"``
        (it failed already: kept, see ``delete``) or ``"unknown"`` (no such job)."""
        self.ensure_schema()
        t = self._t(now)
        expired = self._t(expired_before)

        def go() -> str:
            with self.connection.transaction():
                if self._execute(self.sql.cancel_waiting, (job_id, expired)).rowcount:
                    return "deleted"
                if self._execute(self.sql.cancel_running, (t, job_id)).rowcount:
                    return "requested"
                # (MySQL counts an UPDATE that changes nothing as 0 rows: a
                # second request for a running job lands here.)
                row = self._execute(self.sql.get, (job_id,)).fetchone()
                if row is None:
                    return "unknown"
                job = rows.read_lenient(row)
                return "failed" if job.failed else "requested"

        return str(self._run(go))

    def release(self, worker: str, ids: Sequence[int] | None = None) -> int:
        """Unlock jobs held by ``worker`` (all of them, a scan of the table; or
        just ``ids``, by primary key)."""
        if ids is None:
            return int(self._run(lambda: self._execute(self.sql.release_all, (worker,)).rowcount))
        return self._each_chunk(ids, self.sql.release, worker) if ids else 0

    def data_version(self) -> int | None:
        """SQLite's ``PRAGMA data_version`` on this thread's connection.

        It changes whenever another connection (any thread or process) commits
        to the file, so an idle worker can notice a new job cheaply. None on
        other databases.
        """
        return self.connection.data_version() if self.dialect is SQLITE else None

    # -- inspection and administration --------------------------------------

    def get(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        self.ensure_schema()
        row = self._run(lambda: self._execute(self.sql.get, (job_id,)).fetchone())
        return rows.read_lenient(row) if row else None

    def select(
        self,
        *,
        failed: bool | None = None,
        queue: str | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs in id order, optionally only failed / not failed / of a queue."""
        self.ensure_schema()
        sql = self.sql.select(failed, queue is not None, key is not None, limit is not None)
        params = [p for p in (queue, key, limit) if p is not None]
        found = self._run(lambda: self._execute(sql, params).fetchall())
        return [rows.read_lenient(r) for r in found]

    def recurring_keys(self) -> set[str]:
        """The keys of the recurring rows (``reoccur_in`` set)."""
        self.ensure_schema()
        sql = 'SELECT "key" FROM delayed_jobs WHERE reoccur_in IS NOT NULL AND "key" IS NOT NULL'
        rows = self._run(lambda: self.query(sql).fetchall())
        return {str(r[0]) for r in rows}

    def counts(self, now: datetime) -> dict[str, int]:
        """How many jobs are ready, scheduled for later, running and failed."""
        self.ensure_schema()
        t = self._t(now)
        row = self._run(lambda: self._execute(self.sql.counts, (t, t)).fetchone())
        return dict(zip(("ready", "scheduled", "locked", "failed"), map(int, row), strict=True))

    def retry(self, job_id: int, now: datetime) -> bool:
        """Make a failed job due again now, with its attempts reset."""
        self.ensure_schema()
        t = self._t(now)
        return bool(self._run(lambda: self._execute(self.sql.retry, (t, t, job_id)).rowcount))

    def delete(self, job_id: int) -> bool:
        """Delete one job; True if it existed."""
        self.ensure_schema()
        return bool(self._run(lambda: self._execute(self.sql.delete, (job_id,)).rowcount))

    def clear(self) -> int:
        """Delete every job, failed, locked and recurring ones included."""
        self.ensure_schema()
        return int(self._run(lambda: self._execute(self.sql.clear).rowcount))

    def query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a statement written in the portable form (``?``, ``"``).

        For the operator's queries (``states``, ``control``, the dashboard):
        each text is rendered for this dialect once. The hot path uses the
        statements of ``self.sql``, rendered when the store was made.
        """
        return self.connection.query(sql, params)

    def close(self) -> None:
        """Close this thread's connection unless a transaction is open on it.

        An in-memory SQLite database stays open as long as its configuration:
        closing its one connection would delete it.
        """
        self.connection.close()
