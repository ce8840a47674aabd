"""``Listener``: waits for Postgres NOTIFY on a connection of its own."""

from __future__ import annotations

import contextlib
import select
from typing import Any

import peewee

__all__ = ["Listener"]


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
