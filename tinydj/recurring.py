"""The rows of the ``@every`` functions a worker imported.

Before its first job a worker writes one row per ``@every`` function
(``register``). While it runs it checks, at most once per ``CHECK_EVERY``
seconds and off its runner threads, that these rows still exist: ``tinydj
clear`` (or a ``DELETE``) would otherwise end them silently until a worker
restarts. A missing row is written again, due at its next period boundary
(counted from the schedule the row had), not at once.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from .config import Config
from .job import Job
from .outcome import next_run
from .recurrence import Cron
from .store import NewJob
from .tasks import Task, recurring_tasks, upsert_recurring

__all__ = ["CHECK_EVERY", "RecurringRows"]

log = logging.getLogger("tinydj.worker")

#: Seconds (by the worker's clock) between two checks for missing rows.
CHECK_EVERY = 60.0


class RecurringRows:
    """Writes, describes and restores the rows of this process's ``@every`` jobs."""

    def __init__(self, config: Config, worker: str) -> None:
        self.config = config
        self.worker = worker
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._seen: dict[str, Job] = {}
        self._checked: datetime | None = None
        self._lock = threading.Lock()

    def register(self, now: datetime) -> None:
        """Write (insert or update) the row of every ``@every`` function."""
        for task in recurring_tasks():
            self._seen[task.key] = upsert_recurring(self.config, task, now)
            self._tasks[task.key] = task
        self._checked = now

    def describe(self) -> str:
        """``"app:cleanup every 1h, app:report cron 0 9 * * MON"``, or ``"none"``."""
        names = [
            f"{key} {_schedule_text(task)}"
            for key, task in sorted(self._tasks.items())
            if task.recurrence is not None
        ]
        return ", ".join(names) or "none"

    def hint(self) -> None:
        """Log a hint when the table has recurring rows but none is registered here."""
        if self._tasks:
            return
        keys = sorted(self.config.store.recurring_keys())
        if keys:
            shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
            log.info(
                "%s registers no @every jobs, but the table holds %d recurring row(s) (%s): "
                "they still run, but only a worker that imports their modules (--app MODULE) "
                "keeps their rows in sync with the code and restores them after a clear",
                self.worker,
                len(keys),
                shown,
                extra={"action": "recurring_hint"},
            )

    def check(self, now: datetime) -> None:
        """Restore missing rows, unless checked less than ``CHECK_EVERY`` s ago
        (or another thread is checking)."""
        if not self._tasks:
            return
        last = self._checked
        if last is not None and now - last < timedelta(seconds=CHECK_EVERY):
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._checked = now
            missing = set(self._tasks) - self.config.store.recurring_keys()
            for key in sorted(missing):
                self._restore(key, now)
        finally:
            self._lock.release()

    def _restore(self, key: str, now: datetime) -> None:
        task, seen = self._tasks[key], self._seen[key]
        assert task.recurrence is not None
        run_at = seen.run_at if seen.run_at > now else next_run(seen, now)
        new = NewJob(
            task._handler(self.config, (), {}),
            task.options.queue,
            task.options.priority,
            run_at,
            key=key,
            reoccur_in=task.recurrence.text,
        )
        self._seen[key] = self.config.store.upsert(new, now, run_at)
        log.warning(
            "%s: the row of recurring job %s was deleted (tinydj clear?); restored it, "
            "next run at %s",
            self.worker,
            key,
            f"{run_at:%Y-%m-%d %H:%M:%S}",
            extra={"action": "recurring_restored"},
        )


def _schedule_text(task: Task[Any, Any]) -> str:
    spec = task.recurrence
    return f"cron {spec.text}" if isinstance(spec, Cron) else f"every {spec.text if spec else ''}"
