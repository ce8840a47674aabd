"""Creating and migrating the ``delayed_jobs`` table, per database.

- SQLite: WAL mode where it may be set (not inside a transaction: the
  application's first enqueue may happen in its own ``db.atomic()``), and two
  triggers that rewrite times other programs wrote in another ISO 8601 form
  (``2026-12-01T09:00:00.000Z``, ``+02:00``) into tinydj's UTC text, so that
  the reserve's text comparison orders them right. Their ``WHEN`` clause
  makes rows tinydj writes itself cost one pattern test.
- Postgres: a statement trigger that NOTIFYs listening workers, and an
  advisory lock around creation (CREATE TABLE IF NOT EXISTS races otherwise).
- MySQL: DDL commits implicitly, so it runs on a connection of its own.
- SQLite planner statistics: see ``write_planner_statistics``.
"""

from __future__ import annotations

import threading

import peewee

from .connection import Connection
from .models import TABLE
from .sql import MYSQL, SQLITE

__all__ = ["Schema", "write_planner_statistics"]

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
# Room on each page for the new version of a row that a reservation or a
# renewal updates: Postgres then updates it in place (HOT, no index entries
# written), when no indexed column changes (nothing indexes locked_at or
# locked_by). A 20,000-job drain measured 10.3-11.6k/s at 100 and
# 13.2-14.0k/s at 70; but at 70 only 43% of the reservations were HOT (about
# 38 rows fit a page, the free 30% holds some 16 new versions), and at 45 the
# server's CPU per drained job fell from 24-25 to 12.5-14.5 us (4 workers:
# 35-38 -> 24-25.5 us), for about 1.55x the pages while a backlog waits.
FILLFACTOR = 45
_PG_FILLFACTOR = f"ALTER TABLE {TABLE} SET (fillfactor = {FILLFACTOR})"
#: What tinydj set before; a table that has it gets the current one.
_OLD_FILLFACTORS = ("fillfactor=70",)
_PG_OPTIONS = "SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)"
# Serializes schema creation across processes.
_PG_SCHEMA_LOCK = 7_402_157

# SQLite: tinydj's own form of a time is 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC,
# 26 characters, a space at the 11th). The triggers' WHEN tests only that
# shape (a LIKE costs a fraction of a microsecond per insert; a GLOB of digits
# several times more); their body, which runs only for other forms, checks
# the rest.
_SHAPE = "__________ _______________"
_D = "[0-9]"
_CANONICAL = f"{_D * 4}-{_D * 2}-{_D * 2} {_D * 2}:{_D * 2}:{_D * 2}.{_D * 6}"


def _foreign(column: str) -> str:
    return f"NEW.{column} NOT LIKE '{_SHAPE}'"


def _normalized(column: str) -> str:
    # strftime reads 'T', 'Z' and offsets and returns UTC; NULL when it cannot
    # read the value (then the value stays, and the reserve fails the row).
    return (
        f"{column} = CASE WHEN typeof(NEW.{column}) = 'text' AND NEW.{column} NOT GLOB "
        f"'{_CANONICAL}' THEN COALESCE(strftime('%Y-%m-%d %H:%M:%f', NEW.{column}) || '000', "
        f"NEW.{column}) ELSE {column} END"
    )


SQLITE_TRIGGERS = {
    "delayed_jobs_utc_insert": (
        f"CREATE TRIGGER IF NOT EXISTS delayed_jobs_utc_insert AFTER INSERT ON {TABLE} "
        f"WHEN {_foreign('run_at')} OR {_foreign('locked_at')} BEGIN "
        f"UPDATE {TABLE} SET {_normalized('run_at')}, {_normalized('locked_at')} "
        "WHERE id = NEW.id; END"
    ),
    "delayed_jobs_utc_update": (
        f"CREATE TRIGGER IF NOT EXISTS delayed_jobs_utc_update AFTER UPDATE OF run_at "
        f"ON {TABLE} WHEN {_foreign('run_at')} BEGIN "
        f"UPDATE {TABLE} SET {_normalized('run_at')} WHERE id = NEW.id; END"
    ),
}
# Rows written before the triggers existed (once, when they are created).
_SQLITE_BACKFILL = (
    f"UPDATE {TABLE} SET run_at = COALESCE(strftime('%Y-%m-%d %H:%M:%f', run_at) || '000', "
    f"run_at) WHERE typeof(run_at) = 'text' AND run_at NOT GLOB '{_CANONICAL}'"
)


class Schema:
    """Makes sure the table exists and is current (once per Store)."""

    def __init__(self, connection: Connection, model: type[peewee.Model]) -> None:
        self._conn = connection
        self._model = model
        self._ready = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Create the table, its indexes and triggers unless they exist."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            conn = self._conn
            # An older table first gets the columns that new indexes name.
            conn.run(self._migrate)
            complete = conn.run(self._create)
            # Created inside the caller's transaction, the table may still be
            # rolled back with it: check again next time.
            self._ready = complete and not conn.in_transaction()

    def _create(self) -> bool:
        """Create what is missing; False if something had to wait (WAL mode)."""
        dialect = self._conn.dialect
        if dialect is SQLITE:
            return self._create_sqlite()
        if dialect is MYSQL:
            self._create_mysql()
            return True
        db, execute = self._conn.db, self._conn.execute
        with db.atomic():
            execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            db.create_tables([self._model], safe=True)
            execute(_PG_NOTIFY)
            execute(_PG_TRIGGER)
            options = execute(_PG_OPTIONS, (TABLE,)).fetchone()
            set_ = [str(o) for o in (options and options[0]) or () if o.startswith("fillfactor=")]
            if not set_ or set_[0] in _OLD_FILLFACTORS:  # else an operator's own: kept
                execute(_PG_FILLFACTOR)
        return True

    def _create_sqlite(self) -> bool:
        conn, db = self._conn, self._conn.db
        wal = True
        if not conn.memory:
            if not conn.in_transaction():
                conn.execute("PRAGMA journal_mode=wal")
            else:  # not allowed here; next time, outside the transaction
                # (Some drivers' cursors return no row for a PRAGMA inside
                # the application's transaction: then ask again later.)
                row = conn.execute("PRAGMA journal_mode").fetchone()
                wal = row is not None and str(row[0]).lower() == "wal"
        db.create_tables([self._model], safe=True)
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        missing = [name for name in SQLITE_TRIGGERS if name not in have]
        if missing:
            with conn.transaction():
                for name in missing:
                    conn.execute(SQLITE_TRIGGERS[name])
                conn.execute(_SQLITE_BACKFILL)
        write_planner_statistics(conn)
        return wal

    def _create_mysql(self) -> None:
        # DDL commits implicitly on MySQL: run it on a connection of its own,
        # so that the caller's open transaction is left alone.
        with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
            raw = self._conn.db._connect()  # type: ignore[attr-defined]
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT GET_LOCK('tinydj_schema', 60)")
            cursor.execute(f"SHOW TABLES LIKE '{TABLE}'")
            if not cursor.fetchall():
                schema = self._model._schema  # type: ignore[attr-defined]
                for ctx in [schema._create_table(safe=True), *schema._create_indexes(False)]:
                    cursor.execute(*ctx.query())
            cursor.execute("SELECT RELEASE_LOCK('tinydj_schema')")
        finally:
            raw.close()

    def _migrate(self) -> None:
        """Bring a table made by an older tinydj up to date (adds columns,
        replaces indexes)."""
        if not self._conn.db.table_exists(TABLE):
            return
        have = {c.name for c in self._conn.db.get_columns(TABLE)}
        if "interruptions" not in have:
            self._conn.execute(
                f"ALTER TABLE {TABLE} ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0"
            )
        if "cancel_requested_at" not in have:
            kind = {SQLITE: "DATETIME", MYSQL: "DATETIME(6)"}.get(self._conn.dialect, "TIMESTAMP")
            self._conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN cancel_requested_at {kind} NULL")
        if "concurrency_key" not in have:
            self._conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN concurrency_key VARCHAR(255) NULL")
            # The reserve indexes leave jobs with a concurrency limit out now.
            self._rebuild_indexes(("delayed_jobs_ready", "delayed_jobs_queue_ready"))
        # Every reservation wrote these; a worker finds its rows by id, the
        # concurrency gate counts a key's running jobs through delayed_jobs_limited.
        stale = ("delayed_jobs_locked_by", "delayed_jobs_holders")
        if set(stale) & {i.name for i in self._conn.db.get_indexes(TABLE)}:
            self._rebuild_indexes(stale)

    def _rebuild_indexes(self, stale: tuple[str, ...]) -> None:
        """Drop the ``stale`` indexes, then create every index the model has and
        the table lacks."""
        db, execute = self._conn.db, self._conn.execute
        have = {i.name for i in db.get_indexes(TABLE)}
        for name in stale:
            if name in have:
                execute(
                    f"DROP INDEX {name} ON {TABLE}"
                    if self._conn.dialect is MYSQL
                    else f"DROP INDEX {name}"
                )
                have.discard(name)
        schema = self._model._schema  # type: ignore[attr-defined]
        for index in self._model._meta.fields_to_index():
            if index._name not in have:
                execute(*schema._create_index(index, safe=False).query())


# -- SQLite planner statistics -------------------------------------------------
#
# Without statistics SQLite assumes about 10 rows per value of an index
# column, too few for a skip-scan, so the reserve (``... WHERE run_at <= ?
# ORDER BY priority, run_at, id``) walks ``delayed_jobs_ready`` from its start
# past every row scheduled for later before it knows that fewer due rows
# exist than its LIMIT: 70-300 ms at a million future rows, at every idle poll
# and for every last batch. ANALYZE would tell the planner that a priority
# value holds many rows, and it would then seek per priority (``ANY(priority)
# AND run_at<?``, 0.05 ms), but nobody runs ANALYZE on a queue. SQLite lets
# applications write ``sqlite_stat1`` themselves; tinydj writes rows that
# describe a large queue (what ANALYZE reports for a million jobs in ten
# priorities) for its own two reserve indexes and the table, whenever they
# are missing or describe a nearly empty table (an ANALYZE that ran while the
# queue was drained: with "3 rows" the planner scans and sorts the whole
# table; with fewer rows per priority than a skip-scan needs it walks the
# index). Other rows of ``sqlite_stat1`` (the
# application's tables, real figures for tinydj's indexes) are left alone.
# The statistics change plans only, never results.

#: ``sqlite_stat1.stat`` rows: index -> (stat, position of the column that
#: the skip-scan steps over). ``None`` is the table's own row count.
_PLANNER_STATS: dict[str | None, tuple[str, int]] = {
    None: ("1000000", 0),
    "delayed_jobs_ready": ("1000000 100000 2 1", 1),
    "delayed_jobs_queue_ready": ("1000000 100000 10000 2 1", 2),
}
#: SQLite skip-scans a column only if ANALYZE found at least 18 rows per
#: value (whereLoopAddBtreeIndex's "TUNING" threshold, LogEst 42).
_SKIP_SCAN_ROWS = 18
#: Figures measured on fewer rows than this are a drained queue's snapshot.
_MIN_ROWS = 10_000


def _needs_statistics(stat: str | None, column: int) -> bool:
    """True when a ``sqlite_stat1.stat`` value is missing, describes a nearly
    empty table or would rule out a skip-scan."""
    if stat is None:
        return True
    figures = stat.split()
    try:
        rows, per_value = int(figures[0]), int(figures[column])
    except (IndexError, ValueError):
        return True
    return rows < _MIN_ROWS or (column > 0 and per_value < _SKIP_SCAN_ROWS)


def write_planner_statistics(conn: Connection) -> bool:
    """Give SQLite's planner statistics for tinydj's reserve indexes; True if written.

    A read first; only if rows are missing or stale, one ``BEGIN IMMEDIATE``
    transaction (a savepoint inside the caller's) looks again and writes them,
    so that processes creating the schema at once write them once. Then
    ``ANALYZE sqlite_master`` makes this connection read them (other
    connections read them when they next load the schema). A read-only
    database is left as it is.
    """
    if conn.dialect is not SQLITE or not _stale_statistics(conn):
        return False
    try:
        with conn.transaction():
            return _write_statistics(conn)
    except peewee.OperationalError as exc:
        if "readonly" in str(exc).replace(" ", "").lower():
            return False
        raise


def _stale_statistics(conn: Connection) -> list[str | None]:
    """The entries of ``_PLANNER_STATS`` whose ``sqlite_stat1`` row is missing or stale."""
    execute = conn.execute
    if not execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        return list(_PLANNER_STATS)
    have: dict[str | None, str | None] = dict(
        execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = ?", (TABLE,)).fetchall()
    )
    return [
        idx
        for idx, (_, column) in _PLANNER_STATS.items()
        if _needs_statistics(have.get(idx), column)
    ]


def _write_statistics(conn: Connection) -> bool:
    execute = conn.execute
    if not execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        execute("ANALYZE sqlite_master")  # creates sqlite_stat1, reads nothing
    stale = _stale_statistics(conn)  # again, under the write lock
    if not stale:
        return False
    for idx in stale:
        execute("DELETE FROM sqlite_stat1 WHERE tbl = ? AND idx IS ?", (TABLE, idx))
        execute(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
            (TABLE, idx, _PLANNER_STATS[idx][0]),
        )
    execute("ANALYZE sqlite_master")  # reload the statistics on this connection
    return True
