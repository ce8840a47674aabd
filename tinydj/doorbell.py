"""``Doorbell``: wakes the idle workers of this process when a job is inserted."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import peewee

__all__ = ["Doorbell"]


class Doorbell:
    """Callbacks rung after an insert commits (in-process wake-up)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def remove(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def ring_after_commit(self, database: peewee.Database) -> None:
        """Ring once the insert can be seen: a job enqueued inside the
        application's transaction wakes workers only when it commits."""
        if self._callbacks:
            try:
                database.after_commit(self.ring)
            except ValueError:  # peewee's manual-commit mode has no hooks
                self.ring()

    def ring(self) -> None:
        for callback in list(self._callbacks):
            callback()
