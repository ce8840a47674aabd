"""Cancelling jobs (issue 12): tinydj.cancel, tinydj cancel, tinydj.current_job()."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import flow_jobs
import pytest
from proc_helpers import wait_until

import tinydj
from tinydj.cli import main
from tinydj.testing import FakeClock


@pytest.fixture(autouse=True)
def _reset() -> None:
    flow_jobs.reset()


def _row(job_id: int) -> tinydj.Job:
    row = tinydj.get_job(job_id)
    assert row is not None
    return row


def test_a_waiting_job_is_deleted_at_once(config: tinydj.Config, worker: tinydj.Worker) -> None:
    job = flow_jobs.notify.send_later("ann")
    later = flow_jobs.notify.send_in("1h", "bob")
    assert tinydj.cancel(job.id) == "deleted"
    assert tinydj.cancel(later.id) == "deleted"
    assert tinydj.get_job(job.id) is None and tinydj.get_job(later.id) is None
    assert tinydj.cancel(job.id) == "unknown"
    worker.work_off()
    assert flow_jobs.calls == []


def test_a_failed_job_is_left_for_inspection(config: tinydj.Config, worker: tinydj.Worker) -> None:
    job = flow_jobs.breaks.send_later("x")
    worker.work_off()
    assert tinydj.cancel(job.id) == "failed"
    assert _row(job.id).failed


def test_current_job_is_none_outside_a_job(config: tinydj.Config, worker: tinydj.Worker) -> None:
    assert tinydj.current_job() is None
    job = flow_jobs.who_am_i.send_later()
    worker.work_off()
    assert flow_jobs.calls == [(job.id, False)]
    assert tinydj.current_job() is None


def test_current_job_in_async_jobs_and_under_a_deadline(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    a = flow_jobs.async_who_am_i.send_later()
    b = flow_jobs.who_am_i_with_deadline.send_later()
    worker.work_off()
    assert sorted(flow_jobs.calls) == sorted([a.id, b.id])
    assert tinydj.current_job() is None


@pytest.fixture
def running_worker(config: tinydj.Config) -> Iterator[tinydj.Worker]:
    """A real worker whose leases (and so cancel requests) renew every 0.25 s."""
    worker = tinydj.Worker(config=config, lock_timeout=1.0, poll_interval=0.05)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def _running(job_id: int) -> None:
    wait_until(flow_jobs.started.is_set, 30, f"job {job_id} to start")
    wait_until(lambda: _row(job_id).locked, 30, f"job {job_id} to be locked")


def test_a_running_sync_job_sees_the_request_and_is_not_retried(
    config: tinydj.Config, running_worker: tinydj.Worker, capsys: pytest.CaptureFixture[str]
) -> None:
    job = flow_jobs.polls_cancel.send_later()
    _running(job.id)
    assert tinydj.cancel(job.id) == "requested"
    assert tinydj.cancel(job.id) == "requested"  # asking twice is harmless
    row = wait_until(lambda: _row(job.id).failed and _row(job.id), 30, "the job to be cancelled")
    assert flow_jobs.calls == [("stopped", job.id)]
    assert row.attempts == 1 and not row.locked
    assert (row.last_error or "").startswith("Cancelled: tinydj.cancel was requested")
    capsys.readouterr()
    assert main(["show", str(job.id), "--database", config.url or ""]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "Cancelled: tinydj.cancel was requested" in out


def test_an_async_job_is_cancelled(config: tinydj.Config, running_worker: tinydj.Worker) -> None:
    job = flow_jobs.waits_async.send_later()
    _running(job.id)
    assert tinydj.cancel(job.id) == "requested"
    row = wait_until(lambda: _row(job.id).failed and _row(job.id), 30, "the job to be cancelled")
    assert "async finished" not in flow_jobs.calls
    assert (row.last_error or "").startswith("Cancelled:")


def test_a_request_seen_before_the_job_starts_means_it_never_runs(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    job = flow_jobs.notify.send_later("ann")
    name = worker.name
    (reserved,) = config.store.reserve(name, clock(), clock(), limit=1)
    assert tinydj.cancel(job.id) == "requested"
    worker.leases.hold([job.id], since=worker.leases.clock())
    worker.leases.renew()  # what the renewal thread does
    worker._batches.run([reserved])
    assert flow_jobs.calls == []
    assert "before the job started" in (_row(job.id).last_error or "")


def test_a_cancelled_unique_job_frees_its_key(config: tinydj.Config) -> None:
    # No worker runs here: a live one could take the job before the cancel.
    first = flow_jobs.rebuild.send_later("x")  # unique while waiting or running
    assert tinydj.cancel(first.id) == "deleted"
    assert flow_jobs.rebuild.send_later("x").id != first.id


def test_retry_after_cancel_runs_the_job_again(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    job = flow_jobs.notify.send_later("ann")
    (reserved,) = config.store.reserve(worker.name, clock(), clock(), limit=1)
    tinydj.cancel(job.id)
    worker.leases.hold([job.id], since=worker.leases.clock())
    worker.leases.renew()
    worker._batches.run([reserved])
    assert tinydj.retry_job(job.id)
    worker.work_off()
    assert flow_jobs.calls == [("notify", "ann")]


def test_cli_cancel(
    config: tinydj.Config, capsys: pytest.CaptureFixture[str], clock: FakeClock
) -> None:
    waiting = flow_jobs.notify.send_later("ann")
    held = flow_jobs.notify.send_later("bob")
    config.store.reserve("other", clock(), clock(), limit=1)  # takes `waiting`
    url = config.url or ""
    status = main(["cancel", str(waiting.id), str(held.id), "999999", "--database", url])
    out, err = capsys.readouterr()
    assert status == 1
    assert f"job {waiting.id} is running: cancel requested" in out
    assert f"job {held.id} cancelled: deleted" in out
    assert err.strip() == "tinydj: no such job: 999999"
    assert main(["show", str(waiting.id), "--database", url]) == 0


def test_cancel_checks_its_argument(config: tinydj.Config) -> None:
    with pytest.raises(TypeError, match="job_id"):
        tinydj.cancel("3")  # type: ignore[arg-type]


def test_cancel_in_another_thread_does_not_race_the_start(
    config: tinydj.Config, running_worker: tinydj.Worker
) -> None:
    jobs = [flow_jobs.notify.send_later(str(i)) for i in range(20)]
    results: list[str] = []
    t = threading.Thread(target=lambda: results.extend(tinydj.cancel(j.id) for j in jobs))
    t.start()
    t.join()
    wait_until(lambda: not [j for j in tinydj.list_jobs() if not j.failed], 30, "the queue")
    ran = {c[1] for c in flow_jobs.calls}
    for j, result in zip(jobs, results, strict=True):
        if result == "deleted":
            assert str(jobs.index(j)) not in ran


def test_an_older_table_gets_the_cancel_column(db_url: str, clock: FakeClock) -> None:
    old = tinydj.configure(db_url, clock=clock)
    old.store.ensure_schema()
    old.store.db.execute_sql("ALTER TABLE delayed_jobs DROP COLUMN cancel_requested_at")
    old.store.close()
    fresh = tinydj.configure(db_url, clock=clock)
    job = flow_jobs.notify.send_later("after upgrade")
    fresh.store.reserve("w", clock(), clock(), limit=1)
    assert tinydj.cancel(job.id) == "requested"
    assert fresh.store.cancel_requests("w") == {job.id}
    columns = {c.name for c in fresh.store.db.get_columns("delayed_jobs")}
    assert "cancel_requested_at" in columns
    fresh.store.close()
