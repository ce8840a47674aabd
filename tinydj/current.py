"""The job running now, and the cancel requests of the jobs of this process.

``current_job()`` returns a ``CurrentJob`` inside a job that a worker runs
(a context variable the executor sets in the thread that calls the job;
``None`` elsewhere, ``immediate`` mode included). Its ``cancel_requested``
turns true once the worker has seen a ``tinydj.cancel`` of the job: the
lease renewal thread asks the table for cancel requests after each renewal
(every ``lock_timeout / 4`` seconds) and calls ``request(worker, ids)``.
An ``async def`` job's task is then cancelled; a sync job polls the flag
(or calls ``raise_if_cancelled()``).
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
    "Running",
    "current_job",
    "forget",
    "request",
    "reset_current",
    "running",
    "set_current",
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
        token = set_current(self)
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
            reset_current(token)


_current: contextvars.ContextVar[CurrentJob | None] = contextvars.ContextVar(
    "tinydj_current_job", default=None
)
_lock = threading.Lock()


class Running:
    """The jobs one worker (by name) runs now, and the cancel requests its
    renewal thread saw for jobs it holds but has not started."""

    __slots__ = ("jobs", "pending")

    def __init__(self) -> None:
        self.jobs: dict[int, CurrentJob] = {}
        self.pending: set[int] = set()

    def enter(self, job: Job, worker: str) -> CurrentJob:
        """``job`` starts (the executor): register it."""
        entry = self.jobs[job.id] = CurrentJob(job, worker)
        if self.pending and job.id in self.pending:
            with _lock:
                self.pending.discard(job.id)
            entry._requested = True
        return entry

    def leave(self, entry: CurrentJob) -> None:
        """``entry``'s run ended (the executor)."""
        self.jobs.pop(entry.job.id, None)


_workers: dict[str, Running] = {}


def running(worker: str) -> Running:
    """The ``Running`` registry of the worker named ``worker``."""
    with _lock:
        return _workers.setdefault(worker, Running())


def current_job() -> CurrentJob | None:
    """The job running in this context (inside a job run by a worker), else None."""
    return _current.get()


def set_current(entry: CurrentJob) -> contextvars.Token[CurrentJob | None]:
    """Make ``entry`` what ``current_job()`` returns in this context (the
    executor, in the thread that calls the job; ``watch``, in its task)."""
    return _current.set(entry)


def reset_current(token: contextvars.Token[CurrentJob | None]) -> None:
    _current.reset(token)


def request(worker: str, ids: Iterable[int]) -> None:
    """The worker ``worker`` saw cancel requests for ``ids`` (renewal thread)."""
    registry = running(worker)
    entries = []
    with _lock:
        for job_id in ids:
            entry = registry.jobs.get(job_id)
            if entry is None:
                registry.pending.add(job_id)
            else:
                entries.append(entry)
    for entry in entries:
        entry.request_cancel()


def forget(worker: str, ids: Iterable[int]) -> None:
    """``worker`` no longer holds ``ids``: drop their pending requests."""
    registry = _workers.get(worker)
    if registry is None or not registry.pending:  # the common case, without the lock
        return
    with _lock:
        registry.pending.difference_update(ids)
