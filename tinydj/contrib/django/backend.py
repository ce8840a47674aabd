"""``TaskBackend``: Django's ``django.tasks`` backed by tinydj's table.

A Django task becomes one ``delayed_jobs`` row whose handler calls
``tinydj.contrib.django.runner:run`` with the task's import path and its
arguments. Enqueueing writes through Django's connection of the backend's
database (so it joins ``transaction.atomic()``); workers (``manage.py tinydj
work``) run it with retries, leases and reclaim like any tinydj job, and keep
its result in ``tinydj_results``, which ``get_result()`` reads.

Priorities: Django's -100..100 (larger first) is stored negated, so that
tinydj's order (lower first) runs them in Django's order.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import peewee
import yaml
from django.core.exceptions import ImproperlyConfigured
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils.module_loading import import_string

from ... import results, serialize
from ...config import DEFAULT_MAX_ATTEMPTS, Config
from ...job import Job
from ...models import TABLE
from ...schedule import parse_every, to_naive_utc
from ...store import NewJob
from . import refs, runner
from .connection import config_for
from .times import aware, naive_utc

__all__ = ["TaskBackend"]

_OPTIONS = {"database", "max_attempts", "lock_timeout", "results_retention", "allow_pickle"}


class TaskBackend(BaseTaskBackend):
    """Django task backend storing tasks in tinydj's ``delayed_jobs`` table.

    ``OPTIONS``: ``database`` (Django database alias, default ``"default"``),
    ``max_attempts`` (default 25), ``lock_timeout`` (seconds, for ``manage.py
    tinydj work``), ``results_retention`` (how long results are kept, default
    ``"7d"``), ``allow_pickle`` (default False: arguments must be plain data or
    model instances).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ImproperlyConfigured(
                f"unknown OPTIONS for tinydj task backend {alias!r}: {', '.join(sorted(unknown))}"
            )
        self.database: str = options.get("database", "default")
        self.max_attempts: int = options.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ImproperlyConfigured(
                f"max_attempts must be a positive int: {self.max_attempts!r}"
            )
        self.lock_timeout: float | None = options.get("lock_timeout")
        self.allow_pickle = bool(options.get("allow_pickle", False))
        self.retention: timedelta = parse_every(options.get("results_retention", "7d"))
        runner.TRACKER.retention = self.retention
        refs.register()

    def config(self) -> Config:
        """tinydj's configuration on Django's connection of ``database``."""
        return config_for(
            self.database, max_attempts=self.max_attempts, allow_pickle=self.allow_pickle
        )

    # -- enqueue -----------------------------------------------------------------

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        config = self.config()
        handler = serialize.dump_call(
            runner.run,
            (),
            {
                "task": task.module_path,
                "args": list(args),
                "kwargs": dict(kwargs),
                "backend": self.alias,
                "max_attempts": self.max_attempts,
                "takes_context": task.takes_context,
            },
            allow_pickle=self.allow_pickle,
            max_attempts=self.max_attempts,
        )
        now = to_naive_utc(config.clock())
        run_at = naive_utc(task.run_after) if task.run_after is not None else now
        new = NewJob(handler, task.queue_name, -task.priority, run_at)
        try:
            job = config.store.insert([new], now)[0]
        except peewee.DatabaseError as exc:
            text = str(exc)
            if TABLE in text and ("no such table" in text or "does not exist" in text):
                raise ImproperlyConfigured(
                    f"the {TABLE} table is missing from Django database {self.database!r}: "
                    "run manage.py migrate"
                ) from exc
            raise
        result = self._result(task, job, TaskResultStatus.READY, list(args), dict(kwargs))
        task_enqueued.send(type(self), task_result=result)
        return result

    def _result(
        self,
        task: Task,
        job: Job,
        status: TaskResultStatus,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> TaskResult:
        return TaskResult(
            task=task,
            id=str(job.id),
            status=status,
            enqueued_at=aware(job.created_at),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=runner.jsonable(args),
            kwargs=runner.jsonable(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

    # -- results -----------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        config = self.config()
        row = config.store.get(job_id)
        kept = results.get(job_id, config=config)
        if row is None and kept is None:
            raise TaskResultDoesNotExist(result_id)
        if row is not None:
            call = _handler_call(row.handler)
            if call.get("backend", self.alias) != self.alias and kept is None:
                raise TaskResultDoesNotExist(result_id)
            path, args, kwargs = call.get("task", ""), call.get("args", []), call.get("kwargs", {})
        else:
            assert kept is not None
            path, args, kwargs = kept.name, kept.args, kept.kwargs
        task = _task(path, self.alias, row)
        status = TaskResultStatus(results.status_of(row, kept) or "READY")
        result = TaskResult(
            task=task,
            id=str(job_id),
            status=status,
            enqueued_at=aware(row.created_at if row else kept.enqueued_at if kept else None),
            started_at=aware(kept.started_at if kept else row.locked_at if row else None),
            finished_at=aware(
                kept.finished_at if kept and kept.finished else row.failed_at if row else None
            ),
            last_attempted_at=aware(kept.started_at if kept else row.last_run_at if row else None),
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=_errors(kept, row),
            worker_ids=_workers(kept, row, status),
        )
        if status == TaskResultStatus.SUCCESSFUL and kept is not None:
            object.__setattr__(result, "_return_value", kept.value)
        return result


class _Lenient(yaml.SafeLoader):
    """Reads a handler without importing or querying anything: tinydj's tags
    become the plain mappings / values under them."""


def _untag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Lenient.add_multi_constructor("!tinydj/", _untag)


def _handler_call(handler: str) -> dict[str, Any]:
    try:
        doc = yaml.load(handler, Loader=_Lenient)
    except yaml.YAMLError:
        return {}
    kwargs = doc.get("kwargs") if isinstance(doc, dict) else None
    if not isinstance(kwargs, dict):
        return {}
    return {
        "task": kwargs.get("task", ""),
        "args": runner.jsonable(kwargs.get("args") or []),
        "kwargs": runner.jsonable(kwargs.get("kwargs") or {}),
        "backend": kwargs.get("backend"),
    }


def _task(path: str, alias: str, row: Job | None) -> Task:
    try:
        task = import_string(path)
    except ImportError as exc:
        raise TaskResultDoesNotExist(f"the task {path!r} cannot be imported: {exc}") from None
    changes: dict[str, Any] = {"backend": alias}
    if row is not None:
        changes.update(priority=-row.priority, queue_name=row.queue)
    return task.using(**changes)


def _errors(kept: results.Result | None, row: Job | None) -> list[TaskError]:
    errors = [
        TaskError(exception_class_path=e["type"], traceback=e["traceback"])
        for e in (kept.errors if kept else [])
    ]
    if row is not None and row.failed_at is not None and row.last_error and not errors:
        # It failed before running (e.g. a referenced row was deleted).
        errors.append(
            TaskError(exception_class_path="tinydj.errors.HandlerError", traceback=row.last_error)
        )
    return errors


def _workers(kept: results.Result | None, row: Job | None, status: TaskResultStatus) -> list[str]:
    if kept is not None and kept.worker_ids:
        return list(kept.worker_ids)
    if row is None:
        return []
    if status == TaskResultStatus.RUNNING and row.locked_by:
        return [row.locked_by]
    return ["unknown"] * row.attempts
