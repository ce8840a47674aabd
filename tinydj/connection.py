"""``Connection``: how the store's statements reach the database.

- SQLite's "database is locked" beyond its busy timeout is retried with
  jittered back-off, up to ``SQLITE_BUSY_BUDGET`` seconds (then ``DatabaseBusy``).
- A connection that died (a server restart, a connection killed on the
  server) is discarded, and a statement that failed outside the application's
  own transaction is tried once more on a fresh connection. Inside that
  transaction the error goes to the caller, who decides. What still fails
  while the server is unreachable is a ``DatabaseUnavailable`` naming the host
  and database (never a password), chaining the driver's error.
- An in-memory SQLite database is one connection shared by every thread: its
  users take turns, and it is never closed (closing it would delete it).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import peewee

from .errors import DatabaseBusy, DatabaseUnavailable
from .redact import mask
from .sql import SQLITE, Dialect

__all__ = ["SQLITE_BUSY_BUDGET", "Connection", "describe"]

T = TypeVar("T")

#: How long (seconds) tinydj keeps retrying a write that SQLite refuses with
#: "database is locked" after its own busy timeout, before raising DatabaseBusy.
SQLITE_BUSY_BUDGET = 60.0
# MySQL client errors of a connection that is gone: server gone away, lost
# connection, commands out of sync, server shutdown, connection killed.
_MYSQL_GONE = {2006, 2013, 2014, 2055, 1053, 1927, 4031}


def _is_busy(exc: BaseException) -> bool:
    """A lock conflict that goes away when the statement is tried again."""
    text = str(exc).lower()
    return any(
        s in text
        for s in ("database is locked", "database is busy", "deadlock", "lock wait timeout")
    )


def describe(database: peewee.Database, kind: str) -> str:
    """``postgresql database 'app' on db.example:5432`` (no user, no password)."""
    params = getattr(database, "connect_params", {}) or {}
    host = params.get("host") or "localhost"
    port = params.get("port")
    where = f"{host}:{port}" if port else str(host)
    return mask(f"{kind} database {database.database!r} on {where}")


def _real_error(exc: peewee.PeeweeException) -> BaseException:
    """SQLite already rolled back (SQLITE_FULL, IOERR...): peewee's ROLLBACK then
    fails with "no transaction is active" and hides the real error."""
    if "no transaction is active" not in str(exc):
        return exc
    cause: BaseException | None = exc.__context__
    while cause is not None and "no transaction is active" in str(cause):
        cause = cause.__context__
    return cause if isinstance(cause, peewee.DatabaseError) else exc


class Connection:
    """Runs statements on one peewee database (this thread's connection)."""

    def __init__(self, database: peewee.Database, dialect: Dialect, *, shared: bool) -> None:
        self.db = database
        self.dialect = dialect
        self.memory = dialect is SQLITE and database.database == ":memory:"
        self._access: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if shared else contextlib.nullcontext()
        )
        self._rendered: dict[str, str] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute_sql(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a statement written in the portable form (``?``, ``"``),
        rendered for this dialect once (``Store.query``)."""
        rendered = self._rendered.get(sql)
        if rendered is None:
            if len(self._rendered) > 1024:  # statements built with IN lists vary
                self._rendered.clear()
            rendered = self._rendered[sql] = self.dialect.render(sql)
        return self.db.execute_sql(rendered, params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        cursor = self.db.cursor()
        with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
            cursor.executemany(sql, params)

    def transaction(self) -> Any:
        """A transaction of tinydj's own (nested in the caller's, if any)."""
        if self.dialect.lock_type:
            return self.db.atomic(lock_type=self.dialect.lock_type)
        return self.db.atomic()

    def in_transaction(self) -> bool:
        return bool(self.db.in_transaction())

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn``: retry it while SQLite is busy, and once on a fresh
        connection after the old one died (see the module's docstring)."""
        delay = 0.002
        deadline: float | None = None
        reconnected = False
        while True:
            try:
                with self._access:
                    return fn()
            except (peewee.OperationalError, peewee.InterfaceError) as raised:
                exc = _real_error(raised)
                if exc is not raised:
                    raise exc from None
                if isinstance(exc, DatabaseUnavailable):
                    raise
                if _is_busy(exc) and not self.in_transaction():
                    deadline = self._back_off(exc, delay, deadline)
                    delay = min(delay * 2, 0.1)
                    continue
                if not self._lost(exc):
                    raise
                if self.in_transaction():
                    raise self.unavailable(exc) from exc
                self.discard()
                if reconnected:
                    raise self.unavailable(exc) from exc
                reconnected = True

    def _back_off(self, exc: BaseException, delay: float, deadline: float | None) -> float:
        now = time.monotonic()
        if deadline is None:
            deadline = now + SQLITE_BUSY_BUDGET
        elif now > deadline:
            raise DatabaseBusy(
                f"SQLite stayed locked for {SQLITE_BUSY_BUDGET:.0f} s: {exc}"
            ) from exc
        time.sleep(delay * (0.5 + random.random()))
        return deadline

    def _lost(self, exc: BaseException) -> bool:
        """True when ``exc`` means this thread's connection is gone (or never came)."""
        if self.dialect is SQLITE:
            return False
        if isinstance(exc, peewee.InterfaceError):
            return True
        raw = None if self.db.is_closed() else self.db._state.conn  # type: ignore[attr-defined]
        if raw is None:
            return True  # connecting failed
        closed = getattr(raw, "closed", False)  # psycopg2: int, psycopg 3: bool
        if (isinstance(closed, bool | int) and closed) or getattr(raw, "broken", False):
            return True
        if getattr(raw, "open", True) is False:  # PyMySQL
            return True
        orig = getattr(exc, "orig", exc)
        code = orig.args[0] if getattr(orig, "args", None) else None
        return code in _MYSQL_GONE

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return DatabaseUnavailable(
            mask(f"{describe(self.db, self.dialect.name)} is unavailable: {first}")
        )

    def discard(self) -> None:
        """Forget this thread's connection (it is dead); the next call reconnects."""
        with contextlib.suppress(Exception):
            self.db.close()

    def close(self) -> None:
        """Close this thread's connection unless a transaction is open on it.

        An in-memory SQLite database is left open: closing it would delete it.
        """
        if self.memory:
            return
        with self._access:
            if not self.db.is_closed() and not self.db.in_transaction():
                self.db.close()

    def data_version(self) -> int:
        with self._access:
            return int(self.db.execute_sql("PRAGMA data_version").fetchone()[0])
