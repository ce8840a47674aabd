"""What was enqueued, decoded from the table: for tests, without reading YAML.

>>> resize.send_in("1h", "cat.png", width=300)  # doctest: +SKIP
>>> [c.args for c in enqueued(resize)]  # doctest: +SKIP
[('cat.png',)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import serialize
from .config import Config, get_config
from .job import Job
from .tasks import Task

__all__ = ["Enqueued", "enqueued"]


@dataclass(frozen=True)
class Enqueued:
    """One stored call, as the worker will make it."""

    #: What runs: ``"myapp.tasks:resize"``, ``"myapp.jobs:Report.perform"``.
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    run_at: datetime
    queue: str
    priority: int
    #: The object of an object job (``tinydj.enqueue``) or bound method, else None.
    target: object | None = None
    #: The row itself (``id``, ``attempts``, ``recurring``, ...).
    job: Job | None = field(default=None, compare=False, repr=False)


def _wanted(task: Task[Any, Any] | Callable[..., Any] | type | str) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, Task):
        return task.key
    path = serialize.import_path(task)
    return path or f"{getattr(task, '__module__', '')}:{getattr(task, '__qualname__', '')}"


def enqueued(
    task: Task[Any, Any] | Callable[..., Any] | type | str | None = None,
    *,
    queue: str | None = None,
    config: Config | None = None,
) -> list[Enqueued]:
    """The calls waiting in the table (not failed ones), oldest first.

    ``task``: only calls of this task or function, of this class's methods
    (object jobs of ``tinydj.enqueue``), or of this import path. ``queue``:
    only this queue. Rows are loaded as a worker loads them: one that cannot
    be loaded raises ``HandlerError``.
    """
    config = config or get_config()
    wanted = None if task is None else _wanted(task)
    calls = []
    for job in config.store.select(failed=False, queue=queue):
        call = serialize.load(
            job.handler, allow_pickle=config.allow_pickle, allowed_modules=config.allowed_modules
        )
        if wanted is not None and call.name != wanted and not call.name.startswith(wanted + "."):
            continue
        calls.append(
            Enqueued(
                call.name,
                tuple(call.args),
                dict(call.kwargs),
                job.run_at,
                job.queue,
                job.priority,
                call.target,
                job,
            )
        )
    return calls
