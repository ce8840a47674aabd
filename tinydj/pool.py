"""The threads of one launch of a worker: its runners and the LISTEN thread.

``stop`` waits for the runners (at most ``timeout`` seconds in all) but not
for the LISTEN thread, which ends by itself within its short wait, closing
its connection: waiting for it would only delay every stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["Pool"]

log = logging.getLogger("tinydj.worker")

RUNNER = "tinydj-worker"
LISTEN = "tinydj-listen"


class Pool:
    """Starts, joins and abandons the threads of a worker named ``worker``."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.threads: list[threading.Thread] = []

    def launch(
        self,
        runner: Callable[[], None],
        count: int,
        listen: tuple[Callable[..., None], Sequence[object]] | None,
    ) -> None:
        """Start ``count`` runner threads, and the LISTEN thread if given."""
        threads = [
            threading.Thread(target=runner, name=f"{RUNNER}-{i}", daemon=True)
            for i in range(1, count + 1)
        ]
        if listen is not None:
            target, args = listen
            threads.append(threading.Thread(target=target, args=args, name=LISTEN, daemon=True))
        self.threads = threads
        for thread in threads:
            thread.start()

    def stop(self, timeout: float | None) -> None:
        """Wait for the runners (``timeout``: at most that long in all); warn
        about those still running then (their jobs are released by the caller)."""
        threads, self.threads = self.threads, []
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread() and thread.name != LISTEN:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        abandoned = [t for t in threads if t.is_alive() and t.name.startswith(RUNNER)]
        if abandoned:
            log.warning(
                "%s: %d job thread(s) still running after the %.1f s shutdown timeout; "
                "their jobs are released and will run again elsewhere",
                self.worker,
                len(abandoned),
                timeout,
                extra={"action": "shutdown_timeout"},
            )

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads to end; True if they all have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self.threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.alive

    @property
    def alive(self) -> bool:
        """True while any of the threads runs."""
        return any(t.is_alive() for t in self.threads)

    def __bool__(self) -> bool:
        return bool(self.threads)
