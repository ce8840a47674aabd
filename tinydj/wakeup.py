"""Waking idle worker threads when a job may have become due.

Four sources ring the bell: an enqueue in this process (``Store`` calls
``ring`` after the commit), on SQLite an enqueue by another process (a
datagram on the file's wake channel, ``tinydj.wakechannel``) and, slowly, a
commit by anything else (``PRAGMA data_version`` changes), on PostgreSQL a
NOTIFY (the LISTEN thread).

An idle thread must not sleep through a job enqueued between its look at the
table and its sleep. So the counters are read *before* the look, and the
only way to get a ``Ticket`` to sleep on is ``look(reserve)``, which reads
them and then calls ``reserve``::

    jobs, ticket = wakeup.look(reserve, watch=idle)
    if not jobs:
        wakeup.sleep(ticket)   # returns at once if anything rang since the look

The wake channel follows the same rule: a watching look first drains the
channel's socket (what it held turns into a ring), then reads the counters;
a datagram that arrives later is still in the socket when the thread sleeps.
One sleeping thread at a time (the reader) waits on the socket; the others
wait on the condition, and a ring pokes the reader out of its wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .sql import SQLITE
from .store import Listener, Store
from .wakechannel import Receiver

__all__ = ["CHANNEL_TICK", "MAX_ERROR_PAUSE", "WATCH_TICK", "Ticket", "WakeUp"]

log = logging.getLogger("tinydj.worker")
T = TypeVar("T")

#: How often (seconds) an idle SQLite worker checks ``PRAGMA data_version`` to
#: notice jobs enqueued by other processes, when it has no wake channel.
WATCH_TICK = 0.005
#: The same while the wake channel is live: enqueues by tinydj come through
#: the channel, so this only bounds the latency of other writers (plain SQL
#: inserts, ``UPDATE ... SET run_at``) and of jobs released by other processes.
CHANNEL_TICK = 0.1
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
        #: The wake channel (SQLite files), opened at the first watching look.
        self._channel: Receiver | None = None
        self._no_channel = store.dialect is not SQLITE
        #: True while a sleeping thread waits on the channel.
        self._reading = False
        #: Wake-ups that came through the channel (tests, diagnostics).
        self.channel_wakes = 0

    @property
    def channel_live(self) -> bool:
        """True while this worker has a wake channel open."""
        return self._channel is not None

    def ring(self) -> None:
        """Make idle threads look for jobs now."""
        with self._cond:
            self._ring()
            if self._stopping.is_set() and not self._reading:
                self._close_channel()

    def _ring(self) -> None:
        # Under self._cond.
        self._generation += 1
        self._cond.notify_all()
        if self._reading and self._channel is not None:
            self._channel.poke()

    def look(self, reserve: Callable[[], T], *, watch: bool) -> tuple[T, Ticket]:
        """Read the counters, then call ``reserve``; return its result and the
        ticket to sleep on. ``watch``: also read SQLite's ``data_version`` (a
        query: only worth it for a thread that found nothing last time) and
        drain the wake channel."""
        if watch and not self._no_channel:
            self._drain()
        ticket = Ticket(self._generation, self.store.data_version() if watch else None)
        return reserve(), ticket

    def _drain(self) -> None:
        """Open the channel if need be; turn what it holds into a ring."""
        with self._cond:
            channel = self._channel
            if channel is not None and channel.inherited:  # forked: the parent's
                self._reading = False
                self._close_channel()
                channel = None
            if channel is None and not self._stopping.is_set():
                channel = self._channel = Receiver.open(self.store.db.database)
                self._no_channel = channel is None
                if channel is not None:
                    # This store's enqueues ring us directly (Store -> wake()).
                    self.store.doorbell.skip(channel.path)
            if channel is not None and channel.drain():
                self.channel_wakes += 1
                self._ring()

    def _close_channel(self) -> None:
        # Under self._cond, with no reader.
        channel, self._channel = self._channel, None
        if channel is not None:
            self.store.doorbell.unskip(channel.path)
            channel.close()

    def sleep(self, ticket: Ticket) -> None:
        """Sleep until rung since ``ticket``, a commit by another process
        (SQLite), the worker stops, or the poll interval has passed."""
        deadline = time.monotonic() + self.poll_interval
        version = ticket.version
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            woke = self._wait(ticket, remaining)
            if woke:
                return
            if woke is False and version is not None and self.store.data_version() != version:
                if self._channel is not None:
                    self.ring()  # only the reader watches: tell the others
                return

    def _wait(self, ticket: Ticket, remaining: float) -> bool | None:
        """Wait at most ``remaining`` seconds. True: rung since ``ticket``;
        False: a watching thread's tick is over (time to read
        ``data_version``); None: neither (the channel is free to read)."""
        with self._cond:
            if self._generation != ticket.generation:
                return True
            channel = self._channel
            if ticket.version is None or (channel is not None and self._reading):
                # The reader watches for everybody.
                self._cond.wait(remaining)
                return True if self._generation != ticket.generation else None
            if channel is None:
                self._cond.wait(min(remaining, WATCH_TICK))
                return self._generation != ticket.generation
            self._reading = True
        return self._read(channel, ticket, min(remaining, CHANNEL_TICK))

    def _read(self, channel: Receiver, ticket: Ticket, timeout: float) -> bool:
        """Be the thread that waits on the channel, for ``timeout`` seconds."""
        ready = True
        try:
            ready = channel.wait(timeout)
        finally:
            with self._cond:
                self._reading = False
                if ready and channel.drain():
                    self.channel_wakes += 1
                    self._ring()
                else:
                    self._cond.notify()  # another sleeper takes over the channel
                if self._stopping.is_set():
                    self._close_channel()
        return self._generation != ticket.generation

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
