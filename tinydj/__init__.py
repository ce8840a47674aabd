"""tinydj: run work later, from one SQL table (a Python Delayed::Job).

>>> import tinydj
>>> @tinydj.job
... def resize(path, width=100): ...
>>> resize.send_later("cat.png", width=300)  # doctest: +SKIP
>>> tinydj.Worker().work_off()  # doctest: +SKIP
(1, 0)
"""

from __future__ import annotations

from .admin import clear, delete_job, get_job, list_jobs, retry_job, stats
from .cancel import cancel
from .config import Config, configure, get_config
from .connections import sqlalchemy_url, using
from .cron import cron
from .current import CurrentJob, JobCancelled, current_job
from .errors import (
    ConfigurationError,
    DatabaseBusy,
    DatabaseUnavailable,
    HandlerError,
    JobRunning,
    SerializationError,
    TinyDJError,
)
from .job import Job
from .schedule import NaiveDatetimeWarning
from .tasks import Task, enqueue, every, job, schedule, send_later
from .worker import Worker

__version__ = "0.1.0"


def create_tables() -> None:
    """Create the ``delayed_jobs`` table and its indexes if they do not exist.

    Not required: tinydj creates them on first use.
    """
    get_config().store.ensure_schema()


__all__ = [
    "Config",
    "ConfigurationError",
    "CurrentJob",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "HandlerError",
    "Job",
    "JobCancelled",
    "JobRunning",
    "NaiveDatetimeWarning",
    "SerializationError",
    "Task",
    "TinyDJError",
    "Worker",
    "__version__",
    "cancel",
    "clear",
    "configure",
    "create_tables",
    "cron",
    "current_job",
    "delete_job",
    "enqueue",
    "every",
    "get_config",
    "get_job",
    "job",
    "list_jobs",
    "retry_job",
    "schedule",
    "send_later",
    "sqlalchemy_url",
    "stats",
    "using",
]
