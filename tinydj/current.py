"""The job running now, and the cancel requests of the jobs of this process.

``current_job()`` returns a ``CurrentJob`` inside a job that a worker runs
(a context variable the executor sets in the thread that calls the job, and
``watch`` in an ``async def`` job's task; ``None`` elsewhere, ``immediate``
mode included). Its ``cancel_requested`` turns true once the worker has seen
a ``tinydj.cancel`` of the job: the lease renewal thread asks the table for
cancel requests after each renewal (every ``lock_timeout / 4`` seconds) and
calls ``request(worker, ids)``. An ``async def`` job's task is then
cancelled; a sync job polls the flag (or calls ``raise_if_cancelled()``).

The cost for the jobs nobody cancels is one context variable set and reset
per job: the requests are a set per worker, empty unless someone cancelled.
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
    "watch",
]


class JobCancelled(TinyDJError):
    """The job was cancelled (``tinydj.cancel``) while it ran."""


class Running:
    """The cancel requests one worker (by name) saw for jobs it holds, and
    the tasks of its running ``async def`` jobs (to cancel them)."""

    __slots__ = ("cancelled", "tasks")

    def __init__(self) -> None:
        self.cancelled: set[int] = set()
        self.tasks: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}

    def requested(self, job_id: int) -> bool:
        """True if a cancel request for ``job_id`` has reached this worker."""
        return bool(self.cancelled) and job_id in self.cancelled


class CurrentJob:
    """The job a worker runs in this context: ``job`` (its row as reserved),
    ``id``, ``cancel_requested``; other attributes are the ``Job``'s."""

    __slots__ = ("_running", "job")

    def __init__(self, job: Job, running: Running) -> None:
        self.job = job
        self._running = running

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
        return self._running.requested(self.job.id)

    def raise_if_cancelled(self) -> None:
        """Raise ``JobCancelled`` if a cancel request has arrived."""
        if self.cancel_requested:
            raise JobCancelled(f"job {self.job.id} was cancelled")


_current: contextvars.ContextVar[tuple[Job, Running] | None] = contextvars.ContextVar(
    "tinydj_current_job", default=None
)
_lock = threading.Lock()
_workers: dict[str, Running] = {}


def running(worker: str) -> Running:
    """The ``Running`` registry of the worker named ``worker``."""
    with _lock:
        return _workers.setdefault(worker, Running())


def current_job() -> CurrentJob | None:
    """The job running in this context (inside a job run by a worker), else None."""
    now = _current.get()
    return None if now is None else CurrentJob(*now)


def set_current(job: Job, registry: Running) -> contextvars.Token[tuple[Job, Running] | None]:
    """Make ``job`` what ``current_job()`` returns in this context."""
    return _current.set((job, registry))


def reset_current(token: contextvars.Token[tuple[Job, Running] | None]) -> None:
    _current.reset(token)


#: ``set_current`` / ``reset_current`` without a call of their own, for the
#: executor's hot path: ``token = enter((job, registry))``; ``leave(token)``.
enter = _current.set
leave = _current.reset


async def watch(coro: Coroutine[Any, Any, Any], job: Job, registry: Running) -> Any:
    """Await an ``async def`` job's coroutine so that a cancel request cancels it."""
    me = asyncio.current_task()
    assert me is not None
    # Register, then look: ``request`` adds, then looks for the task; one of
    # the two always sees the other.
    registry.tasks[job.id] = (asyncio.get_running_loop(), me)
    token = set_current(job, registry)
    try:
        if registry.requested(job.id):
            coro.close()
            raise JobCancelled(f"job {job.id} was cancelled")
        return await coro
    except asyncio.CancelledError:
        if not registry.requested(job.id):
            raise
        raise JobCancelled(f"job {job.id} was cancelled while it awaited") from None
    finally:
        registry.tasks.pop(job.id, None)
        reset_current(token)


def request(worker: str, ids: Iterable[int]) -> None:
    """The worker ``worker`` saw cancel requests for ``ids`` (renewal thread)."""
    registry = running(worker)
    for job_id in ids:
        with _lock:
            registry.cancelled.add(job_id)
        task = registry.tasks.get(job_id)
        if task is not None:
            loop, pending = task
            with contextlib.suppress(RuntimeError):  # its loop has closed: it finished
                loop.call_soon_threadsafe(pending.cancel)


def forget(worker: str, ids: Iterable[int]) -> None:
    """``worker`` no longer holds ``ids``: drop their requests."""
    registry = _workers.get(worker)
    if registry is None or not registry.cancelled:  # the common case, without the lock
        return
    with _lock:
        registry.cancelled.difference_update(ids)
