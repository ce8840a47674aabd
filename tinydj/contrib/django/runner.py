"""What a worker runs for a Django task: the task, with Django's signals,
``TaskContext`` and JSON return value, its result kept by ``tinydj.results``."""

from __future__ import annotations

import json
from traceback import format_exception
from typing import Any

from django.db import close_old_connections
from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from ... import results
from ...serialize import Call
from .times import aware

__all__ = ["TRACKER", "jsonable", "run"]


def jsonable(value: Any) -> Any:
    """JSON data for Django's ``TaskResult`` (model instances as references)."""
    return json.loads(json.dumps(value, default=_reference))


def _reference(value: Any) -> Any:
    from .refs import reference

    if hasattr(value, "_meta") and hasattr(value, "pk"):
        return reference(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def run(
    *,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str = "default",
    max_attempts: int = 1,
    takes_context: bool = False,
) -> Any:
    """Run the Django task at import path ``task`` (called by a tinydj worker)."""
    django_task = import_string(task).using(backend=backend)
    result, attempt = _started(django_task, args, kwargs, backend)
    task_started.send(sender=_sender(backend), task_result=result)
    close_old_connections()
    try:
        if takes_context:
            value = django_task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = django_task.call(*args, **kwargs)
        value = normalize_json(value)
    except BaseException as exc:
        if attempt >= max_attempts:
            result.errors.append(_error(exc))
            _finish(result, TaskResultStatus.FAILED)
        raise
    finally:
        close_old_connections()
    object.__setattr__(result, "_return_value", value)
    _finish(result, TaskResultStatus.SUCCESSFUL)
    return value


def _started(
    django_task: Any, args: list[Any], kwargs: dict[str, Any], backend: str
) -> tuple[TaskResult, int]:
    """The RUNNING ``TaskResult`` of this attempt (earlier errors and workers
    from the kept result), and the attempt's number."""
    running = results.running_job()
    now = timezone.now()
    job_id, attempt, enqueued_at, worker = "", 1, None, ""
    if running is not None:
        job, worker = running
        job_id, attempt, enqueued_at = str(job.id), job.attempts + 1, aware(job.created_at)
    kept = results.get(int(job_id)) if job_id else None
    result = TaskResult(
        task=django_task,
        id=job_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=enqueued_at,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=jsonable(args),
        kwargs=jsonable(kwargs),
        backend=backend,
        errors=[
            TaskError(exception_class_path=e["type"], traceback=e["traceback"])
            for e in (kept.errors if kept else [])
        ],
        worker_ids=list(kept.worker_ids) if kept else [worker] * attempt,
    )
    return result, attempt


def _error(exc: BaseException) -> TaskError:
    cls = type(exc)
    return TaskError(
        exception_class_path=f"{cls.__module__}.{cls.__qualname__}",
        traceback="".join(format_exception(exc)),
    )


def _finish(result: TaskResult, status: TaskResultStatus) -> None:
    """Mark the (frozen) result finished now and send ``task_finished``."""
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    task_finished.send(sender=_sender(result.backend), task_result=result)


def _sender(alias: str) -> type:
    """The class of the backend ``alias`` (the signals' sender, as Django's
    own backends send it: ``type(self)``)."""
    return type(task_backends[alias])


def _describe(call: Call) -> tuple[str, list[Any], dict[str, Any]]:
    kw = call.kwargs
    return str(kw.get("task", "")), jsonable(kw.get("args", [])), jsonable(kw.get("kwargs", {}))


#: Keeps the result of every Django task (retention: the backend's option).
TRACKER = results.Tracker(results.DEFAULT_RETENTION, running=True, describe=_describe)
run.tinydj_outcome = TRACKER  # type: ignore[attr-defined]
