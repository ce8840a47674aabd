from __future__ import annotations

import logging
import signal
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sample_jobs
from conftest import START
from proc_helpers import LOG_TAIL, Processes, read_lines, wait_until

import tinydj
from tinydj.redact import mask
from tinydj.store import NewJob
from tinydj.tasks import register_recurring
from tinydj.testing import FakeClock


def only_job() -> tinydj.Job:
    jobs = tinydj.list_jobs()
    assert len(jobs) == 1
    return jobs[0]


def test_success_deletes_the_row(config: tinydj.Config, worker: tinydj.Worker) -> None:
    sample_jobs.record.send_later("x")
    assert worker.work_off() == (1, 0)
    assert tinydj.list_jobs() == []
    assert worker.work_off() == (0, 0)


def test_work_off_respects_its_limit(config: tinydj.Config, worker: tinydj.Worker) -> None:
    for i in range(5):
        sample_jobs.record.send_later(i)
    assert worker.work_off(3) == (3, 0)
    assert worker.work_off(3) == (2, 0)


def test_order_is_priority_then_run_at_then_id(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    record = sample_jobs.record
    record.with_options(priority=5).send_later("p5")
    record.send_at(START - timedelta(minutes=1), "p0-earlier")
    record.send_later("p0-a")
    record.send_later("p0-b")
    record.with_options(priority=-1).send_later("urgent")
    record.send_at(START + timedelta(seconds=1), "future")
    assert worker.work_off() == (5, 0)
    order = [args[0] for args, _ in sample_jobs.calls]
    assert order == ["urgent", "p0-earlier", "p0-a", "p0-b", "p5"]
    clock.advance(1)
    assert worker.work_off() == (1, 0)


def test_batch_reservation_keeps_the_order(config: tinydj.Config, clock: FakeClock) -> None:
    for i in range(10):
        sample_jobs.record.with_options(priority=10 - i).send_later(i)
    assert tinydj.Worker(config=config, batch_size=4).work_off() == (10, 0)
    assert [a[0] for a, _ in sample_jobs.calls] == list(range(9, -1, -1))


def test_queues(config: tinydj.Config) -> None:
    sample_jobs.record.send_later("default")
    sample_jobs.send_mail.send_later("mail")
    sample_jobs.record.with_options(queue="other").send_later("other")
    assert tinydj.Worker(queues=["mail"], config=config).work_off() == (1, 0)
    assert tinydj.Worker(queues="other", config=config).work_off() == (1, 0)
    assert tinydj.Worker(queues=["mail", "other"], config=config).work_off() == (0, 0)
    assert tinydj.Worker(config=config).work_off() == (1, 0)


def test_failure_retries_with_growing_delay(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    sample_jobs.flaky.send_later("k", 3)
    delays = []
    for attempt in (1, 2, 3):
        assert worker.work_off() == (0, 1)
        row = only_job()
        assert row.attempts == attempt
        assert row.failed_at is None and row.locked_at is None and row.locked_by is None
        assert row.last_error is not None
        assert row.last_error.startswith(f"RuntimeError: flaky k attempt {attempt}")
        assert "Traceback" in row.last_error and "sample_jobs.py" in row.last_error
        delay = (row.run_at - clock()).total_seconds()
        delays.append(delay)
        assert worker.work_off() == (0, 0)  # not due yet
        clock.advance(delay)
    assert delays[0] >= 3 and delays[1] > delays[0] and delays[2] > delays[1]
    assert worker.work_off() == (1, 0)
    assert tinydj.list_jobs() == []


def test_max_attempts_sets_failed_at_and_keeps_the_row(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    sample_jobs.always_fails.send_later(7)  # max_attempts=2
    assert worker.work_off() == (0, 1)
    clock.advance(3600)
    assert worker.work_off() == (0, 1)
    row = only_job()
    assert row.attempts == 2 and row.failed and row.failed_at == clock()
    assert row.locked_by is None
    assert "ValueError: failure number 7" in (row.last_error or "")
    clock.advance(86400 * 30)
    assert worker.work_off() == (0, 0)  # failed jobs are never run again...
    assert tinydj.retry_job(row.id)  # ...until retried
    assert worker.work_off() == (0, 1)
    assert tinydj.stats()["failed"] == 0


def test_default_max_attempts_comes_from_configure(db_url: str, clock: FakeClock) -> None:
    config = tinydj.configure(db_url, clock=clock, max_attempts=1)
    sample_jobs.flaky.send_later("once", 5)
    assert tinydj.Worker(config=config).work_off() == (0, 1)
    assert only_job().failed
    config.store.close()


def test_unloadable_handlers_fail_at_once_and_the_worker_goes_on(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    bad = [
        "tinydj: 1\nfunction: no_such_module_abc:run\n",
        "tinydj: 1\nfunction: sample_jobs:no_such_function\n",
        "tinydj: 1\nfunction: [this is not yaml\n",
        "garbage: {: ]\x01",
    ]
    config.store.insert([NewJob(h, "default", 0, START) for h in bad], START)
    sample_jobs.record.send_later("still runs")
    assert worker.work_off() == (1, 4)
    rows = tinydj.list_jobs()
    assert len(rows) == 4
    for row in rows:
        assert row.attempts == 1 and row.failed
        assert (row.last_error or "").startswith("Job failed to load: ")
    assert "no_such_module_abc" in (rows[0].last_error or "")
    assert "no_such_function" in (rows[1].last_error or "")
    assert sample_jobs.calls == [(("still runs",), {})]


def test_async_functions_can_be_jobs(config: tinydj.Config, worker: tinydj.Worker) -> None:
    sample_jobs.async_record.send_later(5)
    assert worker.work_off() == (1, 0)
    assert sample_jobs.calls == [("async", 5)]


def test_object_hooks_on_success(config: tinydj.Config, worker: tinydj.Worker) -> None:
    tinydj.enqueue(sample_jobs.Hooked())
    assert worker.work_off() == (1, 0)
    assert sample_jobs.Hooked.events == ["before", "perform", "success", "after"]


def test_object_hooks_on_failure_and_its_max_attempts(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    tinydj.enqueue(sample_jobs.Hooked(fail=True))  # max_attempts = 2 on the class
    assert worker.work_off() == (0, 1)
    assert sample_jobs.Hooked.events == ["before", "perform", ("error", "KeyError"), "after"]
    sample_jobs.Hooked.events.clear()
    clock.advance(3600)
    assert worker.work_off() == (0, 1)
    assert sample_jobs.Hooked.events == [
        "before",
        "perform",
        ("error", "KeyError"),
        "after",
        "failure",
    ]
    assert only_job().failed


def test_reschedule_at_hook(config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock) -> None:
    tinydj.enqueue(sample_jobs.Rescheduled())
    worker.work_off()
    assert only_job().run_at == clock() + timedelta(seconds=100)


def test_recurring_job_runs_once_per_period(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    register_recurring(sample_jobs.hourly)
    assert worker.work_off() == (1, 0)  # a new row is due at once
    row = only_job()
    assert row.key == "sample_jobs:hourly" and row.reoccur_in == "1h"
    assert row.run_at == START + timedelta(hours=1)
    assert row.last_run_at == START and row.locked_at is None and row.locked_by is None
    assert worker.work_off() == (0, 0)
    clock.advance(timedelta(minutes=59))
    assert worker.work_off() == (0, 0)
    clock.advance(timedelta(minutes=2))
    assert worker.work_off() == (1, 0)
    assert only_job().run_at == START + timedelta(hours=2)  # from the plan, no drift
    # workers down for 5.5 hours: one run, then the next boundary
    clock.advance(timedelta(hours=5, minutes=30))
    assert worker.work_off() == (1, 0)
    assert worker.work_off() == (0, 0)
    assert only_job().run_at == START + timedelta(hours=7)
    assert sample_jobs.calls == ["hourly"] * 3


def test_recurring_rows_are_upserted_once_by_every_worker(
    config: tinydj.Config, clock: FakeClock
) -> None:
    register_recurring(sample_jobs.hourly)
    for _ in range(3):
        tinydj.Worker(config=config).work_off(0)
    assert len(tinydj.list_jobs()) == 1


def test_changing_the_interval_updates_the_row(config: tinydj.Config, clock: FakeClock) -> None:
    register_recurring(sample_jobs.hourly)
    tinydj.Worker(config=config).work_off()
    assert only_job().run_at == START + timedelta(hours=1)
    faster = sample_jobs.hourly.__class__(sample_jobs.hourly.fn, every=timedelta(minutes=10))
    register_recurring(faster)
    tinydj.Worker(config=config).work_off(0)
    row = only_job()
    assert row.reoccur_in == "10m"
    assert row.run_at == START + timedelta(minutes=10)


def test_failing_recurring_job_keeps_its_schedule(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    row = tinydj.schedule(sample_jobs.Rescheduled(), every="1h")  # perform always raises
    for n in (1, 2, 3):
        assert worker.work_off() == (0, 1)
        row = only_job()
        assert row.attempts == n and row.failed_at is None and row.locked_by is None
        assert "RuntimeError: again" in (row.last_error or "")
        assert row.run_at == START + timedelta(hours=n)
        clock.advance(3600)


def test_recurring_attempts_reset_on_success(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    tinydj.schedule(sample_jobs.Report("r"), every="1h")
    config.store.db.execute_sql(
        config.store._q("UPDATE delayed_jobs SET attempts = ?, last_error = ?"), (4, "old")
    )
    assert worker.work_off() == (1, 0)
    row = only_job()
    assert row.attempts == 0 and row.last_error is None


def test_expired_lease_is_reclaimed_without_an_attempt(
    config: tinydj.Config, clock: FakeClock
) -> None:
    job = sample_jobs.record.send_later("reclaimed")
    # a worker takes the job and dies (never finishes, never renews)
    taken = config.store.reserve("dead-worker", clock(), clock() - timedelta(seconds=30))
    assert [j.id for j in taken] == [job.id]
    live = tinydj.Worker(config=config, lock_timeout=30)
    clock.advance(29)
    assert live.work_off() == (0, 0)  # the lease still holds
    clock.advance(2)
    assert live.work_off() == (1, 0)
    assert sample_jobs.calls == [(("reclaimed",), {})]


def test_reclaimed_job_is_marked_interrupted(config: tinydj.Config, clock: FakeClock) -> None:
    sample_jobs.always_fails.send_later(1)
    config.store.reserve("dead-worker", clock(), clock() - timedelta(seconds=30))
    clock.advance(31)
    taken = config.store.reserve("second", clock(), clock() - timedelta(seconds=30))
    assert taken[0].attempts == 0
    assert (taken[0].last_error or "").startswith("Interrupted: worker dead-worker")


def test_a_worker_that_lost_its_lease_cannot_finish_the_job(
    config: tinydj.Config, clock: FakeClock
) -> None:
    sample_jobs.record.send_later("x")
    (job,) = config.store.reserve("slow", clock(), clock() - timedelta(seconds=30))
    clock.advance(31)
    (again,) = config.store.reserve("fast", clock(), clock() - timedelta(seconds=30))
    assert again.id == job.id
    assert config.store.ack("slow", [job.id]) == 0  # the new holder keeps it
    assert not config.store.finish(
        job.id, "slow", clock(), attempts=1, last_error="x", run_at=clock()
    )
    assert tinydj.get_job(job.id) is not None
    assert config.store.ack("fast", [job.id]) == 1


def test_leases_are_renewed(config: tinydj.Config, clock: FakeClock) -> None:
    sample_jobs.record.send_later("x")
    config.store.reserve("w", clock(), clock())
    clock.advance(100)
    assert config.store.renew("w", clock(), [only_job().id]) == 1
    assert only_job().locked_at == clock()


def test_stop_releases_locks_of_unstarted_jobs(config: tinydj.Config, clock: FakeClock) -> None:
    for i in range(3):
        sample_jobs.record.send_later(i)
    worker = tinydj.Worker(config=config, batch_size=3)
    worker._stopping.set()  # as if stop() came during a batch
    batches = worker._batches
    assert batches.run(batches.reserve(3)) == (0, 0, [j.id for j in tinydj.list_jobs()])


def test_worker_validates_its_options(config: tinydj.Config) -> None:
    for kwargs in (
        {"threads": 0},
        {"lock_timeout": 0},
        {"poll_interval": -1},
        {"queues": [""]},
        {"batch_size": 0},
    ):
        with pytest.raises(ValueError):
            tinydj.Worker(config=config, **kwargs)  # type: ignore[arg-type]


def test_clear_deletes_everything(config: tinydj.Config, worker: tinydj.Worker) -> None:
    sample_jobs.always_fails.with_options(max_attempts=1).send_later(2)
    assert worker.work_off() == (0, 1)
    sample_jobs.record.send_later(1)
    tinydj.schedule(sample_jobs.Report("r"), every="1h")
    assert tinydj.clear() == 3
    assert tinydj.list_jobs() == []


def test_stats(config: tinydj.Config, clock: FakeClock) -> None:
    sample_jobs.record.send_later(1)
    sample_jobs.record.send_in("1h", 2)
    assert tinydj.stats() == {"ready": 1, "scheduled": 1, "locked": 0, "failed": 0}


def test_a_job_that_keeps_killing_its_workers_is_failed(
    config: tinydj.Config, clock: FakeClock
) -> None:
    from tinydj.worker import MAX_INTERRUPTIONS

    job = sample_jobs.record.send_later("poison")
    for n in range(1, MAX_INTERRUPTIONS + 1):
        # a worker takes the job and dies; the next one reclaims it
        config.store.reserve(f"dies-{n}", clock(), clock() - timedelta(seconds=30))
        clock.advance(31)
    # counted, but not as attempts
    assert tinydj.Worker(config=config).work_off() == (0, 1)
    row = tinydj.get_job(job.id)
    assert row is not None and row.failed and row.attempts == 1
    assert row.interruptions == MAX_INTERRUPTIONS
    assert (row.last_error or "").startswith(f"Interrupted {MAX_INTERRUPTIONS} times in a row")
    assert sample_jobs.calls == []


def test_interruptions_reset_after_a_completed_run(config: tinydj.Config, clock: FakeClock) -> None:
    sample_jobs.always_fails.with_options(max_attempts=5).send_later(1)
    config.store.reserve("dies", clock(), clock() - timedelta(seconds=30))
    clock.advance(31)
    assert tinydj.Worker(config=config).work_off() == (0, 1)
    (row,) = tinydj.list_jobs()
    assert row.attempts == 1 and row.interruptions == 0


def test_old_tables_get_new_columns(db_url: str, clock: FakeClock) -> None:
    config = tinydj.configure(db_url, clock=clock)
    config.store.ensure_schema()
    config.store.db.execute_sql("ALTER TABLE delayed_jobs DROP COLUMN interruptions")
    fresh = tinydj.configure(db_url, clock=clock)
    sample_jobs.record.send_later("after upgrade")
    assert tinydj.Worker(config=fresh).work_off() == (1, 0)
    config.store.close()
    fresh.store.close()


def test_allowed_modules_fail_jobs_from_elsewhere(db_url: str, clock: FakeClock) -> None:
    config = tinydj.configure(db_url, clock=clock, allowed_modules=["sample_jobs"])
    sample_jobs.record.send_later("fine")
    tinydj.send_later(print, "not allowed")
    assert tinydj.Worker(config=config).work_off() == (1, 1)
    (row,) = tinydj.list_jobs()
    assert row.failed and "outside the allowed modules" in (row.last_error or "")
    with pytest.raises(TypeError):
        tinydj.configure(db_url, allowed_modules=[3])
    config.store.close()


# -- what the worker tells its operator (issue 9) ----------------------------------


def test_sys_exit_in_a_job_is_recorded_with_its_exit_code(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    job = sample_jobs.exits.send_later(3)
    assert worker.work_off() == (0, 1)
    row = tinydj.get_job(job.id)
    assert row is not None and (row.last_error or "").startswith("SystemExit: exit code 3\n")


def _gone_recurring_row(config: tinydj.Config, clock: FakeClock) -> tinydj.Job:
    """A recurring row whose function was renamed away since it was written."""
    handler = "tinydj: 1\nfunction: sample_jobs:renamed_away\n"
    new = NewJob(handler, "default", 0, clock(), key="sample_jobs:renamed_away", reoccur_in="1h")
    return config.store.upsert(new, clock(), clock())


def test_a_recurring_row_whose_function_is_gone_is_logged_once_per_worker(
    config: tinydj.Config, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    row = _gone_recurring_row(config, clock)
    worker = tinydj.Worker(config=config)
    with caplog.at_level(logging.INFO, logger="tinydj"):
        for _ in range(3):  # three periods
            assert worker.work_off() == (0, 1)
            clock.advance(3600)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert f"tinydj delete {row.id}" in errors[0].getMessage()
    again = tinydj.get_job(row.id)
    assert again is not None and not again.failed and again.attempts == 3


def test_a_deleted_every_row_is_restored_at_its_next_period_boundary(
    config: tinydj.Config, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    register_recurring(sample_jobs.hourly)
    worker = tinydj.Worker(config=config)
    assert worker.work_off() == (1, 0)
    assert tinydj.clear() == 1  # tinydj clear
    clock.advance(30)
    assert worker.work_off() == (0, 0)
    assert tinydj.list_jobs() == [], "checked at most once a minute"
    clock.advance(31)
    with caplog.at_level(logging.WARNING, logger="tinydj"):
        assert worker.work_off() == (0, 0), "restored for its next period, not due at once"
    row = only_job()
    assert row.key == "sample_jobs:hourly" and row.run_at == START + timedelta(hours=1)
    assert any("restored" in r.getMessage() for r in caplog.records)
    clock.set(START + timedelta(hours=1))
    assert worker.work_off() == (1, 0)
    assert sample_jobs.calls == ["hourly", "hourly"]


def test_a_live_worker_restores_a_cleared_every_row(
    config: tinydj.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinydj import recurring

    monkeypatch.setattr(recurring, "CHECK_EVERY", 0.0)  # every renewal tick
    register_recurring(sample_jobs.hourly)
    worker = tinydj.Worker(config=config, lock_timeout=0.4, poll_interval=0.05)
    worker.start()
    try:
        wait_until(lambda: "hourly" in sample_jobs.calls, 10, "the first run")
        wait_until(lambda: not only_job().locked, 10, "the row to be rescheduled")
        tinydj.clear()
        restored = wait_until(lambda: tinydj.list_jobs(), 10, "the row to be restored")
    finally:
        worker.stop()
    assert [r.key for r in restored] == ["sample_jobs:hourly"]
    assert restored[0].run_at == START + timedelta(hours=1)


def test_the_start_up_line_says_what_the_worker_does(
    config: tinydj.Config, caplog: pytest.LogCaptureFixture
) -> None:
    register_recurring(sample_jobs.hourly)
    worker = tinydj.Worker(config=config, queues=["mail", "a"], threads=2, lock_timeout=7)
    with caplog.at_level(logging.INFO, logger="tinydj"):
        worker.start()
        worker.stop()
    (line,) = [r.getMessage() for r in caplog.records if " started: " in r.getMessage()]
    for part in (
        "2 thread(s)",
        "queues mail, a",
        f"database {mask(config.url or '')}",
        "lock timeout 7 s",
        "recurring jobs: sample_jobs:hourly every 1h",
    ):
        assert part in line, line


def test_the_database_in_the_start_up_line_has_no_password() -> None:
    from tinydj.worker import _database

    shown = _database(SimpleNamespace(url="mysql://root:s3cret@db/app"))  # type: ignore[arg-type]
    assert shown == "mysql://root:***@db/app"


def test_a_worker_without_every_jobs_hints_at_app_when_recurring_rows_exist(
    config: tinydj.Config, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    _gone_recurring_row(config, clock)
    with caplog.at_level(logging.INFO, logger="tinydj"):
        tinydj.Worker(config=config).work_off(0)
    hints = [r.getMessage() for r in caplog.records if "--app" in r.getMessage()]
    assert len(hints) == 1 and "sample_jobs:renamed_away" in hints[0], hints


def test_no_app_hint_without_recurring_rows(
    config: tinydj.Config, caplog: pytest.LogCaptureFixture
) -> None:
    sample_jobs.record.send_later(1)
    with caplog.at_level(logging.INFO, logger="tinydj"):
        tinydj.Worker(config=config).work_off()
    assert not [r for r in caplog.records if "--app" in r.getMessage()]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_first_ctrl_c_says_at_once_what_the_worker_waits_for(
    sqlite_url: str, procs: Processes, tmp_path: Path
) -> None:
    cfg = tinydj.configure(sqlite_url)
    out, marker = tmp_path / "ran.txt", tmp_path / "go"
    sample_jobs.wait_for_file.send_later(str(out), str(marker))
    proc = procs.work("w", sqlite_url, "--poll-interval", "0.05")
    try:
        wait_until(lambda: read_lines(out) == ["start"], 30, "the job to start")
        proc.send_signal(signal.SIGINT)
        expected = "stopping: waiting for 1 running job(s); Ctrl-C again to exit now"
        wait_until(
            lambda: expected in procs.output("w"),
            10,
            "the stop message while the job still runs",
            details=lambda: procs.output("w", LOG_TAIL),
        )
        assert read_lines(out) == ["start"], "said before the job ended"
        marker.touch()
        procs.assert_exit("w", 0, timeout=30)
    finally:
        cfg.store.close()
    assert read_lines(out) == ["start", "done"]
    assert tinydj.list_jobs() == []


def test_a_success_is_timed_while_its_log_line_is_wanted(
    config: tinydj.Config, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    from tinydj.outcome import Kind

    worker = tinydj.Worker(config=config)
    executor = worker._executor
    job = sample_jobs.record.send_later("a")
    with caplog.at_level(logging.WARNING, logger="tinydj"):
        executor.refresh()  # what the runner does before each batch
        quiet = executor.run(job)
    with caplog.at_level(logging.INFO, logger="tinydj"):
        executor.refresh()
        timed = executor.run(job)
    assert quiet.kind is timed.kind is Kind.SUCCEEDED
    assert quiet.seconds == 0.0 and timed.seconds > 0.0
    with caplog.at_level(logging.INFO, logger="tinydj"):
        assert worker.work_off() == (1, 0)
    assert any("COMPLETED after" in r.getMessage() for r in caplog.records)
