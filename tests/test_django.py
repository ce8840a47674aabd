"""tinydj as Django's task backend, in a real tiny project (tests/django_project).

Runs under Python 3.12+ with Django 6 (CI's 3.12 step sets
TINYDJ_REQUIRE_DJANGO=1, so that a missing Django fails instead of skipping);
the 3.11 run, which has no ``django.tasks``, skips this module.
SQLite always; PostgreSQL when TINYDJ_TEST_PG_URL is set (required in CI).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_PG_URL, PG_SCHEMA

if os.environ.get("TINYDJ_REQUIRE_DJANGO"):
    import django
else:
    django = pytest.importorskip("django")
if django.VERSION < (6,):
    if os.environ.get("TINYDJ_REQUIRE_DJANGO"):
        raise RuntimeError(f"the Django tests need Django 6, not {django.__version__}")
    pytest.skip("django.tasks needs Django 6 (Python 3.12+)", allow_module_level=True)

import tinydj
from tinydj import results
from tinydj.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent
PROJECT = Path(__file__).resolve().parent / "django_project"

ALIASES = [
    "default",
    pytest.param(
        "pg",
        marks=[pytest.mark.postgres]
        + ([] if BASE_PG_URL or os.environ.get("CI") else [pytest.mark.skip("no PostgreSQL")]),
    ),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Django set up on the test project; both databases migrated."""
    if os.environ.get("CI") and not BASE_PG_URL:
        pytest.fail("TINYDJ_TEST_PG_URL is not set: in CI the PostgreSQL tests must run")
    env = {
        "DJANGO_SETTINGS_MODULE": "project_settings",
        "TINYDJ_DJANGO_SQLITE": str(tmp_path_factory.mktemp("django") / "db.sqlite3"),
    }
    if BASE_PG_URL:
        env.update(TINYDJ_DJANGO_PG=BASE_PG_URL, TINYDJ_DJANGO_PG_SCHEMA=PG_SCHEMA)
    os.environ.update(env)
    sys.path.insert(0, str(PROJECT))
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    for alias in connections:
        call_command("migrate", database=alias, verbosity=0)
    yield env
    for alias in connections:
        connections[alias].close()


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest, project: dict[str, str]) -> Iterator[str]:
    """A task backend (and its database) with empty tables."""
    from django.db import connections
    from shop import tasks

    name: str = request.param
    with connections[name].cursor() as cursor:
        for table in ("delayed_jobs", "tinydj_results", "shop_order"):
            cursor.execute(f"DELETE FROM {table}")
    tasks.CALLS.clear()
    yield name
    tinydj.configure(f"sqlite:///{project['TINYDJ_DJANGO_SQLITE']}.unused")


def backend(alias: str) -> Any:
    from django.tasks import task_backends

    return task_backends[alias]


def worker(alias: str, clock: FakeClock | None = None) -> tinydj.Worker:
    """An in-process worker on the backend's database (its own connection)."""
    from tinydj.contrib.django.connection import database_url

    config = tinydj.configure(database_url(backend(alias).database), clock=clock or FakeClock())
    return tinydj.Worker(config=config)


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env={**os.environ, **env, "PYTHONPATH": f"{ROOT}{os.pathsep}{PROJECT}"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def rows(alias: str) -> list[tinydj.Job]:
    return list(backend(alias).config().store.select())


def test_enqueue_inside_atomic_vanishes_on_rollback(alias: str) -> None:
    from django.db import transaction
    from shop.models import Order
    from shop.tasks import add, mark_paid

    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        order = Order.objects.using(alias).create(number="A-1")
        mark_paid.using(backend=alias).enqueue(order)
        add.using(backend=alias).enqueue(1, 2)
        assert len(rows(alias)) == 2  # written through Django's connection
        raise RuntimeError("payment refused")
    assert rows(alias) == []
    assert not Order.objects.using(alias).exists()


def test_savepoint_rollback_drops_only_its_job(alias: str) -> None:
    from django.db import transaction
    from shop.tasks import record

    with transaction.atomic(using=alias):
        record.using(backend=alias).enqueue("kept")
        with pytest.raises(ValueError), transaction.atomic(using=alias):
            record.using(backend=alias).enqueue("dropped")
            raise ValueError
    assert ["kept" in j.handler for j in rows(alias)] == [True]


def test_committed_task_runs_via_manage_py_and_reports_success(
    alias: str, project: dict[str, str]
) -> None:
    from django.db import transaction
    from django.tasks import TaskResultStatus
    from shop.models import Order
    from shop.tasks import mark_paid

    with transaction.atomic(using=alias):
        order = Order.objects.using(alias).create(number="B-7")
        result = mark_paid.using(backend=alias).enqueue(order)
    assert result.status == TaskResultStatus.READY
    reference = {"model": "shop.Order", "pk": order.pk}
    assert result.args == [reference if alias == "default" else {**reference, "db": alias}]
    assert backend(alias).get_result(result.id).status == TaskResultStatus.READY
    done = manage("tinydj", "work", "--backend", alias, "--exit-on-complete", env=project)
    assert done.returncode == 0, done.stderr
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "B-7"
    assert result.attempts == 1 and len(result.worker_ids) == 1
    assert result.enqueued_at is not None and result.enqueued_at.tzinfo is not None
    assert result.started_at is not None and result.finished_at is not None
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.errors == []
    order.refresh_from_db()
    assert order.paid  # loaded fresh in the worker, saved to its own database
    assert rows(alias) == []  # the queue row left; the result stays


def test_failure_is_reported_after_the_last_attempt(alias: str, project: dict[str, str]) -> None:
    from django.tasks import TaskResultStatus
    from shop.tasks import explode

    result = explode.using(backend=alias).enqueue("boom")
    done = manage("tinydj", "work", "--backend", alias, "--exit-on-complete", env=project)
    assert done.returncode == 0, done.stderr
    result.refresh()
    assert result.status == TaskResultStatus.READY  # 1 of 2 attempts: it will run again
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"]
    clock = FakeClock()
    clock.advance(timedelta(days=1))
    assert worker(alias, clock).work_off() == (0, 1)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 2
    assert [e.exception_class for e in result.errors] == [ValueError, ValueError]
    assert "ValueError: boom" in result.errors[-1].traceback
    assert result.finished_at is not None
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018
    assert [j.failed for j in rows(alias)] == [True]  # kept for inspection and retry


def test_deleted_model_row_fails_the_job_clearly(alias: str) -> None:
    from django.tasks import TaskResultStatus
    from shop.models import Order
    from shop.tasks import mark_paid

    order = Order.objects.using(alias).create(number="C-3")
    result = mark_paid.using(backend=alias).enqueue(order)
    order.delete()
    assert worker(alias).work_off() == (0, 1)
    job = rows(alias)[0]
    assert job.failed and job.attempts == 1
    assert "shop.Order with primary key" in (job.last_error or "")
    assert "no longer exists" in (job.last_error or "")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert "no longer exists" in result.errors[0].traceback


def test_unsaved_model_is_refused_at_enqueue(alias: str) -> None:
    from shop.models import Order
    from shop.tasks import mark_paid

    with pytest.raises(TypeError, match="unsaved Order"):
        mark_paid.using(backend=alias).enqueue(Order(number="D-4"))
    assert rows(alias) == []


def test_priority_larger_first_and_run_after(alias: str) -> None:
    from django.utils import timezone
    from shop.tasks import CALLS, record

    task = record.using(backend=alias)
    task.using(priority=-100).enqueue("last")
    task.using(priority=100).enqueue("first")
    task.enqueue("middle")
    task.using(priority=99).enqueue("second")
    later = task.using(run_after=timezone.now() + timedelta(hours=1)).enqueue("later")
    clock = FakeClock()
    w = worker(alias, clock)
    w.batch_size = 1
    assert w.work_off() == (4, 0)
    assert CALLS == ["first", "second", "middle", "last"]
    clock.advance(timedelta(hours=1, seconds=1))
    assert w.work_off() == (1, 0)
    assert CALLS[-1] == "later"
    assert backend(alias).get_result(later.id).status == "SUCCESSFUL"


def test_context_attempt_async_tasks_and_running_status(alias: str) -> None:
    from shop.tasks import async_double, attempt_number, own_status

    ctx = attempt_number.using(backend=alias).enqueue()
    double = async_double.using(backend=alias).enqueue(21)
    status = own_status.using(backend=alias).enqueue()
    assert worker(alias).work_off() == (3, 0)
    assert backend(alias).get_result(ctx.id).return_value == {"attempt": 1, "id": ctx.id}
    assert backend(alias).get_result(double.id).return_value == 42
    assert backend(alias).get_result(status.id).return_value == "RUNNING"


def test_async_enqueue_and_get_result(alias: str) -> None:
    from shop.tasks import add

    async def go() -> tuple[str, str]:
        result = await add.using(backend=alias).aenqueue(2, 3)
        again = await add.using(backend=alias).aget_result(result.id)
        return result.id, again.status

    result_id, status = asyncio.run(go())
    assert status == "READY"
    assert worker(alias).work_off() == (1, 0)
    assert backend(alias).get_result(result_id).return_value == 5


def test_unknown_result_and_invalid_queue(alias: str) -> None:
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from shop.tasks import add

    for result_id in ("999999", "not-a-number"):
        with pytest.raises(TaskResultDoesNotExist):
            backend(alias).get_result(result_id)
    with pytest.raises(InvalidTask, match="nope"):
        add.using(backend=alias, queue_name="nope")
    assert backend(alias).supports_get_result and backend(alias).supports_defer


def test_signals_are_sent(alias: str) -> None:
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from shop.tasks import add

    seen: list[tuple[str, str]] = []
    senders: set[Any] = set()

    def receiver(signal_name: str) -> Any:
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((signal_name, str(task_result.status)))
            senders.add(sender)

        return receive

    receivers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    try:
        add.using(backend=alias).enqueue(1, 1)
        worker(alias).work_off()
    finally:
        task_enqueued.disconnect(receivers["enqueued"])
        task_started.disconnect(receivers["started"])
        task_finished.disconnect(receivers["finished"])
    assert seen == [("enqueued", "READY"), ("started", "RUNNING"), ("finished", "SUCCESSFUL")]
    # as Django's own backends send them: the backend's class (receivers filter on it)
    assert senders == {type(backend(alias))}


def test_manage_py_tinydj_admin_commands(alias: str, capsys: pytest.CaptureFixture[str]) -> None:
    from django.core.management import call_command
    from shop.tasks import add

    add.using(backend=alias).enqueue(1, 2)
    call_command("tinydj", "--backend", alias, "stats")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["QUEUE", "READY", "SCHEDULED"]
    assert lines[1].split()[:2] == ["default", "1"]  # the one job enqueued, ready
    call_command("tinydj", "--backend", alias, "clear")
    assert rows(alias) == []


def test_results_are_kept_apart_from_the_queue(alias: str) -> None:
    from shop.tasks import add

    result = add.using(backend=alias).enqueue(4, 4)
    assert worker(alias).work_off() == (1, 0)
    kept = results.get(int(result.id), config=backend(alias).config())
    assert kept is not None and (kept.status, kept.value) == ("SUCCESSFUL", 8)
    assert kept.name == "shop.tasks.add"
    assert kept.expires_at - kept.finished_at == timedelta(days=7)  # type: ignore[operator]


def test_migrate_zero_drops_the_tables_and_enqueue_says_to_migrate(alias: str) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import call_command
    from shop.tasks import add

    call_command("migrate", "tinydj", "zero", database=alias, verbosity=0)
    try:
        with pytest.raises(ImproperlyConfigured, match=r"manage\.py migrate"):
            add.using(backend=alias).enqueue(1, 2)
    finally:
        call_command("migrate", "tinydj", database=alias, verbosity=0)
    result = add.using(backend=alias).enqueue(1, 2)
    assert backend(alias).get_result(result.id).status == "READY"


def test_every_makes_a_django_task_recurring(alias: str) -> None:
    from shop.tasks import CALLS, tick

    from tinydj.contrib.django import every

    hourly = every("1h")(tick.using(backend=alias))
    assert hourly.enqueue().id  # still a Django task
    clock = FakeClock()
    w = worker(alias, clock)
    assert w.work_off() == (2, 0)  # the enqueued run and the recurring row's first
    recurring = [j for j in rows(alias) if j.recurring]
    assert [(j.key, j.reoccur_in) for j in recurring] == [("shop.tasks.tick", "1h")]
    clock.advance(timedelta(hours=1, seconds=1))
    assert w.work_off() == (1, 0)
    assert CALLS == ["tick", "tick", "tick"]
    kept = results.get(recurring[0].id, config=backend(alias).config())
    assert kept is not None and (kept.status, kept.value) == ("SUCCESSFUL", "tick")
