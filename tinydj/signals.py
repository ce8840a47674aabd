"""Graceful stop on SIGINT/SIGTERM for the foreground worker.

Only ``Worker.run()`` and the CLI install handlers, and only from the main
thread. The handlers merely call a callback (which sets a flag); the first
signal asks for a graceful stop, a second one exits the process at once and
leaves the jobs it held to be reclaimed when their leases expire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["HARD_EXIT_STATUS", "on_stop"]

log = logging.getLogger(__name__)

#: Exit status after a second signal (128 + SIGINT, as a shell reports Ctrl-C).
HARD_EXIT_STATUS = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_stop(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on the first SIGINT/SIGTERM; exit hard on the second.

    Outside the main thread this does nothing (Python only lets the main
    thread set handlers). Previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            callback()
            return
        try:
            sys.stderr.write(
                f"tinydj: second {signal.Signals(signum).name}, exiting now; "
                "jobs that were running will be retried when their leases expire\n"
            )
            sys.stderr.flush()
        finally:
            os._exit(HARD_EXIT_STATUS)

    previous: dict[signal.Signals, Any] = {}
    for sig in _SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
