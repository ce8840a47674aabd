"""The job running now, and the cancel requests of the jobs of this process.

``current_job()`` returns a ``CurrentJob`` inside a job that a worker runs
(a context variable the executor sets; ``None`` elsewhere, ``immediate``
mode included). Its ``cancel_requested`` turns true once the worker has seen
a ``tinydj.cancel`` of the job: the lease renewal thread asks the table for
cancel requests after each renewal (every ``lock_timeout / 4`` seconds) and
calls ``request(worker, ids)``. An ``async def`` job's task is then
cancelled; a sync job polls the flag (or calls ``raise_if_cancelled()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Coroutine, Iterable
from typing import Any

from .errors import TinyDJError
from .job import Job

__all__ = [
    "CurrentJob",
    "JobCancelled",
    "current_job",
    "enter",
    "forget",
    "leave",
    "request",
]


class JobCancelled(TinyDJError):
    """The job was cancelled (``tinydj.cancel``) while it ran."""


class CurrentJob:
    """The job a worker runs in this context: ``job`` (its row as reserved),
    ``id``, ``cancel_requested``; other attributes are the ``Job``'s."""

    __slots__ = ("_requested", "_task", "job", "worker")

    def __init__(self, job: Job, worker: str) -> None:
        self.job = job
        self.worker = worker
        # Plain attributes (one job, a few threads): a request sets the flag
        # and then reads the task; ``watch`` sets the task and then reads the
        # flag, so one of them always sees the other.
        self._requested = False
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    def __repr__(self) -> str:
        return f"<tinydj.CurrentJob {self.job.id} {self.job.name}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.job, name)

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def cancel_requested(self) -> bool:
        """True once the worker has seen a cancel request for this job."""
        return self._requested

    def raise_if_cancelled(self) -> None:
        """Raise ``JobCancelled`` if a cancel request has arrived."""
        if self._requested:
            raise JobCancelled(f"job {self.job.id} was cancelled")

    def request_cancel(self) -> None:
        """Set the flag; cancel the task of an ``async def`` job."""
        self._requested = True
        task = self._task
        if task is not None:
            loop, pending = task
            with contextlib.suppress(RuntimeError):  # its loop has closed: it finished
                loop.call_soon_threadsafe(pending.cancel)

    async def watch(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await an ``async def`` job's coroutine so that a request cancels it."""
        me = asyncio.current_task()
        assert me is not None
        self._task = (asyncio.get_running_loop(), me)
        try:
            if self._requested:
                coro.close()
                raise JobCancelled(f"job {self.job.id} was cancelled")
            return await coro
        except asyncio.CancelledError:
            if not self._requested:
                raise
            raise JobCancelled(f"job {self.job.id} was cancelled while it awaited") from None
        finally:
            self._task = None


_current: contextvars.ContextVar[CurrentJob | None] = contextvars.ContextVar(
    "tinydj_current_job", default=None
)
_lock = threading.Lock()
_running: dict[tuple[str, int], CurrentJob] = {}
#: Requests seen for jobs reserved but not started yet.
_pending: set[tuple[str, int]] = set()


def current_job() -> CurrentJob | None:
    """The job running in this context (inside a job run by a worker), else None."""
    return _current.get()


def enter(job: Job, worker: str) -> tuple[CurrentJob, contextvars.Token[CurrentJob | None]]:
    """Make ``job`` the current job (the executor, before it runs it)."""
    entry = CurrentJob(job, worker)
    key = (worker, job.id)
    _running[key] = entry
    if _pending and key in _pending:
        with _lock:
            _pending.discard(key)
        entry._requested = True
    return entry, _current.set(entry)


def leave(entry: CurrentJob, token: contextvars.Token[CurrentJob | None]) -> None:
    """The current job ended (the executor, after it ran)."""
    _current.reset(token)
    _running.pop((entry.worker, entry.job.id), None)


def request(worker: str, ids: Iterable[int]) -> None:
    """The worker ``worker`` saw cancel requests for ``ids`` (renewal thread)."""
    entries = []
    with _lock:
        for job_id in ids:
            entry = _running.get((worker, job_id))
            if entry is None:
                _pending.add((worker, job_id))
            else:
                entries.append(entry)
    for entry in entries:
        entry.request_cancel()


def forget(worker: str, ids: Iterable[int]) -> None:
    """``worker`` no longer holds ``ids``: drop their pending requests."""
    if not _pending:  # the common case, without the lock
        return
    with _lock:
        _pending.difference_update((worker, job_id) for job_id in ids)
