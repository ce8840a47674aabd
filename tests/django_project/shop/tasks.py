"""Django tasks of the test shop, run by tinydj."""

from __future__ import annotations

from typing import Any

from django.tasks import TaskContext, task

from .models import Order


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="mail", priority=10)
def mark_paid(order: Order) -> str:
    order.paid = True
    order.save()
    return order.number


@task
def explode(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def attempt_number(context: TaskContext) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
async def async_double(x: int) -> int:
    return 2 * x


#: Labels ``record`` saw, in order (for tests that run workers in-process).
CALLS: list[str] = []


@task
def record(label: str) -> None:
    CALLS.append(label)


@task(takes_context=True)
def own_status(context: TaskContext) -> str:
    from django.tasks import task_backends

    backend = task_backends[context.task_result.backend]
    return str(backend.get_result(context.task_result.id).status)


@task
def tick() -> str:
    CALLS.append("tick")
    return "tick"
