"""``tinydj.cancel(job_id)``: remove a waiting job, or ask its worker to stop it.

- A job nobody runs (waiting, scheduled, retrying, or held by a dead worker
  whose lease is older than ``lock_timeout``) is deleted at once: ``"deleted"``.
- A running job gets ``cancel_requested_at``: its worker sees the request
  after its next lease renewal (every ``lock_timeout / 4`` seconds), sets
  ``tinydj.current_job().cancel_requested`` and cancels the task of an
  ``async def`` job: ``"requested"``. However the run then ends, the job
  fails at once, without retries, with a ``last_error`` starting
  ``Cancelled:`` (``tinydj show ID`` shows it; ``tinydj retry ID`` runs it
  again). A recurring row's run is cancelled and the row keeps its schedule.
- ``"failed"``: the job had failed already (it is kept; ``delete`` removes it).
- ``"unknown"``: no such job (it finished, or never existed).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, cast

from . import options
from .admin import DEFAULT_LOCK_TIMEOUT
from .config import get_config
from .schedule import to_naive_utc

__all__ = ["CancelResult", "cancel"]

CancelResult = Literal["deleted", "requested", "failed", "unknown"]


def cancel(job_id: int, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> CancelResult:
    """Cancel job ``job_id``; return what happened (see the module's docstring).

    ``lock_timeout``: the workers' (default 30 s): a lock older than that
    belongs to a dead worker, and its job is deleted like a waiting one.
    """
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise TypeError(f"job_id must be an int, not {job_id!r}")
    options.lock_timeout(lock_timeout)
    config = get_config()
    now = to_naive_utc(config.clock())
    result = config.store.cancel(job_id, now, now - timedelta(seconds=lock_timeout))
    return cast(CancelResult, result)
