"""Counts per queue and state, kept fresh in the background once they get slow.

Counting a table of a million rows takes most of a second on SQLite (the
failed rows have no index, and SQLite cannot count from a partial one alone).
While counting is quick (under ``SLOW``) it is done for every request, so the
numbers are exact. Once it is slow the last result is served at once and a
background thread counts again when it is older than ``MAX_AGE`` (at most one
such thread per app); pages then say how old the numbers are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..store import Store
from .queries import QueueCounts, queue_counts

__all__ = ["MAX_AGE", "SLOW", "CountsCache", "Snapshot"]

log = logging.getLogger(__name__)

#: Seconds: counting faster than this is done for every request.
SLOW = 0.05
#: Seconds: slow counts older than this are refreshed in the background.
MAX_AGE = 5.0


@dataclass(frozen=True)
class Snapshot:
    counts: list[QueueCounts]
    #: When they were counted (the app's clock), and whether from the cache.
    counted_at: datetime
    cached: bool = False


class CountsCache:
    """One per app; thread-safe."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: tuple[float, Snapshot] | None = None
        self._refreshing = False

    def get(self, store: Store, now: datetime) -> Snapshot:
        with self._lock:
            last = self._last
            if last is not None:
                stale = self._monotonic() - last[0] > MAX_AGE
                if stale and not self._refreshing:
                    self._refreshing = True
                    threading.Thread(
                        target=self._refresh, args=(store, now), daemon=True, name="tinydj-counts"
                    ).start()
                return Snapshot(last[1].counts, last[1].counted_at, cached=True)
        return self._count(store, now)

    def _count(self, store: Store, now: datetime) -> Snapshot:
        started = self._monotonic()
        snapshot = Snapshot(queue_counts(store, now), now)
        slow = self._monotonic() - started >= SLOW
        with self._lock:
            self._last = (self._monotonic(), snapshot) if slow else None
        return snapshot

    def _refresh(self, store: Store, now: datetime) -> None:
        try:
            self._count(store, now)
        except Exception:  # the next request tries again
            log.exception("counting jobs for the dashboard failed")
        finally:
            with self._lock:
                self._refreshing = False
            db = store.db
            if getattr(db, "database", None) != ":memory:":
                store.close()  # this thread's connection
