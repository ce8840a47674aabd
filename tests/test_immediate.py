"""Testing helpers: immediate mode, ``tinydj.assertions.enqueued`` and the
opt-in pytest plugin (issue 11, item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sample_jobs
from conftest import START

import tinydj
from tinydj.assertions import Enqueued, enqueued
from tinydj.testing import FakeClock


@pytest.fixture
def immediate(db_url: str, clock: FakeClock) -> Iterator[tinydj.Config]:
    sample_jobs.reset()
    config = tinydj.configure(db_url, clock=clock, immediate=True)
    yield config
    config.store.close()


def test_every_enqueue_verb_runs_the_job_at_once(immediate: tinydj.Config) -> None:
    jobs = [
        sample_jobs.record.send_later(1),
        sample_jobs.record.send_at(START + timedelta(days=3), 2),
        sample_jobs.record.send_in("1h", 3),
        *sample_jobs.record.send_later_many([(4,), {"k": 5}]),
        tinydj.enqueue(sample_jobs.Report("weekly"), run_at=START + timedelta(hours=1)),
        tinydj.send_later(sample_jobs.record, 6),
    ]
    assert sample_jobs.calls == [
        ((1,), {}),
        ((2,), {}),
        ((3,), {}),
        ((4,), {}),
        ((), {"k": 5}),
        ("report", "weekly", 1),
        ((6,), {}),
    ]
    assert tinydj.list_jobs() == []  # nothing left in the table
    ids = [j.id for j in jobs]
    assert all(i < 0 for i in ids) and len(set(ids)) == len(ids)
    assert tinydj.get_job(ids[0]) is None
    assert jobs[1].run_at == START + timedelta(days=3) and jobs[1].queue == "default"


def test_the_job_exception_reaches_the_caller(immediate: tinydj.Config) -> None:
    with pytest.raises(ValueError, match="failure number 7"):
        sample_jobs.always_fails.send_later(7)
    assert sample_jobs.calls == [("fail", 7)]
    assert tinydj.list_jobs() == []


def test_arguments_make_the_round_trip_through_the_table(immediate: tinydj.Config) -> None:
    report = sample_jobs.Report("copy", pages=2)
    sample_jobs.record.send_later(report, (1, 2))
    ((got, pair), _) = sample_jobs.calls[0]
    assert got is not report and vars(got) == vars(report)  # rebuilt, as a worker sees it
    assert pair == (1, 2)
    with pytest.raises(TypeError, match="cannot store a lock"):
        sample_jobs.record.send_later(threading.Lock())
    with pytest.raises(TypeError, match="pickle is disabled"):
        tinydj.configure(immediate.database, allow_pickle=False, immediate=True)
        tinydj.send_later(lambda: None)
    assert len(sample_jobs.calls) == 1


def test_bulk_checks_every_call_before_running_any(immediate: tinydj.Config) -> None:
    with pytest.raises(TypeError):
        sample_jobs.record.send_later_many([(1,), (threading.Lock(),)])
    assert sample_jobs.calls == []


def test_async_jobs_and_hooks_run_as_in_a_worker(immediate: tinydj.Config) -> None:
    sample_jobs.async_record.send_later("a")
    assert sample_jobs.calls == [("async", "a")]
    tinydj.enqueue(sample_jobs.Hooked())
    with pytest.raises(KeyError, match="hooked failure"):
        tinydj.enqueue(sample_jobs.Hooked(fail=True))
    assert sample_jobs.Hooked.events == [
        "before",
        "perform",
        "success",
        "after",
        "before",
        "perform",
        ("error", "KeyError"),
        "after",
        "failure",
    ]


def test_schedule_still_stores_its_recurring_row(immediate: tinydj.Config) -> None:
    row = tinydj.schedule(sample_jobs.Report("daily"), every="1d")
    assert row.id > 0 and row.recurring
    assert sample_jobs.calls == []


def test_enqueued_decodes_the_stored_calls(config: tinydj.Config, clock: FakeClock) -> None:
    sample_jobs.record.send_later(1, key="v")
    sample_jobs.send_mail.send_in("10m", "ann@example.com")
    sample_jobs.record.with_options(queue="bulk", priority=-3).send_later((2, 3))
    tinydj.enqueue(sample_jobs.Report("weekly"), queue="reports")
    tinydj.send_later(sample_jobs.Report("r").render, "html")

    assert enqueued(sample_jobs.record) == [
        Enqueued("sample_jobs:record", (1,), {"key": "v"}, START, "default", 0),
        Enqueued("sample_jobs:record", ((2, 3),), {}, START, "bulk", -3),
    ]
    (mail,) = enqueued(sample_jobs.send_mail)
    assert (mail.args, mail.run_at, mail.queue, mail.priority) == (
        ("ann@example.com",),
        START + timedelta(minutes=10),
        "mail",
        5,
    )
    assert mail.job is not None and tinydj.get_job(mail.job.id) == mail.job
    by_class = enqueued(sample_jobs.Report)
    assert [c.name for c in by_class] == ["sample_jobs:Report.perform", "sample_jobs:Report.render"]
    assert vars(by_class[0].target) == {"title": "weekly", "pages": 1}
    assert [c.name for c in enqueued(queue="reports")] == ["sample_jobs:Report.perform"]
    assert len(enqueued("sample_jobs:record")) == 2 and len(enqueued()) == 5
    assert enqueued(sample_jobs.always_fails) == []


def test_enqueued_leaves_out_failed_jobs(config: tinydj.Config, worker: tinydj.Worker) -> None:
    sample_jobs.always_fails.with_options(max_attempts=1).send_later(1)
    assert worker.work_off() == (0, 1)
    assert enqueued() == [] and len(tinydj.list_jobs(failed=True)) == 1


PLUGIN_TEST = """
import tinydj

@tinydj.job
def greet(name):
    greeted.append(name)

greeted = []

def test_immediate(tinydj_immediate):
    greet.send_later("ann")
    assert greeted == ["ann"] and tinydj.list_jobs() == []

def test_stored(tinydj_config):
    from tinydj.assertions import enqueued
    greet.send_in("1h", "bob")
    assert [c.args for c in enqueued(greet)] == [("bob",)]
    tinydj_config.clock.advance(3600)
    assert tinydj.Worker().work_off() == (1, 0)
"""


@pytest.mark.parametrize("opt_in", [True, False])
def test_pytest_plugin_is_used_only_when_asked_for(tmp_path: Path, opt_in: bool) -> None:
    (tmp_path / "test_app.py").write_text(PLUGIN_TEST)
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["tinydj.pytest_plugin"]\n' if opt_in else ""
    )
    env = {**os.environ, "PYTHONPATH": str(Path(tinydj.__file__).parent.parent)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if opt_in:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "2 passed" in run.stdout
    else:
        assert run.returncode != 0 and "fixture 'tinydj_immediate' not found" in run.stdout
