"""Looking at and managing the queue: the operator's side of the table.

Every job is in exactly one state, the same word in ``tinydj list``,
``tinydj stats``, ``tinydj show`` and here (``STATES``):

- ``ready``: due now, waiting for a worker;
- ``scheduled``: due later (``send_in``/``send_at``, or a retry after a failure);
- ``running``: a worker holds its lock (its lease);
- ``failed``: gave up after ``max_attempts`` (``failed_at`` set; kept for retry);
- ``recurring``: the row of an ``@every`` function or ``tinydj.schedule``,
  between runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import Config, get_config
from .errors import JobRunning
from .job import Job
from .schedule import to_naive_utc

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "STATES",
    "QueueStats",
    "clear",
    "clear_jobs",
    "delete_job",
    "find_jobs",
    "get_job",
    "list_jobs",
    "queue_stats",
    "retry_job",
    "state_of",
    "stats",
]

#: The states of a job, in the order they are shown.
STATES = ("ready", "scheduled", "running", "failed", "recurring")
#: A lock younger than this (seconds) is a live worker's lease (the worker's
#: own default ``lock_timeout``).
DEFAULT_LOCK_TIMEOUT = 30.0


def _now(config: Config) -> datetime:
    return to_naive_utc(config.clock())


def state_of(job: Job, now: datetime) -> str:
    """The state of ``job`` at ``now`` (naive UTC): one of ``STATES``."""
    if job.failed:
        return "failed"
    if job.locked:
        return "running"
    if job.recurring:
        return "recurring"
    return "ready" if job.run_at <= now else "scheduled"


def get_job(job_id: int) -> Job | None:
    """The job with this id as stored now, or None (done jobs are deleted)."""
    return get_config().store.get(job_id)


def list_jobs(
    *, failed: bool | None = None, queue: str | None = None, limit: int | None = None
) -> list[Job]:
    """Jobs in id order; ``failed=True`` lists the ones that gave up."""
    return get_config().store.select(failed=failed, queue=queue, limit=limit)


def find_jobs(
    *, state: str | None = None, queue: str | None = None, limit: int | None = None
) -> tuple[list[Job], int]:
    """Jobs in id order of one state (see ``STATES``) and/or queue, at most
    ``limit`` of them, and how many match in all."""
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
    config = get_config()
    return config.store.states.select(_now(config), state=state, queue=queue, limit=limit)


def retry_job(job_id: int, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> bool:
    """Make a job due now with its attempts reset; False if it is gone.

    Meant for failed jobs; a scheduled job (waiting for its time or for its
    next attempt) is brought forward. A job that a live worker is running
    (its lock is younger than ``lock_timeout`` seconds) is left alone and
    ``tinydj.JobRunning`` is raised, so that it never runs twice at once; a
    lock older than that belongs to a dead worker and is cleared.
    """
    config = get_config()
    now = _now(config)
    live_after = now - timedelta(seconds=lock_timeout)
    if config.store.states.retry_unless_held(job_id, now, live_after):
        return True
    job = config.store.get(job_id)
    if job is None:
        return False
    if job.locked_at is None or job.locked_at < live_after:
        # MySQL counts only rows whose values changed: this one already was
        # exactly what the retry would make it.
        return True
    raise JobRunning(
        f"job {job_id} is running on worker {job.locked_by}; retry it when it has failed"
    )


def delete_job(job_id: int) -> bool:
    """Delete a job; False if it was already gone."""
    return get_config().store.delete(job_id)


def clear_jobs(*, queue: str | None = None, states: Iterable[str] | None = None) -> dict[str, int]:
    """Delete the jobs of some states (default all) and/or of one queue, in
    one transaction; return how many of each state were deleted."""
    chosen = list(STATES if states is None else states)
    unknown = [s for s in chosen if s not in STATES]
    if unknown:
        raise ValueError(f"states must be among {', '.join(STATES)}, not {unknown!r}")
    config = get_config()
    return config.store.states.delete(_now(config), chosen, queue=queue)


def clear(*, queue: str | None = None, failed: bool = False) -> int:
    """Delete every job (failed, running and recurring ones too); return how many.

    ``queue`` only deletes that queue's jobs, ``failed=True`` only failed ones.
    """
    if queue is None and not failed:
        return get_config().store.clear()
    return sum(clear_jobs(queue=queue, states=["failed"] if failed else None).values())


def stats() -> dict[str, int]:
    """Counts of jobs: ``ready``, ``scheduled`` (later), ``locked`` and ``failed``.

    (Recurring rows count as ready or scheduled here; ``queue_stats`` uses
    the states of ``STATES``.)
    """
    config = get_config()
    return config.store.counts(_now(config))


@dataclass(frozen=True)
class QueueStats:
    """The jobs of one queue per state, and its lag."""

    queue: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    #: How long the oldest ready job has been due (None: no ready job): how far
    #: behind the workers of this queue are.
    lag: timedelta | None = None


def queue_stats() -> list[QueueStats]:
    """Per queue (by name), the count of each state and the lag."""
    config = get_config()
    now = _now(config)
    queues: dict[str, QueueStats] = {}
    for queue, state, count, oldest in config.store.states.counts(now):
        entry = queues.setdefault(queue, QueueStats(queue))
        entry.counts[state] = count
        if state == "ready" and oldest is not None:
            queues[queue] = QueueStats(queue, entry.counts, max(now - oldest, timedelta(0)))
    return [queues[name] for name in sorted(queues)]
