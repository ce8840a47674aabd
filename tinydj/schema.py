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
"""

from __future__ import annotations

import threading

import peewee

from .connection import Connection
from .models import TABLE
from .sql import MYSQL, SQLITE

__all__ = ["Schema"]

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
            complete = conn.run(self._create)
            conn.run(self._migrate)
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
        return True

    def _create_sqlite(self) -> bool:
        conn, db = self._conn, self._conn.db
        wal = True
        if not conn.memory:
            if not conn.in_transaction():
                conn.execute("PRAGMA journal_mode=wal")
            else:  # not allowed here; next time, outside the transaction
                wal = conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        db.create_tables([self._model], safe=True)
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        missing = [name for name in SQLITE_TRIGGERS if name not in have]
        if missing:
            with conn.transaction():
                for name in missing:
                    conn.execute(SQLITE_TRIGGERS[name])
                conn.execute(_SQLITE_BACKFILL)
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
        """Bring a table made by an older tinydj up to date (adds columns)."""
        have = {c.name for c in self._conn.db.get_columns(TABLE)}
        if "interruptions" not in have:
            self._conn.execute(
                f"ALTER TABLE {TABLE} ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0"
            )
        if "cancel_requested_at" not in have:
            kind = {SQLITE: "DATETIME", MYSQL: "DATETIME(6)"}.get(self._conn.dialect, "TIMESTAMP")
            self._conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN cancel_requested_at {kind} NULL")
