"""``every(spec)``: a Django task that also runs on its own every period.

.. code-block:: python

    from django.tasks import task
    from tinydj.contrib.django import every

    @every("1h")
    @task
    def hourly_report() -> str: ...

The task stays a Django task (``hourly_report.enqueue()`` works); tinydj's
workers keep one recurring row for it (key: its import path), exactly as for
``@tinydj.every``, and each run goes through the backend's runner (signals,
``TaskContext``, kept result).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from ... import serialize
from ...config import Config
from ...schedule import parse_every
from ...tasks import Task, register_recurring
from . import runner

__all__ = ["every"]

T = TypeVar("T")


class _Recurring(Task[..., Any]):
    """The recurring row of a Django task: its handler calls the runner."""

    def __init__(self, django_task: Any, interval: timedelta) -> None:
        backend = django_task.get_backend()
        super().__init__(
            runner.run,
            queue=django_task.queue_name,
            priority=-django_task.priority,
            max_attempts=backend.max_attempts,
            every=interval,
        )
        self.django_task = django_task
        self.max_attempts = backend.max_attempts

    @property
    def key(self) -> str:
        return str(self.django_task.module_path)

    def _handler(self, config: Config, args: Any, kwargs: Any) -> str:
        task = self.django_task
        return serialize.dump_call(
            runner.run,
            (),
            {
                "task": task.module_path,
                "args": [],
                "kwargs": {},
                "backend": task.backend,
                "max_attempts": self.max_attempts,
                "takes_context": task.takes_context,
            },
            max_attempts=self.max_attempts,
        )


def every(spec: str | float | timedelta) -> Any:
    """Run a Django task (of a tinydj backend) every ``spec`` ("1h", seconds...)."""
    interval = parse_every(spec)

    def decorate(django_task: T) -> T:
        if not hasattr(django_task, "module_path"):
            raise TypeError(f"every() goes above Django's @task, not on {django_task!r}")
        register_recurring(_Recurring(django_task, interval))
        return django_task

    return decorate
