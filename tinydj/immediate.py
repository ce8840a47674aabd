"""Immediate mode: ``configure(..., immediate=True)`` runs jobs in the caller.

For tests, as huey's ``immediate=True`` and RQ's ``is_async=False``:
``send_later``, ``send_at``, ``send_in``, ``send_later_many``, ``enqueue`` and
``tinydj.send_later`` write the handler, load it again (so an argument that
cannot be stored still fails, and the job sees what a worker would see) and
run it at once, whatever its ``run_at``. Nothing is written to the table.

- The job's exception reaches the caller unchanged; there are no retries.
- Object jobs' hooks run as in a worker: ``before``, then ``success`` or
  ``error`` and ``failure``, then ``after``.
- ``async def`` jobs are awaited in an event loop of their own; ``timeout``
  is not enforced (the job runs in the caller's thread).
- The returned ``Job`` describes the call; its ``id`` is negative (-1, -2,
  ...), never the id of a row, so ``get_job(job.id)`` is None.
- ``schedule()`` and ``@every`` still store their recurring rows.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from . import serialize
from .config import Config
from .hooks import call_hook
from .job import Job, NewJob
from .schedule import to_naive_utc
from .timeouts import complete

__all__ = ["run"]

_ids = itertools.count(1)


def run(config: Config, handler: str, queue: str, priority: int, run_at: datetime | None) -> Job:
    """Load ``handler`` and run it now; return a ``Job`` that describes it."""
    call = serialize.load(
        handler, allow_pickle=config.allow_pickle, allowed_modules=config.allowed_modules
    )
    now = to_naive_utc(config.clock())
    job = NewJob(handler, queue, priority, run_at or now).inserted(-next(_ids), now)
    hooks = call.target if getattr(call.fn, "__name__", None) == "perform" else None
    call_hook(hooks, "before", job)
    try:
        complete(call.fn(*call.args, **call.kwargs))
    except (Exception, SystemExit) as exc:
        call_hook(hooks, "error", job, exc)
        call_hook(hooks, "after", job)
        call_hook(hooks, "failure", job)
        raise
    call_hook(hooks, "success", job)
    call_hook(hooks, "after", job)
    return job
