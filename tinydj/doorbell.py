"""``Doorbell``: wakes idle workers when a job is inserted.

Those of this process through their callbacks; on a SQLite file, those of
other processes through the file's wake channel (``tinydj.wakechannel``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import peewee

from .wakechannel import Sender, sender_for

__all__ = ["Doorbell"]


class Doorbell:
    """Callbacks rung after an insert commits, and the wake channel."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        #: The database name the sender was found for, and the sender.
        self._name: object = None
        self._sender: Sender | None = None
        #: The sockets of this process's workers that ``add``'s callbacks wake.
        self._skip: frozenset[str] = frozenset()

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def remove(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def skip(self, path: str) -> None:
        """Send no datagram to ``path``: a worker woken by its callback."""
        self._skip = self._skip | {path}

    def unskip(self, path: str) -> None:
        self._skip = self._skip - {path}

    def ring_after_commit(self, database: peewee.Database) -> None:
        """Ring once the insert can be seen: a job enqueued inside the
        application's transaction wakes workers only when it commits."""
        sender = self._channel(database)
        if self._callbacks or (sender is not None and sender.active()):
            try:
                database.after_commit(self.ring)
            except ValueError:  # peewee's manual-commit mode has no hooks
                self.ring()

    def _channel(self, database: peewee.Database) -> Sender | None:
        name = database.database
        if name is not self._name:
            is_sqlite = isinstance(database, peewee.SqliteDatabase)
            self._sender = sender_for(name) if is_sqlite else None
            self._name = name
        return self._sender

    def ring(self) -> None:
        for callback in list(self._callbacks):
            callback()
        if self._sender is not None:
            self._sender.send(self._skip)
