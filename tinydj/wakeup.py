"""Waking idle worker threads when a job may have become due.

Three sources ring the bell: an enqueue in this process (``Store`` calls
``ring`` after the commit), on SQLite a commit by any process (``PRAGMA
data_version`` changes), on PostgreSQL a NOTIFY (the LISTEN thread).

An idle thread must not sleep through a job enqueued between its look at the
table and its sleep. So the counters are read *before* the look, and the
only way to get a ``Ticket`` to sleep on is ``look(reserve)``, which reads
them and then calls ``reserve``::

    jobs, ticket = wakeup.look(reserve, watch=idle)
    if not jobs:
        wakeup.sleep(ticket)   # returns at once if anything rang since the look
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .store import Listener, Store

__all__ = ["MAX_ERROR_PAUSE", "WATCH_TICK", "Ticket", "WakeUp"]

log = logging.getLogger("tinydj.worker")
T = TypeVar("T")

#: How often (seconds) an idle SQLite worker checks ``PRAGMA data_version`` to
#: notice jobs enqueued by other processes without a full poll.
WATCH_TICK = 0.005
#: Longest pause after the database failed, before trying again.
MAX_ERROR_PAUSE = 10.0
#: How long one wait of the LISTEN thread lasts (it ends within this after stop).
LISTEN_TICK = 0.25


@dataclass(frozen=True, slots=True)
class Ticket:
    """The counters as they were before a look at the table."""

    generation: int
    version: int | None


class WakeUp:
    """The doorbell of one worker's idle threads.

    ``stopping``: set when the worker stops (sleepers return at once).
    """

    def __init__(self, store: Store, poll_interval: float, stopping: threading.Event) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._stopping = stopping
        self._cond = threading.Condition()
        self._generation = 0

    def ring(self) -> None:
        """Make idle threads look for jobs now."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def look(self, reserve: Callable[[], T], *, watch: bool) -> tuple[T, Ticket]:
        """Read the counters, then call ``reserve``; return its result and the
        ticket to sleep on. ``watch``: also read SQLite's ``data_version`` (a
        query: only worth it for a thread that found nothing last time)."""
        ticket = Ticket(self._generation, self.store.data_version() if watch else None)
        return reserve(), ticket

    def sleep(self, ticket: Ticket) -> None:
        """Sleep until rung since ``ticket``, a commit by another process
        (SQLite), the worker stops, or the poll interval has passed."""
        deadline = time.monotonic() + self.poll_interval
        version = ticket.version
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with self._cond:
                if self._generation != ticket.generation:
                    return
                self._cond.wait(remaining if version is None else min(remaining, WATCH_TICK))
                if self._generation != ticket.generation:
                    return
            if version is not None and self.store.data_version() != version:
                return

    def listen(
        self, listener: Listener, ended: threading.Event, finished: threading.Event, name: str
    ) -> None:
        """The LISTEN thread (Postgres): ring on NOTIFY; reconnect after errors.

        ``ended`` belongs to one launch of the worker: stop() does not wait
        for this thread, and a restarted worker must not keep the old one.
        """
        pause = 0.1
        try:
            while not ended.is_set() and not finished.is_set():
                try:
                    if listener.wait(LISTEN_TICK):
                        self.ring()
                    pause = 0.1
                except Exception as exc:
                    log.warning(
                        "%s: LISTEN connection failed (%s); polling until it is back",
                        name,
                        exc,
                        extra={"action": "listen_error"},
                    )
                    listener.close()
                    self._stopping.wait(pause)
                    pause = min(pause * 2, MAX_ERROR_PAUSE)
        finally:
            listener.close()
