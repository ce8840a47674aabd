"""Opt-in results: tinydj_results keeps outcomes apart from the queue."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sample_jobs  # noqa: F401  (its @every registers before the registry is saved)

import tinydj
from tinydj import results
from tinydj.testing import FakeClock


@pytest.fixture(autouse=True)
def no_results_table(db_url: str) -> None:
    """Each test starts without tinydj_results (server schemas outlive a test)."""
    db = tinydj.config.open_database(db_url)
    try:
        db.execute_sql(f"DROP TABLE IF EXISTS {results.TABLE}")
    finally:
        db.close()


@results.keep("1d")
@tinydj.job(max_attempts=2)
def add(a: int, b: int) -> int:
    return a + b


@tinydj.job(max_attempts=2)
@results.keep("1h", running=True)
def explode(message: str) -> None:
    raise ValueError(message)


@results.keep()
@tinydj.job
def odd_value() -> object:
    return {1, 2}


@tinydj.job
def plain(a: int) -> int:
    return a


def test_success_keeps_the_json_return_value(config: tinydj.Config, clock: FakeClock) -> None:
    job = add.send_later(2, 3)
    assert results.status(job) == "READY"
    assert results.get(job) is None
    assert tinydj.Worker(config=config, name="w1").work_off() == (1, 0)
    kept = results.get(job.id)
    assert kept is not None
    assert (kept.status, kept.value, kept.attempts) == ("SUCCESSFUL", 5, 1)
    assert (kept.args, kept.kwargs, kept.worker_ids) == ([2, 3], {}, ["w1"])
    assert kept.name == "test_results:add"
    assert kept.started_at == kept.finished_at == clock()
    assert kept.enqueued_at == job.created_at
    assert kept.expires_at == clock() + timedelta(days=1)
    assert tinydj.get_job(job.id) is None  # the queue row still leaves
    assert results.status(job) == "SUCCESSFUL"


def test_failures_keep_each_error_until_the_last_attempt(
    config: tinydj.Config, clock: FakeClock
) -> None:
    job = explode.send_later("boom")
    assert tinydj.Worker(config=config, name="w1").work_off() == (0, 1)
    kept = results.get(job)
    assert kept is not None
    assert (kept.status, kept.attempts, kept.finished_at) == ("READY", 1, None)
    assert kept.errors[0]["type"] == "builtins.ValueError"
    assert kept.errors[0]["message"] == "boom"
    clock.advance(3600)
    assert tinydj.Worker(config=config, name="w2").work_off() == (0, 1)
    kept = results.get(job)
    assert kept is not None
    assert (kept.status, kept.attempts, kept.worker_ids) == ("FAILED", 2, ["w1", "w2"])
    assert len(kept.errors) == 2
    assert kept.error is not None and "ValueError: boom" in kept.error
    with pytest.raises(AssertionError):
        assert kept.value is not None
    assert results.status(job) == "FAILED"


def test_running_status_is_recorded_when_asked(config: tinydj.Config) -> None:
    seen: list[str | None] = []

    class Spy(results.Tracker):
        def failed(self, worker, job, call, exc, traceback, final):  # type: ignore[no-untyped-def]
            kept = results.get(job.id, config=config)
            seen.append(kept.status if kept else None)
            super().failed(worker, job, call, exc, traceback, final)

    tracker = explode.tinydj_outcome
    explode.tinydj_outcome = Spy(tracker.retention, running=True)
    try:
        explode.send_later("x")
        tinydj.Worker(config=config).work_off()
    finally:
        explode.tinydj_outcome = tracker
    assert seen == ["RUNNING"]


def test_a_value_json_cannot_hold_is_kept_as_text(config: tinydj.Config) -> None:
    job = odd_value.send_later()
    assert tinydj.Worker(config=config).work_off() == (1, 0)
    kept = results.get(job)
    assert kept is not None and kept.value == "{1, 2}"


def test_tasks_without_keep_write_nothing(config: tinydj.Config) -> None:
    job = plain.send_later(1)
    assert tinydj.Worker(config=config).work_off() == (1, 0)
    assert results.get(job) is None
    assert results.status(job) is None


def test_expired_results_are_purged(config: tinydj.Config, clock: FakeClock) -> None:
    first = add.send_later(1, 1)
    tinydj.Worker(config=config).work_off()
    clock.advance(timedelta(days=1, seconds=1))
    second = add.send_later(2, 2)
    tinydj.Worker(config=config).work_off()
    assert results.purge() == 1
    assert results.get(first) is None
    kept = results.get(second)
    assert kept is not None and kept.value == 4


def test_workers_purge_on_their_own(
    config: tinydj.Config, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = add.send_later(1, 1)
    tinydj.Worker(config=config).work_off()
    clock.advance(timedelta(days=2))
    monkeypatch.setattr(results, "PURGE_EVERY", 0.0)
    add.send_later(3, 3)
    tinydj.Worker(config=config).work_off()
    assert results.get(first) is None


def test_keep_rejects_a_bad_retention() -> None:
    with pytest.raises(ValueError, match="soon"):
        results.keep("soon")


def test_show_prints_the_kept_result_of_a_finished_job(
    config: tinydj.Config, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tinydj.cli import main

    job = add.send_later(2, 3)
    assert tinydj.Worker(config=config).work_off() == (1, 0)
    capsys.readouterr()
    assert main(["show", str(job.id), "--database", db_url], clock=config.clock) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {job.id} is done (row deleted)\nresult:\n")
    assert "    status       SUCCESSFUL\n" in out
    assert "    value        5\n" in out
    assert main(["show", str(job.id), "--json", "--database", db_url], clock=config.clock) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["state"], data["result"]["status"], data["result"]["value"]) == (
        "done",
        "SUCCESSFUL",
        5,
    )
    tinydj.configure(config.database, clock=config.clock)
