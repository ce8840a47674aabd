"""Helpers for testing code that uses tinydj.

>>> clock = FakeClock()
>>> tinydj.configure("sqlite:///:memory:", clock=clock)  # doctest: +SKIP
>>> resize.send_in("1h", "a.png")  # doctest: +SKIP
>>> clock.advance(3600); tinydj.Worker().work_off()  # doctest: +SKIP
(1, 0)
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from .assertions import Enqueued, enqueued
from .schedule import to_naive_utc, utcnow

__all__ = ["Enqueued", "FakeClock", "enqueued"]


class FakeClock:
    """A clock that moves only when told to: pass it as ``clock=``."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = to_naive_utc(start) if start is not None else utcnow()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the clock forward; return the new time."""
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when``."""
        with self._lock:
            self._now = to_naive_utc(when)
