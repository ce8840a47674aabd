"""``@cron``: run a function on a cron schedule, in a time zone.

>>> @cron("0 9 * * MON-FRI", tz="Europe/Berlin", queue="reports")
... def morning_report() -> None: ...

The function is also a ``@job`` (it runs inline when called and can be sent
with ``send_later``). Like an ``@every`` task it has one recurring row, keyed
by its import path, that every worker writes before its first job; the row's
``run_at`` is the next fire time and its ``reoccur_in`` the spec
(``"0 9 * * MON-FRI Europe/Berlin"``). The fire-time arithmetic lives in
``recurrence.py``.

Each fire time runs once across all workers: the row is unique by key, one
worker at a time holds it, and when its run ends ``run_at`` moves past the fire
time. A fire time missed while no worker ran is not replayed: the row runs once
when a worker is back, then waits for the next fire time after that run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypedDict, TypeVar, Unpack
from zoneinfo import ZoneInfo

from .recurrence import Cron
from .tasks import Task, job, register_recurring

__all__ = ["JobOptions", "cron"]

P = ParamSpec("P")
R = TypeVar("R")


class JobOptions(TypedDict, total=False):
    """The options of ``@job`` that ``@cron`` passes on."""

    queue: str
    priority: int
    max_attempts: int | None
    timeout: float | None


def cron(
    expr: str, tz: str | ZoneInfo | None = None, **job_options: Unpack[JobOptions]
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Run a function at the times of a five-field cron expression.

    ``expr``: minute, hour, day of month, month, day of week, with ``*``,
    lists (``1,15``), ranges (``MON-FRI``), steps (``*/15``) and the names
    ``JAN``-``DEC`` and ``SUN``-``SAT`` in any case. ``tz``: an IANA zone name
    (default UTC) in which the times are read; across DST changes a job at a
    fixed time runs once a day (Debian cron's rules). ``job_options``: those
    of ``@job`` (``queue``, ``priority``, ``max_attempts``, ``timeout``).

    Raises ``ValueError`` naming the text for an invalid expression or an
    unknown zone, and for a bad option, at decoration.
    """
    spec = Cron.parse(expr, tz)
    make = job(**job_options)  # validates the options now, not at the first run

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        task = make(fn)
        task.recurrence = spec
        register_recurring(task)
        return task

    return decorate
