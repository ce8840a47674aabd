from __future__ import annotations

import inspect
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sample_jobs
from conftest import START

import tinydj
from tinydj import every, job
from tinydj.testing import FakeClock


def test_decorated_function_still_runs_inline() -> None:
    assert sample_jobs.send_mail("ann@example.com") == "ann@example.com"
    assert sample_jobs.calls[-1] == ("mail", "ann@example.com", "")


def test_job_works_bare_and_with_arguments() -> None:
    @job
    def bare(x: int) -> int:
        return x * 2

    @job(queue="q", priority=-3, max_attempts=7)
    def called(x: int) -> int:
        return x + 1

    assert bare(2) == 4 and called(2) == 3
    assert isinstance(bare, tinydj.Task) and isinstance(called, tinydj.Task)
    assert bare.options.queue == "default" and bare.options.priority == 0
    assert (called.options.queue, called.options.priority, called.options.max_attempts) == (
        "q",
        -3,
        7,
    )
    assert bare.__name__ == "bare" and bare.__doc__ is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"queue": ""}, ValueError),
        ({"queue": 3}, ValueError),
        ({"priority": "high"}, TypeError),
        ({"priority": True}, TypeError),
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": 1.5}, ValueError),
    ],
)
def test_bad_job_options_fail_at_decoration(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        job(**kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize("spec", ["", "5x", "0s", -1, "-2h"])
def test_every_rejects_bad_specs_at_decoration(spec: object) -> None:
    with pytest.raises(ValueError, match="invalid interval"):
        every(spec)  # type: ignore[arg-type]


def test_every_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        every(["1h"])  # type: ignore[arg-type]


def test_every_is_also_a_job_and_registers() -> None:
    @every("15m", queue="cron")
    def tick() -> str:
        return "ticked"

    assert tick() == "ticked"
    assert tick.every == timedelta(minutes=15)
    assert tick in tinydj.tasks.recurring_tasks()


def test_send_at_and_send_in_take_the_time_positionally_only() -> None:
    for method in (tinydj.Task.send_at, tinydj.Task.send_in):
        first = list(inspect.signature(method).parameters.values())[1]
        assert first.kind is inspect.Parameter.POSITIONAL_ONLY


def test_send_later_stores_the_call(config: tinydj.Config) -> None:
    job_ = sample_jobs.send_mail.send_later("ann@example.com", body="hi")
    row = tinydj.get_job(job_.id)
    assert row is not None
    assert (row.queue, row.priority, row.attempts, row.run_at) == ("mail", 5, 0, START)
    assert "function: sample_jobs:send_mail" in row.handler
    assert row == job_


def test_send_at_accepts_aware_and_naive_utc(config: tinydj.Config) -> None:
    aware = datetime(2031, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    a = sample_jobs.record.send_at(aware, 1)
    b = sample_jobs.record.send_at(datetime(2031, 5, 1, 12, 0), 2)
    assert a.run_at == b.run_at == datetime(2031, 5, 1, 12, 0)
    with pytest.raises(TypeError):
        sample_jobs.record.send_at("tomorrow", 3)  # type: ignore[arg-type]


def test_a_job_may_itself_take_when_and_delay(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    sample_jobs.takes_when.send_at(START, "w", delay="d")
    sample_jobs.takes_when.send_in(0, when="w2", delay=5)
    assert worker.work_off() == (2, 0)
    assert sorted(sample_jobs.calls) == [("when", "w", "d"), ("when", "w2", 5)]


@pytest.mark.parametrize("delay", [timedelta(minutes=10), 600, 600.0, "10m"])
def test_send_in_forms(config: tinydj.Config, delay: object) -> None:
    job_ = sample_jobs.record.send_in(delay, 1)  # type: ignore[arg-type]
    assert job_.run_at == START + timedelta(minutes=10)


def test_unstorable_argument_writes_nothing(config: tinydj.Config) -> None:
    import threading

    with pytest.raises(TypeError):
        sample_jobs.record.send_later(threading.Lock())
    assert tinydj.list_jobs() == []


def test_module_send_later_accepts_functions_methods_and_lambdas(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    tinydj.send_later(sample_jobs.record, "via task")
    tinydj.send_later(sample_jobs.Report("r").render, "html")
    tinydj.send_later(lambda: sample_jobs.calls.append("lambda"))
    tinydj.send_later(print, end="")  # a builtin, by path
    assert worker.work_off() == (4, 0)
    assert (("via task",), {}) in sample_jobs.calls
    assert ("render", "r", "html") in sample_jobs.calls
    assert "lambda" in sample_jobs.calls


def test_enqueue_object(config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock) -> None:
    job_ = tinydj.enqueue(
        sample_jobs.Report("weekly"), priority=3, queue="reports", run_at=START + timedelta(hours=1)
    )
    assert (job_.priority, job_.queue, job_.run_at) == (3, "reports", START + timedelta(hours=1))
    assert worker.work_off() == (0, 0)
    clock.advance(3600)
    assert worker.work_off() == (1, 0)
    assert sample_jobs.calls == [("report", "weekly", 1)]


def test_enqueue_without_perform_is_a_type_error(config: tinydj.Config) -> None:
    with pytest.raises(TypeError, match="perform"):
        tinydj.enqueue(object())
    assert tinydj.list_jobs() == []


def test_schedule_is_idempotent_for_equal_objects(config: tinydj.Config) -> None:
    a = tinydj.schedule(sample_jobs.Report("daily"), every="1d")
    b = tinydj.schedule(sample_jobs.Report("daily"), every="1d")
    c = tinydj.schedule(sample_jobs.Report("other"), every="1d")
    assert a.id == b.id != c.id
    assert a.reoccur_in == "1d" and a.recurring
    named = tinydj.schedule(sample_jobs.Report("x"), every="2h", key="report-x")
    again = tinydj.schedule(sample_jobs.Report("y"), every="3h", key="report-x")
    assert named.id == again.id and again.reoccur_in == "3h"
    assert len(tinydj.list_jobs()) == 3
    with pytest.raises(ValueError):
        tinydj.schedule(sample_jobs.Report("z"), every="0s")
    with pytest.raises(TypeError):
        tinydj.schedule(object(), every="1h")


def test_with_options_overrides_for_one_call(config: tinydj.Config) -> None:
    job_ = sample_jobs.send_mail.with_options(priority=-9, queue="urgent").send_later("x")
    assert (job_.priority, job_.queue) == (-9, "urgent")
    assert sample_jobs.send_mail.options.priority == 5


def test_send_later_many_is_one_batch(config: tinydj.Config, worker: tinydj.Worker) -> None:
    jobs = sample_jobs.record.send_later_many([(i,) for i in range(250)] + [{"k": "v"}])
    assert len({j.id for j in jobs}) == 251
    assert [j.id for j in tinydj.list_jobs()] == [j.id for j in jobs]
    assert worker.work_off(1000) == (251, 0)
    assert sample_jobs.calls[0] == ((0,), {}) and sample_jobs.calls[-1] == ((), {"k": "v"})


def test_job_name_says_what_runs(config: tinydj.Config) -> None:
    assert sample_jobs.record.send_later(1).name == "sample_jobs:record"
    assert tinydj.enqueue(sample_jobs.Report("x")).name == "sample_jobs:Report"
    assert tinydj.schedule(sample_jobs.Report("y"), every="1h", key="daily").name == "daily"


@pytest.mark.parametrize(
    "decorate",
    [
        lambda: job(timeout=10**9),
        lambda: every("1h", timeout=10**9),
        lambda: sample_jobs.record.with_options(timeout=10**9),
        lambda: job(timeout=0),
    ],
)
def test_out_of_range_timeout_fails_where_it_is_given(decorate: Any) -> None:
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds > 0 and <= "):
        decorate()


def test_every_timeout_the_decorator_accepts_loads(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    from tinydj import options, serialize

    task = sample_jobs.record.with_options(timeout=options.MAX_SECONDS, max_attempts=1)
    row = task.send_later("edge")
    assert serialize.load(row.handler).timeout == options.MAX_SECONDS
    assert worker.work_off() == (1, 0)


def test_int_too_long_for_text_fails_at_enqueue_and_writes_nothing(
    config: tinydj.Config,
) -> None:
    for send in (
        lambda: sample_jobs.record.send_later(10**5000),
        lambda: sample_jobs.record.send_later_many([(1,), (10**5000,)]),
        lambda: tinydj.send_later(sample_jobs.calls.append, 10**5000),
    ):
        with pytest.raises(TypeError, match="digits"):
            send()
    assert tinydj.list_jobs() == []


def test_deeply_nested_argument_fails_at_enqueue_with_its_depth(config: tinydj.Config) -> None:
    value: list[Any] = []
    for _ in range(500):
        value = [value]
    with pytest.raises(TypeError, match="nested too deeply: a list at depth 101"):
        sample_jobs.record.send_later(value)
    assert tinydj.list_jobs() == []


SCHEDULE_SCRIPT = """
import sys
import tinydj

class Digest:
    def __init__(self, to, tags):
        self.to = to
        self.tags = tags
        self.when = lambda: None if False else None  # pickled by value

    def perform(self):
        pass

tinydj.configure(sys.argv[1])
print(tinydj.schedule(Digest("ann@example.com", {"a", "b", "c", "d"}), every="1h").key)
"""


def test_schedule_of_a_main_class_is_one_row_across_runs(tmp_path: Path) -> None:
    script = tmp_path / "schedule_digest.py"
    script.write_text(SCHEDULE_SCRIPT)
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = {**os.environ, "PYTHONPATH": str(Path(tinydj.__file__).parent.parent)}
    keys = []
    for seed in ("1", "2", "3"):  # set order and cloudpickle's ids differ per process
        run = subprocess.run(
            [sys.executable, str(script), url],
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        keys.append(run.stdout.strip())
    assert len(set(keys)) == 1 and keys[0].startswith("Digest#")
    config = tinydj.configure(url)
    try:
        assert len(tinydj.list_jobs()) == 1
    finally:
        config.store.close()


def test_schedule_key_of_an_importable_object_is_unchanged(config: tinydj.Config) -> None:
    import hashlib

    from tinydj import serialize

    report = sample_jobs.Report("daily", pages=3)
    handler = serialize.dump_object(report)
    digest = hashlib.sha1(handler.encode(), usedforsecurity=False).hexdigest()[:16]
    # rows scheduled before keys came from serialize.identity keep their key
    assert tinydj.schedule(report, every="1d").key == f"sample_jobs:Report#{digest}"
