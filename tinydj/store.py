"""Every SQL statement tinydj runs, behind one small ``Store`` class.

Nothing outside this module builds a query. Databases differ only in the
``Dialect`` data (parameter style, how a writer takes its lock, whether rows
other workers hold are skipped), not in the control flow of the methods.

Times travel as naive UTC: ISO text on SQLite (the column type is DATETIME,
which SQLite stores as text and compares as text, so one fixed format keeps the
order right), ``datetime`` objects elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import peewee

from .errors import DatabaseBusy
from .job import COLUMNS, Job
from .models import TABLE, make_model

__all__ = ["SQLITE_BUSY_BUDGET", "Dialect", "Listener", "NewJob", "Store", "dialect_for"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long (seconds) tinydj keeps retrying a write that SQLite refuses with
#: "database is locked" after its own busy timeout, before raising DatabaseBusy.
SQLITE_BUSY_BUDGET = 60.0
#: Longest IN (...) list sent in one statement.
_CHUNK = 500


@dataclass(frozen=True)
class Dialect:
    """What differs between databases, as data."""

    name: str
    #: DB-API parameter marker.
    param: str
    #: ``BEGIN <lock_type>`` for transactions that write (SQLite: IMMEDIATE,
    #: so that the write lock is taken before anything is read).
    lock_type: str | None
    #: Appended to the reserve sub-select: rows other workers are locking
    #: right now are skipped instead of waited for.
    skip_locked: str
    #: Scalar minimum of two values.
    least: str
    #: Datetimes are bound and read as ISO text.
    text_times: bool
    #: Indexes may carry a WHERE clause.
    partial_indexes: bool
    #: LISTEN/NOTIFY channel that an insert trigger signals (None: no NOTIFY).
    channel: str | None = None
    #: Identifier quote character.
    quote: str = '"'
    #: UPDATE and INSERT can return the rows they wrote.
    returning: bool = True
    #: Text concatenation of SQL expressions.
    concat: str = "({})"
    concat_sep: str = " || "
    #: Start of an upsert on the unique key, and how it names the new values.
    on_conflict: str = 'ON CONFLICT ("key") WHERE "key" IS NOT NULL DO UPDATE SET'
    excluded: str = "excluded.{}"
    #: How an upsert names the existing row's columns.
    existing: str = "delayed_jobs.{}"


SQLITE = Dialect("sqlite", "?", "IMMEDIATE", "", "MIN", True, True)
POSTGRES = Dialect(
    "postgresql", "%s", None, " FOR UPDATE SKIP LOCKED", "LEAST", False, True, "tinydj_jobs"
)
#: MySQL 8 / MariaDB 10.6+: SKIP LOCKED, but no UPDATE ... RETURNING, so a
#: reservation is a locking SELECT and an UPDATE in one transaction.
MYSQL = Dialect(
    "mysql",
    "%s",
    None,
    " FOR UPDATE SKIP LOCKED",
    "LEAST",
    False,
    False,
    None,
    quote="`",
    returning=False,
    concat="CONCAT({})",
    concat_sep=", ",
    on_conflict="ON DUPLICATE KEY UPDATE",
    excluded="VALUES({})",
    existing="{}",
)

# Postgres: every INSERT statement into delayed_jobs notifies listening
# workers when its transaction commits (a statement trigger, so a bulk insert
# sends one notification). Rows written by other programs wake workers too.
# The payload names the table's schema: the channel is database-wide, and
# workers of other schemas ignore it.
_PG_NOTIFY = (
    "CREATE OR REPLACE FUNCTION tinydj_notify() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_notify('tinydj_jobs', TG_TABLE_SCHEMA); RETURN NULL; END $$"
)
_PG_TRIGGER = (
    f"CREATE OR REPLACE TRIGGER tinydj_notify AFTER INSERT ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION tinydj_notify()"
)
# Serializes schema creation across processes (CREATE TABLE IF NOT EXISTS
# races on Postgres' catalog otherwise).
_PG_SCHEMA_LOCK = 7_402_157


def dialect_for(database: peewee.Database) -> Dialect:
    """Pick the dialect of a peewee database."""
    if isinstance(database, peewee.SqliteDatabase):
        return SQLITE
    if isinstance(database, peewee.PostgresqlDatabase):
        return POSTGRES
    if isinstance(database, peewee.MySQLDatabase):
        return MYSQL
    raise TypeError(f"tinydj does not support {type(database).__name__} yet")


@dataclass(frozen=True, slots=True)
class NewJob:
    """A row about to be inserted."""

    handler: str
    queue: str
    priority: int
    run_at: datetime
    key: str | None = None
    reoccur_in: str | None = None


_COLS = ", ".join(f'"{c}"' for c in COLUMNS)
_INSERT_COLS = (
    '(priority, attempts, handler, run_at, queue, "key", reoccur_in, created_at, updated_at)'
)
_INTERRUPTED = (
    "'Interrupted: worker '",
    "locked_by",
    "' stopped renewing its lease while running this job (it died or lost the database); "
    "running it again, not counted as an attempt.'",
)


def _in_list(n: int) -> str:
    return "(" + ", ".join(["?"] * n) + ")"


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _is_busy(exc: BaseException) -> bool:
    """A lock conflict that goes away when the statement is tried again."""
    text = str(exc).lower()
    return any(
        s in text
        for s in ("database is locked", "database is busy", "deadlock", "lock wait timeout")
    )


class Store:
    """The ``delayed_jobs`` table of one database.

    Every method is one statement or one short transaction. Methods that
    finish a job (``ack``, ``finish``) check ``locked_by`` so that a worker that
    lost its lease cannot overwrite the work of the worker that took over.
    """

    def __init__(self, database: peewee.Database, *, serialize: bool = False) -> None:
        self.db = database
        self.dialect = dialect_for(database)
        self.model = make_model(
            database,
            partial_indexes=self.dialect.partial_indexes,
            micro_datetimes=self.dialect is MYSQL,
            autoincrement=self.dialect is SQLITE,
        )
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        # An in-memory SQLite database is one connection shared by all
        # threads; its users take turns.
        self._access: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if serialize else contextlib.nullcontext()
        )
        self._sql_cache: dict[tuple[str, int], object] = {}
        self._listeners: list[Callable[[], None]] = []

    # -- wake-up of workers in this process ----------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a job inserted here becomes visible."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _inserted(self) -> None:
        # After the commit: a job enqueued inside the application's
        # transaction wakes the workers only once it can be seen.
        if self._listeners:
            try:
                self.db.after_commit(self._wake)
            except ValueError:  # peewee's manual-commit mode has no hooks
                self._wake()

    def _wake(self) -> None:
        for callback in list(self._listeners):
            callback()

    # -- plumbing ----------------------------------------------------------

    def _q(self, sql: str) -> str:
        """Translate a statement written with ``?`` markers and ``"`` quotes.

        (tinydj's statements put string literals in single quotes only.)
        """
        if self.dialect.param != "?":
            sql = sql.replace("?", self.dialect.param)
        if self.dialect.quote != '"':
            sql = sql.replace('"', self.dialect.quote)
        return sql

    def _t(self, value: datetime | None) -> Any:
        if value is None or not self.dialect.text_times:
            return value
        return value.isoformat(" ", "microseconds")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute_sql(self._q(sql), params)

    def _transaction(self) -> Any:
        if self.dialect.lock_type:
            return self.db.atomic(lock_type=self.dialect.lock_type)
        return self.db.atomic()

    def _run(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry it while SQLite says "database is locked".

        Inside the caller's own transaction nothing is retried: the
        transaction as a whole would have to be, and that is the caller's.
        """
        delay = 0.002
        deadline: float | None = None
        while True:
            try:
                with self._access:
                    return fn()
            except peewee.OperationalError as exc:
                if "no transaction is active" in str(exc):
                    # SQLite already rolled back (SQLITE_FULL, IOERR...): peewee's
                    # ROLLBACK then fails and hides the real error.
                    cause: BaseException | None = exc.__context__
                    while cause is not None and "no transaction is active" in str(cause):
                        cause = cause.__context__
                    if isinstance(cause, peewee.DatabaseError):
                        raise cause from None
                if not _is_busy(exc) or self.db.in_transaction():
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + SQLITE_BUSY_BUDGET
                elif now > deadline:
                    raise DatabaseBusy(
                        f"SQLite stayed locked for {SQLITE_BUSY_BUDGET:.0f} s: {exc}"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.1)

    # -- schema ------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the table and its indexes unless they exist (once per Store)."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            self._run(self._create_schema)
            self._run(self._migrate)
            # Created inside the caller's transaction, the table may still be
            # rolled back with it: check again next time.
            self._schema_ready = not self.db.in_transaction()

    def _create_schema(self) -> None:
        if self.dialect is SQLITE:
            if self.db.database != ":memory:":
                self.db.execute_sql("PRAGMA journal_mode=wal")
            self.db.create_tables([self.model], safe=True)
            return
        if self.dialect is MYSQL:
            # DDL commits implicitly on MySQL: run it on a connection of its
            # own, so that the caller's open transaction is left alone.
            with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
                conn = self.db._connect()  # type: ignore[attr-defined]
            try:
                cursor = conn.cursor()
                cursor.execute("SELECT GET_LOCK('tinydj_schema', 60)")
                cursor.execute(f"SHOW TABLES LIKE '{TABLE}'")
                if not cursor.fetchall():
                    schema = self.model._schema  # type: ignore[attr-defined]
                    for ctx in [schema._create_table(safe=True), *schema._create_indexes(False)]:
                        cursor.execute(*ctx.query())
                cursor.execute("SELECT RELEASE_LOCK('tinydj_schema')")
            finally:
                conn.close()
            return
        with self.db.atomic():
            self._execute("SELECT pg_advisory_xact_lock(?)", (_PG_SCHEMA_LOCK,))
            self.db.create_tables([self.model], safe=True)
            self._execute(_PG_NOTIFY)
            self._execute(_PG_TRIGGER)

    def _migrate(self) -> None:
        """Bring a table made by an older tinydj up to date (adds columns)."""
        have = {c.name for c in self.db.get_columns(TABLE)}
        if "interruptions" not in have:
            self._execute(
                f"ALTER TABLE {TABLE} ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0"
            )

    def listener(self) -> Listener | None:
        """A LISTEN connection that wakes idle workers (Postgres), else None."""
        return Listener(self.db, self.dialect.channel) if self.dialect.channel else None

    # -- enqueue -----------------------------------------------------------

    def insert(self, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        """Insert new jobs in one transaction; return them with their ids."""
        self.ensure_schema()
        t = self._t(now)
        params = [
            (
                j.priority,
                0,
                j.handler,
                t if j.run_at is now else self._t(j.run_at),
                j.queue,
                j.key,
                j.reoccur_in,
                t,
                t,
            )
            for j in jobs
        ]
        sql = f"INSERT INTO {TABLE} {_INSERT_COLS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"

        def one() -> list[int]:
            if self.dialect.returning and not self.dialect.text_times:
                return [self._execute(sql + " RETURNING id", params[0]).fetchone()[0]]
            return [self._execute(sql, params[0]).lastrowid]

        def many() -> list[int]:
            with self._transaction():
                if self.dialect.text_times:
                    # Under the write lock rowids are handed out in sequence.
                    cursor = self.db.cursor()
                    with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
                        cursor.executemany(self._q(sql), params)
                    last = self._execute("SELECT last_insert_rowid()").fetchone()[0]
                    return list(range(last - len(params) + 1, last + 1))
                ids: list[int] = []
                if not self.dialect.returning:
                    return [self._execute(sql, p).lastrowid for p in params]
                row = "(" + ", ".join(["?"] * 9) + ")"
                for i in range(0, len(params), 100):
                    part = params[i : i + 100]
                    values = ", ".join([row] * len(part))
                    flat = [v for p in part for v in p]
                    stmt = f"INSERT INTO {TABLE} {_INSERT_COLS} VALUES {values} RETURNING id"
                    ids.extend(r[0] for r in self._execute(stmt, flat).fetchall())
                return ids

        if not jobs:
            return []
        ids = self._run(one if len(jobs) == 1 else many)
        self._inserted()
        return [
            Job(
                i,
                j.priority,
                0,
                j.handler,
                None,
                j.run_at,
                None,
                None,
                None,
                j.reoccur_in,
                None,
                now,
                now,
                j.queue,
                j.key,
            )
            for i, j in zip(ids, jobs, strict=True)
        ]

    def upsert(self, job: NewJob, now: datetime, soonest: datetime) -> Job:
        """Insert a keyed (recurring) row, or update the row with that key.

        An update keeps the row's schedule, except that a changed interval
        brings ``run_at`` forward to ``soonest`` when that is earlier.
        """
        self.ensure_schema()
        t = self._t(now)
        d = self.dialect
        changed = f"{d.existing.format('reoccur_in')} = {d.excluded.format('reoccur_in')}"
        sets = [
            # first: MySQL evaluates assignments in order, with updated values
            f"run_at = CASE WHEN {changed} THEN {d.existing.format('run_at')} "
            f"ELSE {d.least}({d.existing.format('run_at')}, ?) END",
            *(
                f"{c} = {d.excluded.format(c)}"
                for c in ("handler", "priority", "queue", "reoccur_in", "updated_at")
            ),
        ]
        sql = (
            f"INSERT INTO {TABLE} {_INSERT_COLS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"{d.on_conflict} {', '.join(sets)}"
        )
        params = (
            job.priority,
            0,
            job.handler,
            self._t(job.run_at),
            job.queue,
            job.key,
            job.reoccur_in,
            t,
            t,
            self._t(soonest),
        )

        def go() -> Any:
            if d.returning:
                return self._execute(f"{sql} RETURNING {_COLS}", params).fetchone()
            with self._transaction():
                self._execute(sql, params)
                return self._execute(
                    f'SELECT {_COLS} FROM {TABLE} WHERE "key" = ?', (job.key,)
                ).fetchone()

        row = self._run(go)
        self._inserted()
        return Job.from_row(row)

    # -- the worker's side -------------------------------------------------

    def _reserve_sql(self, queues: int) -> tuple[str, str]:
        """(the sub-select of due ids, the UPDATE that locks them)."""
        cache_key = ("reserve", queues)
        sql = self._sql_cache.get(cache_key)
        if sql is None:
            d = self.dialect
            queue_clause = f" AND queue IN {_in_list(queues)}" if queues else ""
            due = (
                f"SELECT id FROM {TABLE} WHERE failed_at IS NULL AND run_at <= ? "
                f"AND (locked_at IS NULL OR locked_at < ?){queue_clause} "
                f"ORDER BY priority, run_at, id LIMIT ?{d.skip_locked}"
            )
            interrupted = d.concat.format(d.concat_sep.join(_INTERRUPTED))
            # last_error first: MySQL's SET sees the values assigned before it.
            lock = (
                f"UPDATE {TABLE} SET last_error = CASE WHEN locked_at IS NULL THEN last_error "
                f"ELSE {interrupted} END, interruptions = CASE WHEN locked_at IS NULL "
                "THEN interruptions ELSE interruptions + 1 END, locked_at = ?, locked_by = ? "
                "WHERE id IN "
            )
            sql = self._sql_cache[cache_key] = (due, lock)
        return sql  # type: ignore[return-value]

    def reserve(
        self,
        worker: str,
        now: datetime,
        expired_before: datetime,
        queues: Sequence[str] | None = None,
        limit: int = 1,
        done: Sequence[int] = (),
    ) -> list[Job]:
        """Lock up to ``limit`` due jobs for ``worker``, in run order.

        A job is due when ``run_at <= now``, it has not failed, and nobody
        holds it, or its holder's lease is older than ``expired_before`` (that
        worker died). ``done`` are ids this worker finished: they are deleted
        in the same transaction, so a worker that runs one job after another
        commits once per job.
        """
        qs = list(queues or ())
        due, lock = self._reserve_sql(len(qs))
        t_now = self._t(now)
        due_params = (t_now, self._t(expired_before), *qs, limit)

        def take() -> list[Any]:
            if self.dialect.returning:
                sql = f"{lock}({due}) RETURNING {_COLS}"
                return list(self._execute(sql, (t_now, worker, *due_params)).fetchall())
            ids = [r[0] for r in self._execute(due, due_params).fetchall()]
            if not ids:
                return []
            self._execute(f"{lock}{_in_list(len(ids))}", (t_now, worker, *ids))
            sql = f"SELECT {_COLS} FROM {TABLE} WHERE id IN {_in_list(len(ids))}"
            return list(self._execute(sql, ids).fetchall())

        def go() -> list[Any]:
            if not done and self.dialect.returning:
                return take()
            with self._transaction():
                if done:
                    self._ack(worker, done)
                return take()

        jobs = [Job.from_row(r) for r in self._run(go)]
        jobs.sort(key=lambda j: (j.priority, j.run_at, j.id))
        return jobs

    def _ack(self, worker: str, ids: Sequence[int]) -> int:
        deleted = 0
        for part in _chunks(ids):
            sql = f"DELETE FROM {TABLE} WHERE locked_by = ? AND id IN {_in_list(len(part))}"
            deleted += self._execute(sql, (worker, *part)).rowcount
        if deleted != len(ids):
            log.warning(
                "%d finished job(s) were no longer locked by %s (lease lost); "
                "another worker may have run them again",
                len(ids) - deleted,
                worker,
                extra={"action": "lease_lost"},
            )
        return deleted

    def ack(self, worker: str, ids: Sequence[int]) -> int:
        """Delete finished jobs that ``worker`` still holds; return how many."""
        if not ids:
            return 0

        def go() -> int:
            if len(ids) <= _CHUNK:
                return self._ack(worker, ids)
            with self._transaction():
                return self._ack(worker, ids)

        return self._run(go)

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
        sql = (
            f"UPDATE {TABLE} SET attempts = ?, last_error = ?, run_at = ?, failed_at = ?, "
            "last_run_at = COALESCE(?, last_run_at), locked_at = NULL, locked_by = NULL, "
            "interruptions = ?, "
            "updated_at = ? WHERE id = ? AND locked_by = ?"
        )
        params = (
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
        updated = self._run(lambda: self._execute(sql, params).rowcount)
        if not updated:
            log.warning(
                "job %s was no longer locked by %s (lease lost); its outcome was not recorded",
                job_id,
                worker,
                extra={"action": "lease_lost"},
            )
        return bool(updated)

    def renew(self, worker: str, now: datetime, ids: Sequence[int]) -> int:
        """Refresh the leases of the jobs ``ids`` that ``worker`` holds."""

        def go() -> int:
            count = 0
            for part in _chunks(ids):
                sql = (
                    f"UPDATE {TABLE} SET locked_at = ? "
                    f"WHERE locked_by = ? AND id IN {_in_list(len(part))}"
                )
                count += self._execute(sql, (self._t(now), worker, *part)).rowcount
            return count

        return int(self._run(go))

    def release(self, worker: str, ids: Sequence[int] | None = None) -> int:
        """Unlock jobs held by ``worker`` (all of them, or just ``ids``)."""
        base = f"UPDATE {TABLE} SET locked_at = NULL, locked_by = NULL WHERE locked_by = ?"
        if ids is None:
            return int(self._run(lambda: self._execute(base, (worker,)).rowcount))
        if not ids:
            return 0

        def go() -> int:
            count = 0
            for part in _chunks(ids):
                sql = f"{base} AND id IN {_in_list(len(part))}"
                count += self._execute(sql, (worker, *part)).rowcount
            return count

        return int(self._run(go))

    def data_version(self) -> int | None:
        """SQLite's ``PRAGMA data_version`` on this thread's connection.

        It changes whenever another connection (any thread or process) commits
        to the file, so an idle worker can notice a new job cheaply. None on
        other databases.
        """
        if self.dialect is not SQLITE:
            return None
        with self._access:
            return int(self.db.execute_sql("PRAGMA data_version").fetchone()[0])

    # -- inspection and administration --------------------------------------

    def get(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        self.ensure_schema()
        sql = f"SELECT {_COLS} FROM {TABLE} WHERE id = ?"
        row = self._run(lambda: self._execute(sql, (job_id,)).fetchone())
        return Job.from_row(row) if row else None

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
        where: list[str] = []
        params: list[Any] = []
        if failed is not None:
            where.append("failed_at IS NOT NULL" if failed else "failed_at IS NULL")
        if queue is not None:
            where.append("queue = ?")
            params.append(queue)
        if key is not None:
            where.append('"key" = ?')
            params.append(key)
        sql = f"SELECT {_COLS} FROM {TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._run(lambda: self._execute(sql, params).fetchall())
        return [Job.from_row(r) for r in rows]

    def recurring_keys(self) -> set[str]:
        """The keys of the recurring rows (``reoccur_in`` set)."""
        self.ensure_schema()
        sql = f'SELECT "key" FROM {TABLE} WHERE reoccur_in IS NOT NULL AND "key" IS NOT NULL'
        rows = self._run(lambda: self._execute(sql).fetchall())
        return {str(r[0]) for r in rows}

    def counts(self, now: datetime) -> dict[str, int]:
        """How many jobs are ready, scheduled for later, running and failed."""
        self.ensure_schema()
        t = self._t(now)
        sql = (
            "SELECT "
            "COALESCE(SUM(CASE WHEN failed_at IS NULL AND locked_at IS NULL AND run_at <= ? "
            "THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN failed_at IS NULL AND locked_at IS NULL AND run_at > ? "
            "THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN failed_at IS NULL AND locked_at IS NOT NULL "
            "THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END), 0) "
            f"FROM {TABLE}"
        )
        row = self._run(lambda: self._execute(sql, (t, t)).fetchone())
        return dict(zip(("ready", "scheduled", "locked", "failed"), map(int, row), strict=True))

    def retry(self, job_id: int, now: datetime) -> bool:
        """Make a failed job due again now, with its attempts reset."""
        self.ensure_schema()
        sql = (
            f"UPDATE {TABLE} SET failed_at = NULL, attempts = 0, run_at = ?, "
            "locked_at = NULL, locked_by = NULL, updated_at = ? WHERE id = ?"
        )
        t = self._t(now)
        return bool(self._run(lambda: self._execute(sql, (t, t, job_id)).rowcount))

    def delete(self, job_id: int) -> bool:
        """Delete one job; True if it existed."""
        self.ensure_schema()
        sql = f"DELETE FROM {TABLE} WHERE id = ?"
        return bool(self._run(lambda: self._execute(sql, (job_id,)).rowcount))

    def clear(self) -> int:
        """Delete every job, failed, locked and recurring ones included."""
        self.ensure_schema()
        return int(self._run(lambda: self._execute(f"DELETE FROM {TABLE}").rowcount))

    def close(self) -> None:
        """Close this thread's connection unless a transaction is open on it."""
        with self._access:
            if not self.db.is_closed() and not self.db.in_transaction():
                self.db.close()


class Listener:
    """Waits for NOTIFY on a connection of its own (Postgres).

    The connection is opened lazily and reopened after an error; the caller
    closes it when it stops.
    """

    def __init__(self, database: peewee.Database, channel: str) -> None:
        self._db = database
        self._channel = channel
        self._conn: Any = None
        self._schema: str | None = None

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if a notification arrived."""
        if self._conn is None:
            conn = self._db._connect()  # type: ignore[attr-defined]  # new raw connection
            try:
                cursor = conn.cursor()
                cursor.execute("SELECT current_schema()")
                self._schema = cursor.fetchone()[0]
                cursor.execute(f"LISTEN {self._channel}")
            except Exception:
                conn.close()
                raise
            self._conn = conn
            return True  # jobs may have arrived while nobody listened
        conn = self._conn
        if hasattr(conn, "poll"):  # psycopg2
            if not conn.notifies:
                ready, _, _ = select.select([conn], [], [], timeout)
                if ready:
                    conn.poll()
            payloads = [n.payload for n in conn.notifies]
            conn.notifies.clear()
        else:  # psycopg 3
            payloads = [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]
        return any(p in (self._schema, "") for p in payloads)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
