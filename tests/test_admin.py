"""The operator's functions (``tinydj.admin``) and the store methods behind
them, on every database: one state per row, counts, lag, clear, retry."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sample_jobs
from conftest import START

import tinydj
from tinydj import admin
from tinydj.tasks import upsert_recurring
from tinydj.testing import FakeClock


def set_columns(job_id: int, **columns: object) -> None:
    model = tinydj.get_config().store.model
    model.update(**columns).where(model.id == job_id).execute()


@pytest.fixture
def rows(config: tinydj.Config) -> dict[int, str]:
    """Seven rows and the state each is in at START."""
    ready = sample_jobs.record.send_later(1)
    later = sample_jobs.record.send_in("10m", 2)
    failed = sample_jobs.always_fails.send_later(3)
    running = sample_jobs.send_mail.send_later("a@example.com")
    recurring = upsert_recurring(config, sample_jobs.hourly, START)
    recurring_running = tinydj.schedule(sample_jobs.Report("r"), every="1d")
    overdue = sample_jobs.send_mail.send_at(START - timedelta(minutes=2), "b@example.com")
    set_columns(failed.id, failed_at=START, attempts=2)
    for job in (running, recurring_running):
        set_columns(job.id, locked_at=START, locked_by="w")
    return {
        ready.id: "ready",
        later.id: "scheduled",
        failed.id: "failed",
        running.id: "running",
        recurring.id: "recurring",
        recurring_running.id: "running",
        overdue.id: "ready",
    }


def test_every_row_has_one_state_and_sql_agrees(
    config: tinydj.Config, rows: dict[int, str]
) -> None:
    for job in tinydj.list_jobs():
        assert admin.state_of(job, START) == rows[job.id]
    for state in admin.STATES:
        jobs, total = admin.find_jobs(state=state)
        assert [j.id for j in jobs] == sorted(i for i, s in rows.items() if s == state)
        assert total == len(jobs)


def test_find_jobs_limit_and_total(config: tinydj.Config, rows: dict[int, str]) -> None:
    jobs, total = admin.find_jobs(limit=3)
    assert [j.id for j in jobs] == [1, 2, 3] and total == 7
    jobs, total = admin.find_jobs(queue="mail", limit=1)
    assert [j.id for j in jobs] == [4] and total == 2
    with pytest.raises(ValueError, match="state must be one of ready, scheduled"):
        admin.find_jobs(state="waiting")


def test_queue_stats_counts_and_lag(
    config: tinydj.Config, rows: dict[int, str], clock: FakeClock
) -> None:
    clock.advance(30)
    by_queue = {s.queue: s for s in admin.queue_stats()}
    assert list(by_queue) == ["default", "mail"]
    default, mail = by_queue["default"], by_queue["mail"]
    assert default.counts == {
        "ready": 1,
        "scheduled": 1,
        "running": 1,
        "failed": 1,
        "recurring": 1,
    }
    assert mail.counts == {"ready": 1, "scheduled": 0, "running": 1, "failed": 0, "recurring": 0}
    assert default.lag == timedelta(seconds=30)
    assert mail.lag == timedelta(minutes=2, seconds=30)  # the overdue job
    clock.set(START - timedelta(hours=1))  # before every run_at: nothing is ready
    assert all(s.lag is None and s.counts["ready"] == 0 for s in admin.queue_stats())


def test_clear_jobs_by_state_and_queue(config: tinydj.Config, rows: dict[int, str]) -> None:
    assert admin.clear_jobs(queue="mail", states=["ready", "failed"]) == {"ready": 1, "failed": 0}
    assert tinydj.clear(failed=True) == 1
    assert tinydj.clear(queue="mail") == 1  # the running one
    assert admin.clear_jobs() == {
        "ready": 1,
        "scheduled": 1,
        "running": 1,
        "failed": 0,
        "recurring": 1,
    }
    assert tinydj.list_jobs() == []
    with pytest.raises(ValueError, match="states must be among"):
        admin.clear_jobs(states=["done"])


def test_retry_job_in_python(config: tinydj.Config, rows: dict[int, str], clock: FakeClock) -> None:
    clock.advance(5)
    now = START + timedelta(seconds=5)
    assert tinydj.retry_job(3)  # failed
    assert tinydj.retry_job(2)  # scheduled: Python needs no --now
    for job_id in (2, 3):
        job = tinydj.get_job(job_id)
        assert job is not None
        assert (job.failed, job.attempts, job.run_at, job.locked) == (False, 0, now, False)
    with pytest.raises(tinydj.JobRunning) as raised:
        tinydj.retry_job(4)
    assert str(raised.value) == "job 4 is running on worker w; retry it when it has failed"
    assert isinstance(raised.value, tinydj.TinyDJError)
    assert tinydj.retry_job(4, lock_timeout=1)  # a lease older than that: a dead worker
    job = tinydj.get_job(4)
    assert job is not None and not job.locked
    assert not tinydj.retry_job(999)


def test_store_retry_unless_held_is_one_conditional_update(
    config: tinydj.Config, rows: dict[int, str]
) -> None:
    store = config.store
    assert not store.states.retry_unless_held(4, START, START - timedelta(seconds=30))
    assert store.states.retry_unless_held(4, START, START + timedelta(seconds=1))
    assert not store.states.retry_unless_held(999, START, START)
