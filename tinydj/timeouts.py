"""Running a job under a deadline.

How a job that runs too long is stopped depends on where it runs:

- ``async def`` jobs are cancelled (``asyncio.wait_for``), wherever they run;
- in the main thread of a worker process (``python -m tinydj work`` with one
  thread, ``Worker(threads=1).run()``) a SIGALRM timer interrupts the job;
- in other threads Python offers no way to stop a thread: the job is
  abandoned (it may go on running in the background) and reported.

In each case the caller gets ``JobTimeout`` and records a failed attempt.
The main-thread timer also serves the graceful-shutdown deadline: when it
passes, ``ShutdownInterrupt`` is raised inside the running job.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .errors import JobTimeout

__all__ = ["MainThreadAlarm", "ShutdownInterrupt", "complete", "run_with_timeout"]


class ShutdownInterrupt(BaseException):
    """Raised inside a job when the worker's shutdown deadline has passed.

    A BaseException, so that a job's ``except Exception`` does not swallow it.
    """


class _AlarmTimeout(BaseException):
    pass


async def _with_timeout(awaitable: Any, timeout: float | None) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


def _complete(result: Any, timeout: float | None, started: float) -> Any:
    """Run an awaitable result to completion (a fresh event loop per job)."""
    if not inspect.isawaitable(result):
        return result
    remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
    try:
        return asyncio.run(_with_timeout(result, remaining))
    except TimeoutError:
        raise JobTimeout(
            f"the job ran longer than its timeout of {timeout:g} s and was cancelled"
        ) from None


def complete(result: Any) -> Any:
    """Finish a job's result without a deadline: await it if it is awaitable."""
    if result is None:  # most jobs return nothing
        return None
    return _complete(result, None, 0.0) if inspect.isawaitable(result) else result


class MainThreadAlarm:
    """One SIGALRM timer for the main thread: a job's deadline and the
    shutdown deadline, whichever comes first."""

    def __init__(self) -> None:
        self.job_deadline: float | None = None
        self.shutdown_deadline: float | None = None
        self._in_job = False
        self._armed = False
        self._installed = False
        self._previous: Any = None

    @staticmethod
    def usable() -> bool:
        return (
            hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )

    def __enter__(self) -> MainThreadAlarm:
        self._previous = signal.signal(signal.SIGALRM, self._fire)
        self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self._installed:
            signal.signal(signal.SIGALRM, self._previous)
            self._installed = False

    def _arm(self) -> None:
        # Only a running job is interrupted; between jobs the loop itself
        # sees that the worker is stopping.
        candidates = (self.job_deadline, self.shutdown_deadline) if self._in_job else ()
        deadlines = [d for d in candidates if d is not None]
        if not deadlines:
            if self._armed:  # no system call per job when there is nothing to time
                signal.setitimer(signal.ITIMER_REAL, 0)
                self._armed = False
            return
        signal.setitimer(signal.ITIMER_REAL, max(min(deadlines) - time.monotonic(), 0.001))
        self._armed = True

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not self._in_job:
            return
        if self.shutdown_deadline is not None and now >= self.shutdown_deadline:
            self._in_job = False
            raise ShutdownInterrupt
        if self.job_deadline is not None and now >= self.job_deadline:
            self._in_job = False
            raise _AlarmTimeout
        self._arm()  # fired early (rounding): wait for the rest

    def set_shutdown_deadline(self, seconds: float) -> None:
        """From now on, interrupt the running job ``seconds`` from now."""
        self.shutdown_deadline = time.monotonic() + seconds
        self._arm()

    def run(self, fn: Callable[[], Any], timeout: float | None) -> Any:
        started = time.monotonic()
        self.job_deadline = None if timeout is None else started + timeout
        self._in_job = True
        self._arm()
        try:
            return _complete(fn(), timeout, started)
        except _AlarmTimeout:
            raise JobTimeout(
                f"the job ran longer than its timeout of {timeout:g} s and was stopped"
            ) from None
        finally:
            self._in_job = False
            self.job_deadline = None
            self._arm()


def run_with_timeout(
    fn: Callable[[], Any],
    timeout: float | None,
    alarm: MainThreadAlarm | None = None,
    *,
    is_async: bool = False,
) -> Any:
    """Call ``fn`` (and await its result if it is awaitable); ``JobTimeout``
    after ``timeout`` seconds. ``alarm``: the main thread's timer, if the job
    runs there; ``is_async``: ``fn`` returns a coroutine (cancelled on time)."""
    started = time.monotonic()
    if alarm is not None:
        return alarm.run(fn, timeout)
    if timeout is None or is_async:
        return _complete(fn(), timeout, started)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = _complete(fn(), timeout, started)
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="tinydj-job", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise JobTimeout(
            f"the job ran longer than its timeout of {timeout:g} s; it was abandoned "
            "(a thread cannot be stopped) and may still be running"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
