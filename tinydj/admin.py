"""Looking at and managing the queue: the operator's side of the table."""

from __future__ import annotations

from .config import get_config
from .job import Job
from .schedule import to_naive_utc

__all__ = ["clear", "delete_job", "get_job", "list_jobs", "retry_job", "stats"]


def get_job(job_id: int) -> Job | None:
    """The job with this id as stored now, or None (done jobs are deleted)."""
    return get_config().store.get(job_id)


def list_jobs(
    *, failed: bool | None = None, queue: str | None = None, limit: int | None = None
) -> list[Job]:
    """Jobs in id order; ``failed=True`` lists the ones that gave up."""
    return get_config().store.select(failed=failed, queue=queue, limit=limit)


def retry_job(job_id: int) -> bool:
    """Make a (failed) job due now with its attempts reset; False if it is gone."""
    config = get_config()
    return config.store.retry(job_id, to_naive_utc(config.clock()))


def delete_job(job_id: int) -> bool:
    """Delete a job; False if it was already gone."""
    return get_config().store.delete(job_id)


def clear() -> int:
    """Delete every job (failed, locked and recurring ones too); return how many."""
    return get_config().store.clear()


def stats() -> dict[str, int]:
    """Counts of jobs: ``ready``, ``scheduled`` (later), ``locked`` and ``failed``."""
    config = get_config()
    return config.store.counts(to_naive_utc(config.clock()))
