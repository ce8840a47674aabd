"""Every SQL statement tinydj runs, rendered once per database dialect.

Statements are written here once, with ``?`` markers and ``"`` quotes, and
``Statements(dialect)`` translates them when a ``Store`` is made; the store
looks them up by name and only executes them. Statements whose shape depends
on a count (``IN (?, ?, ...)`` lists, the queues of a worker) are rendered on
first use and kept.

On SQLite the columns are read in a form that cannot raise in the driver
(text as BLOB: a row written as Latin-1 would otherwise fail the whole fetch);
``rows.read`` decodes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from .job import COLUMNS, RESERVED_COLUMNS
from .models import TABLE

__all__ = [
    "MYSQL",
    "POSTGRES",
    "SQLITE",
    "UNIQUE_PREFIX",
    "WAITING_PREFIX",
    "Dialect",
    "Statements",
    "dialect_for",
]

#: Keys of unique jobs start with this (``tinydj.unique``); recurring rows'
#: keys are import paths (``module:qualname``), which cannot.
UNIQUE_PREFIX = "~"
#: Keys of jobs unique only while they wait: cleared when a worker takes them.
WAITING_PREFIX = "~w:"
#: Longest IN (...) list sent in one statement.
CHUNK = 500
#: Rows per multi-row INSERT ... RETURNING (Postgres).
INSERT_ROWS = 100
#: Most rows of one ``Statements.insert_batch``: SQLite binds each handler
#: (old builds allow 999 parameters); Postgres sends them as one array.
BATCH_ROWS = 128
ARRAY_ROWS = 2000


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

    def render(self, sql: str) -> str:
        """Translate a statement written with ``?`` markers and ``"`` quotes.

        (tinydj's statements put string literals in single quotes only, and
        none of them holds a ``?``.)
        """
        if self.param != "?":
            sql = sql.replace("%", "%%").replace("?", self.param)
        if self.quote != '"':
            sql = sql.replace('"', self.quote)
        return sql

    def bind_time(self, value: datetime | None) -> Any:
        """A naive UTC time as this database binds it (ISO text on SQLite)."""
        if value is None or not self.text_times:
            return value
        return value.isoformat(" ", "microseconds")


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


def dialect_for(database: peewee.Database) -> Dialect:
    """Pick the dialect of a peewee database."""
    if isinstance(database, peewee.SqliteDatabase):
        return SQLITE
    if isinstance(database, peewee.PostgresqlDatabase):
        return POSTGRES
    if isinstance(database, peewee.MySQLDatabase):
        return MYSQL
    raise TypeError(f"tinydj does not support {type(database).__name__} yet")


#: The columns, in ``COLUMNS`` order, as written (every dialect's own types).
PLAIN_COLUMNS = ", ".join(f'"{c}"' for c in COLUMNS)
_INTEGERS = ("priority", "attempts", "interruptions")
_INSERT_COLS = (
    '(priority, attempts, handler, run_at, queue, "key", reoccur_in, created_at, updated_at, '
    "concurrency_key)"
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: A bulk insert's columns: key, reoccur_in and concurrency_key stay NULL.
_INSERT_BATCH = (
    f"INSERT INTO {TABLE} (priority, attempts, handler, run_at, queue, created_at, updated_at)"
)
_INTERRUPTED = (
    "'Interrupted: worker '",
    "locked_by",
    "' stopped renewing its lease while running this job (it died or lost the database); "
    "running it again, not counted as an attempt.'",
)


def _safe_column(name: str) -> str:
    """An SQLite select-list entry for ``name`` that the driver cannot fail to read."""
    if name == "id":
        return "id"
    if name in _INTEGERS:
        return f"CASE WHEN typeof({name}) = 'integer' THEN {name} ELSE CAST({name} AS BLOB) END"
    return f'CAST("{name}" AS BLOB)'


def chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    """``ids`` in parts of at most ``CHUNK`` (for ``IN`` lists)."""
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _in_list(n: int) -> str:
    return "(" + ", ".join(["?"] * n) + ")"


class Statements:
    """The statements of one dialect, each rendered once."""

    def __init__(self, dialect: Dialect) -> None:
        d = self.dialect = dialect
        r = d.render
        cols = _select_list(d, COLUMNS)
        self._cols = cols
        self.columns = r(cols)
        #: What the worker's reserve returns (``rows.read_reserved``).
        self._slim = _select_list(d, RESERVED_COLUMNS)
        self._cache: dict[tuple[object, ...], str] = {}
        self._enqueueing(d, cols)
        self._outcomes(d)
        self._inspection(d, cols)
        self.data_version = "PRAGMA data_version"

    def _enqueueing(self, d: Dialect, cols: str) -> None:
        """Inserts, upserts of recurring rows, unique jobs."""
        r = d.render
        insert = f"INSERT INTO {TABLE} {_INSERT_COLS} VALUES {_ROW}"
        self.insert = r(insert)
        self.insert_returning_id = r(insert + " RETURNING id")
        self.last_rowid = "SELECT last_insert_rowid()"
        self.upsert = r(f"{insert} {d.on_conflict} {_upsert_sets(d)}")
        self.upsert_returning = r(f"{insert} {d.on_conflict} {_upsert_sets(d)} RETURNING {cols}")
        # A changed cron spec moves to the new spec's first fire time.
        self.replace = r(f"{insert} {d.on_conflict} {_upsert_sets(d, True)}")
        self.replace_returning = r(
            f"{insert} {d.on_conflict} {_upsert_sets(d, True)} RETURNING {cols}"
        )
        self.select_by_key = r(f'SELECT {cols} FROM {TABLE} WHERE "key" = ?')
        # A unique job (``tinydj.unique``): a row whose key is taken already
        # is kept as it is; the statement locks it (so that a reservation
        # cannot clear its key meanwhile) and, where it can, returns it.
        quoted_key = '"key"'
        unique = f"{insert} {d.on_conflict} {quoted_key} = {d.excluded.format(quoted_key)}"
        self.insert_unique = r(unique)
        self.insert_unique_returning = r(f"{unique} RETURNING {cols}")

    def _outcomes(self, d: Dialect) -> None:
        """What a worker writes after a run (besides the ack), and releases."""
        r = d.render
        # A job that fails for good frees its unique key (first: MySQL's SET
        # sees the values assigned before it); a cancel request is answered.
        self.finish = r(
            f'UPDATE {TABLE} SET "key" = CASE WHEN ? IS NOT NULL AND "key" LIKE '
            f"'{UNIQUE_PREFIX}%' THEN NULL ELSE \"key\" END, attempts = ?, last_error = ?, "
            "run_at = ?, failed_at = ?, last_run_at = COALESCE(?, last_run_at), "
            "locked_at = NULL, locked_by = NULL, interruptions = ?, updated_at = ?, "
            "cancel_requested_at = NULL WHERE id = ? AND locked_by = ?"
        )
        #: Fails a row that cannot be read (see ``rows.read``).
        self.fail_unreadable = r(
            f"UPDATE {TABLE} SET failed_at = ?, last_error = ?, locked_at = NULL, "
            "locked_by = NULL, updated_at = ? WHERE id = ? AND locked_by = ?"
        )
        self.release_all = r(
            f"UPDATE {TABLE} SET locked_at = NULL, locked_by = NULL WHERE locked_by = ?"
        )

    def _inspection(self, d: Dialect, cols: str) -> None:
        """The operator's reads and writes by id: get, counts, retry, cancel, delete."""
        r = d.render
        self.get = r(f"SELECT {cols} FROM {TABLE} WHERE id = ?")
        self.counts = r(
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
        self.retry = r(
            f"UPDATE {TABLE} SET failed_at = NULL, attempts = 0, run_at = ?, "
            "locked_at = NULL, locked_by = NULL, cancel_requested_at = NULL, updated_at = ? "
            "WHERE id = ?"
        )
        # tinydj.cancel: a job nobody runs is deleted; a running one is asked.
        self.cancel_waiting = r(
            f"DELETE FROM {TABLE} WHERE id = ? AND failed_at IS NULL "
            "AND (locked_at IS NULL OR locked_at < ?)"
        )
        self.cancel_running = r(
            f"UPDATE {TABLE} SET cancel_requested_at = COALESCE(cancel_requested_at, ?) "
            "WHERE id = ? AND failed_at IS NULL AND locked_at IS NOT NULL"
        )
        # (A scan: nothing indexes locked_by; workers ask by id, ``cancel_requested``.)
        self.cancel_requested_all = r(
            f"SELECT id FROM {TABLE} WHERE locked_by = ? AND cancel_requested_at IS NOT NULL"
        )
        self.delete = r(f"DELETE FROM {TABLE} WHERE id = ?")
        self.clear = r(f"DELETE FROM {TABLE}")

    def _cached(self, key: tuple[object, ...], build: Callable[[], str]) -> str:
        sql = self._cache.get(key)
        if sql is None:
            sql = self._cache[key] = self.dialect.render(build())
        return sql

    # -- statements whose shape depends on a count --------------------------

    def insert_rows(self, n: int) -> str:
        """A multi-row INSERT of ``n`` rows returning their ids (returning dialects)."""
        values = ", ".join([_ROW] * n)
        return self._cached(
            ("insert_rows", n),
            lambda: f"INSERT INTO {TABLE} {_INSERT_COLS} VALUES {values} RETURNING id",
        )

    def insert_batch(self, n: int) -> str:
        """An INSERT of ``n`` rows that differ only in their handler (a
        ``send_later_many``). SQLite: one multi-row VALUES, ``n <=
        BATCH_ROWS``: (priority, handler, run_at, queue, now, now) per row. Postgres: any
        ``n``, the handlers as one array, returning the ids: (priority, run_at,
        queue, now, now, handlers). (Plain markers on SQLite, the shared values
        given per row: Python 3.12 deprecates numbered ones with a sequence,
        and 3.14 refuses them.)"""

        def build() -> str:
            if self.dialect is POSTGRES:
                return (
                    f"{_INSERT_BATCH} SELECT ?, 0, h, ?, ?, ?, ? "
                    "FROM unnest(?::text[]) AS h RETURNING id"
                )
            return f"{_INSERT_BATCH} VALUES {', '.join(['(?, 0, ?, ?, ?, ?, ?)'] * n)}"

        return self._cached(("insert_batch", n if self.dialect is SQLITE else 0), build)

    def next_priority(self, queue: bool, above: bool) -> str:
        """The lowest priority of a ready row (of one ``queue``), ``above`` a
        given one: (queue?, priority?). MySQL's first step: an index seek,
        where ``ORDER BY priority, run_at`` would read every future row of a
        higher priority before the first due one (and every future row of
        the last priority, when nothing is due)."""
        where = (
            _READY + (" AND queue = ?" if queue else "") + (" AND priority > ?" if above else "")
        )
        return self._cached(
            ("next_priority", queue, above),
            lambda: f"SELECT MIN(priority) FROM {TABLE} WHERE {where}",
        )

    def due_at(self, queues: int, excluded: int = 0) -> str:
        """(id, run_at) of due jobs of one priority in run order (MySQL, after
        ``next_priority``): (now, expired_before, *queues, *excluded, priority, limit)."""
        skip = self.dialect.skip_locked
        return self._cached(
            ("due_at", queues, excluded),
            lambda: _due(queues, skip, excluded, one_priority=True),
        )

    def _lock_prefix(self) -> str:
        d = self.dialect
        interrupted = d.concat.format(d.concat_sep.join(_INTERRUPTED))
        # last_error first: MySQL's SET sees the values assigned before it.
        return (
            f"UPDATE {TABLE} SET last_error = CASE WHEN locked_at IS NULL THEN last_error "
            f"ELSE {interrupted} END, interruptions = CASE WHEN locked_at IS NULL "
            "THEN interruptions ELSE interruptions + 1 END, "
            # A job unique while it waits frees its key once it starts.
            f'"key" = CASE WHEN "key" LIKE \'{WAITING_PREFIX}%\' THEN NULL ELSE "key" END, '
            "locked_at = ?, locked_by = ? WHERE id IN "
        )

    def _lock_chosen(self, chosen: str) -> str:
        """Lock the rows of the sub-select ``chosen``. On Postgres as
        ``id = ANY(ARRAY(chosen))``: the ids come from an InitPlan, then the
        primary key; with ``id IN (chosen)`` the planner weighs a merge join
        and probes the ends of the primary key for it, walking the index
        entries of deleted rows there (a draining queue always has some):
        planning took 0.43 ms instead of 0.10 beside 50,000 of them."""
        if self.dialect is POSTGRES:
            return self._lock_prefix().removesuffix("IN ") + f"= ANY(ARRAY({chosen}))"
        return f"{self._lock_prefix()}({chosen})"

    def reserve(self, queues: int, excluded: int = 0) -> str:
        """Lock the due jobs and return them, ``RESERVED_COLUMNS`` (returning
        dialects); parameters: ``reserve_params``."""

        def build() -> str:
            return f"{self._lock_chosen(self._chosen(queues, excluded))} RETURNING {self._slim}"

        return self._cached(("reserve", queues, excluded), build)

    def reserve_params(
        self,
        worker: str,
        now: Any,
        expired_before: Any,
        queues: Sequence[str],
        excluded: Sequence[str],
        limit: int,
        done: str | None = None,
    ) -> tuple[Any, ...]:
        """The parameters of ``reserve(len(queues), len(excluded))``, times as
        bound; with ``done`` (the finished ids as an array literal,
        ``'{1,2}'``) those of ``reserve_acking``."""
        due = (now, expired_before) if done is None else (now, expired_before, done)
        chosen = self._chosen_params(due, queues, excluded, limit)
        return (now, worker, *chosen) if done is None else (worker, done, now, worker, *chosen)

    def reserve_acking(self, queues: int, excluded: int = 0) -> str:
        """``reserve`` and the ack of the finished jobs in one statement
        (Postgres, no transaction of its own needed); parameters:
        ``reserve_params`` with ``done``. Its rows are (how many finished jobs were
        deleted, *``RESERVED_COLUMNS``); it returns one row of NULLs after
        the count when it locked nothing.

        The sub-statements of one statement run on one snapshot, in no set
        order: a finished job whose lease expired would be both deleted and
        taken again, so the finished ids are never taken (``_DUE_NOT_DONE``)."""

        def build() -> str:
            chosen = self._chosen(queues, excluded, _DUE_NOT_DONE)
            return (
                f"WITH done AS (DELETE FROM {TABLE} WHERE locked_by = ? AND id = ANY(?::bigint[]) "
                f"RETURNING 1), picked AS ({self._lock_chosen(chosen)} "
                f"RETURNING {self._slim}) SELECT (SELECT count(*) FROM done), picked.* "
                "FROM (VALUES (0)) AS one LEFT JOIN picked ON true"
            )

        return self._cached(("reserve_acking", queues, excluded), build)

    def _chosen(self, queues: int, excluded: int, due: str | None = None) -> str:
        """The sub-select of the ids that ``reserve`` locks: a seek per
        priority (and per queue, for several), in each dialect's form; its
        parameters are ``_chosen_params``'. ``due``: the test of a due row
        (``_DUE``; ``_DUE_NOT_DONE`` beside an ack)."""
        due = due or _DUE
        if self.dialect is SQLITE and queues:
            return _due_in_one_queue(excluded) if queues == 1 else _due_in_queues(queues, excluded)
        if self.dialect is POSTGRES:
            if queues > 1:
                return _due_per_queue(queues, excluded, due)
            return _due_per_priority(excluded, due, one_queue=queues == 1)
        return _due(queues, self.dialect.skip_locked, excluded, due)

    def _chosen_params(
        self, due: tuple[Any, ...], queues: Sequence[str], excluded: Sequence[str], limit: int
    ) -> tuple[Any, ...]:
        """The parameters of ``_chosen``: ``due`` holds those of its test of a
        due row (now, expired_before[, done ids])."""
        if self.dialect is SQLITE and len(queues) > 1:
            return (*[v for q in queues for v in (*due, q, *excluded, limit)], limit)
        if self.dialect is POSTGRES and len(queues) > 1:
            return (*queues, *due, *excluded, limit, limit, limit)
        if self.dialect is POSTGRES:
            return (*due, *queues, *excluded, limit, limit)
        return (*due, *queues, *excluded, limit)

    def lock_ids(self, n: int) -> str:
        """Lock ``n`` jobs by id (MySQL's second step): (now, worker, *ids)."""
        return self._cached(("lock_ids", n), lambda: self._lock_prefix() + _in_list(n))

    def lock_ids_returning(self, n: int) -> str:
        """Lock ``n`` jobs by id and return them (returning dialects): (now, worker, *ids)."""
        return self._cached(
            ("lock_ids_returning", n),
            lambda: f"{self._lock_prefix()}{_in_list(n)} RETURNING {self._cols}",
        )

    def select_ids(self, n: int, slim: bool = False) -> str:
        """Rows by id: every column, or ``RESERVED_COLUMNS`` (``slim``)."""
        cols = self._slim if slim else self._cols
        return self._cached(
            ("select_ids", n, slim),
            lambda: f"SELECT {cols} FROM {TABLE} WHERE id IN {_in_list(n)}",
        )

    def ack(self, n: int) -> str:
        """Delete finished jobs still held: (worker, *ids)."""
        return self._cached(
            ("ack", n),
            lambda: f"DELETE FROM {TABLE} WHERE locked_by = ? AND id IN {_in_list(n)}",
        )

    def renew(self, n: int) -> str:
        """Refresh leases: (now, worker, *ids)."""
        return self._cached(
            ("renew", n),
            lambda: f"UPDATE {TABLE} SET locked_at = ? WHERE locked_by = ? AND id IN {_in_list(n)}",
        )

    def cancel_requested(self, n: int) -> str:
        """Which of a worker's jobs someone asked to stop: (worker, *ids)."""
        return self._cached(
            ("cancel_requested", n),
            lambda: (
                f"SELECT id FROM {TABLE} WHERE locked_by = ? AND id IN {_in_list(n)} "
                "AND cancel_requested_at IS NOT NULL"
            ),
        )

    def release(self, n: int) -> str:
        """Unlock some jobs of a worker: (worker, *ids)."""
        return self._cached(
            ("release", n),
            lambda: (
                f"UPDATE {TABLE} SET locked_at = NULL, locked_by = NULL "
                f"WHERE locked_by = ? AND id IN {_in_list(n)}"
            ),
        )

    def select(self, failed: bool | None, queue: bool, key: bool, limit: bool) -> str:
        """Jobs in id order, filtered: (queue?, key?, limit?)."""

        def build() -> str:
            where: list[str] = []
            if failed is not None:
                where.append("failed_at IS NOT NULL" if failed else "failed_at IS NULL")
            if queue:
                where.append("queue = ?")
            if key:
                where.append('"key" = ?')
            sql = f"SELECT {self._cols} FROM {TABLE}"
            if where:
                sql += " WHERE " + " AND ".join(where)
            return sql + " ORDER BY id" + (" LIMIT ?" if limit else "")

        return self._cached(("select", failed, queue, key, limit), build)


def _select_list(d: Dialect, columns: tuple[str, ...]) -> str:
    if d is SQLITE:
        return ", ".join(_safe_column(c) for c in columns)
    return ", ".join(f'"{c}"' for c in columns)


_READY = "failed_at IS NULL AND concurrency_key IS NULL"
#: A job is due when nobody holds it, or its holder's lease expired.
_DUE = "run_at <= ? AND (locked_at IS NULL OR locked_at < ?)"
#: The same, leaving out the ids of an array (finished jobs deleted in the
#: same statement): (now, expired_before, ids).
_DUE_NOT_DONE = "run_at <= ? AND (locked_at IS NULL OR (locked_at < ? AND id <> ALL(?::bigint[])))"


def _due(
    queues: int, skip_locked: str, excluded: int = 0, due: str = _DUE, *, one_priority: bool = False
) -> str:
    queue_clause = f" AND queue IN {_in_list(queues)}" if queues else ""
    if excluded:  # paused queues
        queue_clause += f" AND queue NOT IN {_in_list(excluded)}"
    order, table, columns = "priority, run_at, id", TABLE, "id"
    if one_priority:  # MySQL's: its ready index, not the limits' one of fewer columns
        queue_clause += " AND priority = ?"
        order, columns = "run_at, id", "id, run_at"
        table += f" FORCE INDEX ({TABLE}_{'queue_ready' if queues else 'ready'})"
    return (
        f"SELECT {columns} FROM {table} WHERE {_READY} AND {due}{queue_clause} "
        f"ORDER BY {order} LIMIT ?{skip_locked}"
    )


#: Makes the seeks for distinct priorities read the rows (an index scan, not
#: an index-only one): in a drain the head of the index holds the entries of
#: rows just deleted or updated, and an index-only scan would step over them
#: at every reservation instead of marking them dead once.
_VISIT = " AND (locked_at IS NULL OR locked_at IS NOT NULL)"


#: Postgres: the distinct priorities of the ready rows, in ascending order,
#: one index seek each (see ``_due_per_priority``).
_PG_PRIORITIES = (
    "p (priority) AS ("
    f"(SELECT priority FROM {TABLE} WHERE {_READY}{_VISIT} ORDER BY priority LIMIT 1) "
    f"UNION ALL SELECT (SELECT d.priority FROM {TABLE} d WHERE d.failed_at IS NULL "
    f"AND d.concurrency_key IS NULL AND d.priority > p.priority{_VISIT} "
    "ORDER BY d.priority LIMIT 1) "
    "FROM p WHERE p.priority IS NOT NULL)"
)


def _due_per_priority(excluded: int, due: str = _DUE, *, one_queue: bool = False) -> str:
    """``_due`` for Postgres, which has no skip scan (before 18): a walk of
    ``(priority, run_at, id)`` from its start would read every future row of a
    higher priority before the first due one. Instead a recursive CTE seeks
    the distinct priorities of ``delayed_jobs_ready`` in ascending order, and
    per priority an index seek takes ``run_at <= now`` in ``(run_at, id)``
    order, skipping locked rows. The nested loop yields the rows in
    ``(priority, run_at, id)`` order and stops at the outer LIMIT: only the
    rows returned are locked, and a row skipped is replaced by the next one
    (as with ``ORDER BY ... LIMIT ... SKIP LOCKED``). (An outer ORDER BY
    would sort after running every priority's seek, locking rows it drops.)
    ``one_queue``: the seeks are of ``(queue, priority, run_at, id)`` for one
    queue (the priorities still those of every ready row: a priority
    without jobs of the queue costs one empty seek).
    Parameters: (now, expired_before, [queue,] *excluded, limit, limit)."""
    paused = " AND queue = ?" if one_queue else ""
    paused += f" AND queue NOT IN {_in_list(excluded)}" if excluded else ""
    return (
        f"WITH RECURSIVE {_PG_PRIORITIES} "
        f"SELECT j.id FROM p CROSS JOIN LATERAL (SELECT id FROM {TABLE} WHERE {_READY} "
        f"AND priority = p.priority AND {due}{paused} "
        "ORDER BY run_at, id LIMIT ? FOR UPDATE SKIP LOCKED) j LIMIT ?"
    )


def _due_per_queue(queues: int, excluded: int, due: str = _DUE) -> str:
    """``_due`` for Postgres and several queues: ``_due_per_priority``'s
    seek for each queue, each locking up to the limit with SKIP LOCKED, then
    the first ``limit`` of them in run order. The rows of a queue that the
    merge drops stay locked until the statement ends (in autocommit, the
    reservation itself) and are not changed; other workers skip them
    meanwhile and take the next ones. (Reading the candidates without locks
    and locking afterwards would lock only the rows returned, but a worker
    whose candidates another worker was locking at that moment would find
    nothing and go idle while jobs wait.) Parameters: (*queues, now,
    expired_before, *excluded, limit, limit, limit); ``_DUE_NOT_DONE`` adds
    the done ids after expired_before."""
    paused = f" AND queue NOT IN {_in_list(excluded)}" if excluded else ""
    seek = (
        f"SELECT id, priority, run_at FROM {TABLE} WHERE {_READY} AND priority = p.priority "
        f"AND queue = qs.queue AND {due}{paused} ORDER BY run_at, id LIMIT ? "
        "FOR UPDATE SKIP LOCKED"
    )
    listed = ", ".join(["(?)"] * queues)
    return (
        f"WITH RECURSIVE {_PG_PRIORITIES} SELECT c.id "
        f"FROM (VALUES {listed}) AS qs (queue) CROSS JOIN LATERAL "
        f"(SELECT j.* FROM p CROSS JOIN LATERAL ({seek}) j LIMIT ?) c "
        "ORDER BY c.priority, c.run_at, c.id LIMIT ?"
    )


#: SQLite: the distinct priorities of the ready rows, in ascending order, one
#: ``MIN`` seek each in ``delayed_jobs_ready``.
_READY_PRIORITIES = (
    "p (priority) AS ("
    f"SELECT MIN(priority) FROM {TABLE} WHERE {_READY} "
    f"UNION ALL SELECT (SELECT MIN(d.priority) FROM {TABLE} d WHERE d.failed_at IS NULL "
    "AND d.concurrency_key IS NULL AND d.priority > p.priority) "
    "FROM p WHERE p.priority IS NOT NULL)"
)


def _due_of_queue(excluded: int, columns: str = "id") -> str:
    paused = f" AND queue NOT IN {_in_list(excluded)}" if excluded else ""
    return (
        f"SELECT {columns} FROM {TABLE} WHERE {_READY} AND {_DUE} AND queue = ?{paused} "
        "AND priority IN (SELECT priority FROM p) ORDER BY priority, run_at, id LIMIT ?"
    )


def _due_in_one_queue(excluded: int) -> str:
    """``_due`` for SQLite and one queue: (now, expired_before, queue,
    *excluded, limit). ``(queue, priority, run_at, id)`` walked from
    ``queue = ?`` would read every future row of the queue (SQLite skips
    only leading columns of an index); instead a recursive CTE seeks the
    distinct priorities of the ready rows (``_READY_PRIORITIES``) and SQLite
    takes ``priority IN`` them in index order, each a ``queue = ? AND run_at
    <= now`` seek, with no sort. (A priority without jobs of the queue costs
    one empty seek.)"""
    return f"WITH RECURSIVE {_READY_PRIORITIES} {_due_of_queue(excluded)}"


def _due_in_queues(queues: int, excluded: int) -> str:
    """``_due`` for SQLite and several queues: ``_due_in_one_queue``'s seek
    for each queue, each taking up to the limit, merged in run order; the
    sort is of at most ``queues * limit`` rows, whatever waits for later or
    is due in other queues. Parameters: (now, expired_before, queue,
    *excluded, limit) per queue, then the limit (``Statements.reserve_params``)."""
    one = f"SELECT * FROM ({_due_of_queue(excluded, 'id, priority, run_at')})"
    merged = " UNION ALL ".join([one] * queues)
    return (
        f"WITH RECURSIVE {_READY_PRIORITIES} "
        f"SELECT id FROM ({merged}) ORDER BY priority, run_at, id LIMIT ?"
    )


def _upsert_sets(d: Dialect, replace: bool = False) -> str:
    """SET of an upsert: an unchanged spec keeps ``run_at``; a changed one moves
    it to the earlier of the old and the new (``replace``: to the new)."""
    changed = f"{d.existing.format('reoccur_in')} = {d.excluded.format('reoccur_in')}"
    kept = d.existing.format("run_at")
    moved = "?" if replace else f"{d.least}({kept}, ?)"
    sets = [
        # first: MySQL evaluates assignments in order, with updated values
        f"run_at = CASE WHEN {changed} THEN {kept} ELSE {moved} END",
        *(
            f"{c} = {d.excluded.format(c)}"
            for c in ("handler", "priority", "queue", "reoccur_in", "updated_at")
        ),
    ]
    return ", ".join(sets)
