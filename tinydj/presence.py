"""A worker as the operators see it: registered, heartbeating, counting, pausable.

``Presence`` ties one worker to the tables of ``tinydj.control``: the worker
registers when it launches, heartbeats with its lease renewals (so that
``tinydj workers`` and the dashboard tell live workers from dead ones), counts
its outcomes per minute for the dashboard's chart (written with the heartbeat,
never per job), and learns which queues are paused at most once per poll
interval. None of it may stop a worker: a failed write is logged and tried
again with the next heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from . import control
from .store import Store

__all__ = ["Presence"]

log = logging.getLogger("tinydj.worker")


class _Counts:
    """Outcomes per minute and queue, counted in memory until written.

    What ``control.Tally`` does, for one batch at a time: the minute is read
    from the clock at most once a second and each count is added in place.
    Thread-safe.
    """

    def __init__(
        self, now: Callable[[], datetime], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # minute -> queue -> [finished, failed]; _current is this minute's.
        self._minutes: dict[datetime, dict[str, list[int]]] = {}
        self._minute: datetime | None = None
        self._current: dict[str, list[int]] = {}
        self._until = 0.0  # monotonic time of the next clock reading

    def add(self, tally: dict[str, list[int]]) -> None:
        """Add ``tally`` (queue -> [succeeded, failed]) to this minute's counts."""
        tick = self._monotonic()
        with self._lock:
            if tick >= self._until:
                self._minute = self._now().replace(second=0, microsecond=0)
                self._current = self._minutes.setdefault(self._minute, {})
                self._until = tick + 1.0
            for queue, (finished, failed) in tally.items():
                cell = self._current.get(queue)
                if cell is None:
                    cell = self._current[queue] = [0, 0]
                cell[0] += finished
                cell[1] += failed

    def take(self) -> dict[tuple[datetime, str], tuple[int, int]]:
        """The counts so far (forgotten here: ``give_back`` if unwritten)."""
        with self._lock:
            minutes, self._minutes = self._minutes, {}
            self._current = {}
            if self._minute is not None:
                self._minutes[self._minute] = self._current
        return {
            (minute, queue): (cell[0], cell[1])
            for minute, queues in minutes.items()
            for queue, cell in queues.items()
        }

    def give_back(self, counts: dict[tuple[datetime, str], tuple[int, int]]) -> None:
        with self._lock:
            for (minute, queue), (finished, failed) in counts.items():
                cell = self._minutes.setdefault(minute, {}).setdefault(queue, [0, 0])
                cell[0] += finished
                cell[1] += failed

    def flush(self, store: Store) -> None:
        """Write the counts (kept for the next flush if that fails)."""
        counts = self.take()
        if not counts:
            return
        try:
            control.record_outcomes(counts, store=store)
        except Exception:
            self.give_back(counts)
            raise


class Presence:
    """The control-table side of one worker."""

    def __init__(
        self,
        store: Store,
        name: str,
        *,
        queues: Sequence[str] | None,
        poll_interval: float,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.name = name
        self.queues = queues
        self.poll_interval = poll_interval
        self._now = now
        self.threads = 1
        self._counts = _Counts(now)
        self._paused: frozenset[str] = frozenset()
        self._paused_until = 0.0
        self._paused_lock = threading.Lock()

    def announce(self, threads: int) -> None:
        """Register this worker (at launch)."""
        self.threads = threads
        self._guard("register", self._register)

    def _register(self) -> None:
        control.register_worker(
            self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            threads=self.threads,
            queues=self.queues,
            now=self._now(),
            store=self.store,
        )

    def beat(self) -> None:
        """Heartbeat and write the counted outcomes (from the lease thread)."""
        self._guard("heartbeat", self._beat)

    def _beat(self) -> None:
        if not control.heartbeat(self.name, now=self._now(), store=self.store):
            self._register()  # pruned, or the table was recreated
        self._counts.flush(self.store)

    def leave(self) -> None:
        """Write what is counted and unregister (at stop)."""

        def go() -> None:
            self._counts.flush(self.store)
            control.unregister_worker(self.name, store=self.store)

        self._guard("unregister", go)

    def count(self, tally: dict[str, list[int]]) -> None:
        """Count the runs of a batch: ``tally`` maps a queue to [succeeded,
        failed] (the clock is read at most once a second)."""
        if tally:
            self._counts.add(tally)

    def paused(self) -> frozenset[str]:
        """The paused queues, read again at most once per poll interval."""
        tick = time.monotonic()
        if tick < self._paused_until:
            return self._paused
        with self._paused_lock:
            if tick >= self._paused_until:
                try:
                    self._paused = frozenset(control.paused_queues(store=self.store))
                except Exception:
                    log.warning("%s could not read the paused queues", self.name, exc_info=True)
                self._paused_until = tick + self.poll_interval
        return self._paused

    def flush(self) -> None:
        """Write the counted outcomes now (``work_off``)."""
        self._guard("count outcomes", lambda: self._counts.flush(self.store))

    def _guard(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            log.warning("%s could not %s", self.name, what, exc_info=True)
