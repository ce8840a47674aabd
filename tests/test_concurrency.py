"""Real concurrency: worker processes and threads sharing one table.

These tests start ``python -m tinydj work`` subprocesses (and in-process
``Worker.start()`` threads) against a real SQLite file or PostgreSQL database,
with the real clock. Jobs leave their trace in files opened with O_APPEND, so
the test can see what ran, how often and where. Every wait is a poll of a
condition with a deadline; every subprocess is killed in teardown if a test
left it running.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest
import sample_jobs
from proc_helpers import Processes, read_lines, run_exactly_once, wait_until

import tinydj
from tinydj.schedule import parse_every, utcnow

# -- helpers ---------------------------------------------------------------------


@pytest.fixture
def live(db_url: str) -> Iterator[tinydj.Config]:
    """tinydj configured on ``db_url`` with the real clock (workers in other
    processes use the real clock too). Touches no table: the first use creates it."""
    cfg = tinydj.configure(db_url)
    yield cfg
    cfg.store.close()
    if not isinstance(cfg.database, peewee.SqliteDatabase):
        cfg.database.close()


def job_row(job_id: int) -> tinydj.Job | None:
    return tinydj.get_job(job_id)


# -- 1 + 2: exactly once across processes and threads ------------------------------

JOBS = 2000
PROCESSES = 4


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_each_job_runs_exactly_once_across_processes_and_threads(
    live: tinydj.Config, db_url: str, procs: Processes, tmp_path: Path
) -> None:
    run_exactly_once(db_url, procs, tmp_path, processes=PROCESSES, threads=2, jobs=JOBS)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_each_job_runs_exactly_once_with_workers_of_several_queues(
    live: tinydj.Config, db_url: str, procs: Processes, tmp_path: Path
) -> None:
    """Workers of two queues reserve from one seek per queue, merged (on
    PostgreSQL the merge drops rows it locked): still each job once."""
    run_exactly_once(
        db_url, procs, tmp_path, processes=PROCESSES, threads=2, jobs=JOBS, queues=("a", "b")
    )


# -- 3: kill -9 mid-job, then another worker reclaims it --------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_job_of_killed_worker_is_reclaimed_after_its_lease_expires(
    live: tinydj.Config, db_url: str, procs: Processes, tmp_path: Path
) -> None:
    out = tmp_path / "progress.txt"
    marker = tmp_path / "go"
    lease = 2.0
    job = sample_jobs.wait_for_file.send_later(str(out), str(marker), 30.0)

    procs.work("worker-a", db_url, "--lock-timeout", str(lease), "--poll-interval", "0.2")
    wait_until(lambda: read_lines(out) == ["start"], 20, "worker-a to start the job")
    row = job_row(job.id)
    assert row is not None and row.locked_by == "worker-a" and row.attempts == 0

    procs.procs["worker-a"].send_signal(signal.SIGKILL)
    assert procs.wait("worker-a", 10) == -signal.SIGKILL
    row = job_row(job.id)
    assert row is not None and row.locked_by == "worker-a", "kill -9 leaves the lock behind"
    assert row.last_error is None and row.locked_at is not None
    last_renewal = row.locked_at

    procs.work("worker-b", db_url, "--lock-timeout", str(lease), "--poll-interval", "0.2")
    wait_until(
        lambda: read_lines(out).count("start") == 2,
        20,
        "worker-b to run the job again once worker-a's lease expired",
    )
    # worker-b may take the job only once worker-a's last renewal is `lease` s old.
    seen = utcnow()
    assert seen >= last_renewal + timedelta(seconds=lease), (
        f"job taken {(seen - last_renewal).total_seconds():.2f} s after the last renewal "
        f"(lock timeout {lease} s)"
    )

    # While worker-b runs it (blocked on the marker), the row tells what happened.
    row = job_row(job.id)
    assert row is not None
    assert row.locked_by == "worker-b"
    assert row.last_error is not None and row.last_error.startswith("Interrupted"), row.last_error
    assert "worker-a" in row.last_error
    assert row.attempts == 0, "an interruption is not counted as an attempt"
    assert row.failed_at is None

    marker.touch()
    wait_until(lambda: "done" in read_lines(out), 20, "the reclaimed job to finish")
    wait_until(lambda: job_row(job.id) is None, 10, "the finished job's row to be deleted")
    procs.procs["worker-b"].send_signal(signal.SIGTERM)
    procs.assert_exit("worker-b", 0, timeout=15)
    assert read_lines(out) == ["start", "start", "done"]
    assert tinydj.list_jobs() == []


# -- 4: in-process start(): woken by send_later, graceful stop() ------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_started_worker_is_woken_by_send_later_and_stops_gracefully(
    live: tinydj.Config, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    blocked = tmp_path / "blocked.txt"
    marker = tmp_path / "go"
    # Enqueued before start(): the first look at the table finds it. Once its
    # row is gone the thread that ran it has looked again (the delete is part
    # of its next reserve) and found nothing: both threads are idle, each for
    # up to poll_interval = 30 s.
    first = sample_jobs.append_line.send_later(str(out), "first")
    # batch_size=1: each thread holds one job at a time, so the two blocking
    # jobs below run side by side (batches are the next test's subject).
    worker = tinydj.Worker(threads=2, poll_interval=30.0, lock_timeout=5.0, batch_size=1)
    worker.start()
    try:
        assert worker.running
        wait_until(lambda: "first" in read_lines(out), 5, "the first job to run")
        wait_until(lambda: job_row(first.id) is None, 5, "the first job to be deleted")

        sent = time.monotonic()
        second = sample_jobs.append_line.send_later(str(out), "second")
        wait_until(
            lambda: "second" in read_lines(out),
            5,
            "send_later to wake the idle worker (poll_interval is 30 s)",
        )
        latency = time.monotonic() - sent
        assert latency < 5, f"send_later waited for the poll interval ({latency:.1f} s)"
        wait_until(lambda: job_row(second.id) is None, 5, "the second job to be deleted")
        assert read_lines(out) == ["first", "second"]

        # Two jobs that block until the marker exists keep both threads busy;
        # three more wait behind them.
        running = sample_jobs.wait_for_file.send_later_many([(str(blocked), str(marker), 30.0)] * 2)
        wait_until(lambda: read_lines(blocked).count("start") == 2, 5, "both threads to run")
        for j in running:
            row = job_row(j.id)
            assert row is not None and row.locked_by == worker.name
        waiting = sample_jobs.append_line.send_later_many(
            [(str(out), f"late {i}") for i in range(3)]
        )

        stopper = threading.Thread(target=worker.stop, name="stopper")
        stopper.start()
        stopper.join(0.5)
        assert stopper.is_alive(), "stop() returned while jobs were still running"
        assert "done" not in read_lines(blocked)

        marker.touch()
        stopper.join(15)
        assert not stopper.is_alive(), "stop() did not return after the jobs finished"
        assert not worker.running
        assert read_lines(blocked) == ["start", "start", "done", "done"]
    finally:
        marker.touch()
        worker.stop()

    # The running jobs finished and were deleted; stop() started no new job
    # and left the waiting ones unlocked for the next worker.
    assert [job_row(j.id) for j in running] == [None, None]
    assert read_lines(out) == ["first", "second"]
    rows = tinydj.list_jobs()
    assert sorted(r.id for r in rows) == sorted(j.id for j in waiting)
    assert all(r.locked_by is None and r.locked_at is None for r in rows), rows
    assert all(r.attempts == 0 and r.last_error is None for r in rows), rows
    assert tinydj.stats()["locked"] == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_stop_releases_jobs_reserved_but_not_started(live: tinydj.Config, tmp_path: Path) -> None:
    """A thread that reserved a batch and is told to stop finishes the job it
    runs and unlocks the rest at once (not after lock_timeout)."""
    out = tmp_path / "out.txt"
    blocked = tmp_path / "blocked.txt"
    marker = tmp_path / "go"
    blocker = sample_jobs.wait_for_file.with_options(priority=-1).send_later(
        str(blocked), str(marker), 30.0
    )
    queued = sample_jobs.append_line.send_later_many([(str(out), f"queued {i}") for i in range(3)])
    worker = tinydj.Worker(threads=1, poll_interval=30.0, lock_timeout=30.0, batch_size=4)
    worker.start()
    try:
        wait_until(lambda: read_lines(blocked) == ["start"], 5, "the blocking job to start")
        rows = tinydj.list_jobs()
        assert {r.id for r in rows} == {blocker.id, *(j.id for j in queued)}
        assert all(r.locked_by == worker.name for r in rows), "one batch holds all four"

        stopper = threading.Thread(target=worker.stop, name="stopper")
        stopper.start()
        stopper.join(0.3)
        assert stopper.is_alive(), "stop() returned while a job was still running"
        marker.touch()
        stopper.join(15)
        assert not stopper.is_alive(), "stop() did not return after the job finished"
    finally:
        marker.touch()
        worker.stop()

    assert read_lines(blocked) == ["start", "done"]
    assert job_row(blocker.id) is None
    assert read_lines(out) == [], "no job may start after stop()"
    rows = tinydj.list_jobs()
    assert sorted(r.id for r in rows) == sorted(j.id for j in queued)
    assert all(r.locked_by is None and r.locked_at is None for r in rows), rows
    assert all(r.attempts == 0 and r.last_error is None for r in rows), rows


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_send_later_while_the_worker_goes_idle_is_not_missed(
    live: tinydj.Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``worker.start(); task.send_later(...)``: the enqueue may land while the
    worker's thread has just found the table empty and is about to sleep. The
    wake-up must not be lost (else the job waits for poll_interval, here 30 s).

    The store's ``reserve`` is wrapped to hold the thread in exactly that
    window until the test has enqueued, so the race is hit every time.
    """
    out = tmp_path / "out.txt"
    live.store.ensure_schema()
    looked, sent = threading.Event(), threading.Event()
    real_reserve = live.store.reserve

    def reserve(*args: Any, **kwargs: Any) -> list[tinydj.Job]:
        jobs = real_reserve(*args, **kwargs)
        if not jobs and not looked.is_set():
            looked.set()
            sent.wait(10)  # the send_later below happens now
        return jobs

    monkeypatch.setattr(live.store, "reserve", reserve)
    worker = tinydj.Worker(threads=1, poll_interval=30.0)
    worker.start()
    try:
        assert looked.wait(10), "the worker never looked at the table"
        job = sample_jobs.append_line.send_later(str(out), "sent while going idle")
        sent.set()
        wait_until(
            lambda: read_lines(out) == ["sent while going idle"],
            5,
            "the job to run; the wake-up of send_later was lost, so the worker "
            "sleeps for its whole poll_interval (30 s)",
        )
        wait_until(lambda: job_row(job.id) is None, 5, "the job to be deleted")
    finally:
        sent.set()
        worker.stop()
    assert tinydj.list_jobs() == []


# -- 5: a long job is not taken from a live worker --------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_long_job_is_not_taken_from_a_live_worker(
    live: tinydj.Config, db_url: str, procs: Processes, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    lease = 1.0
    seconds = 3.0  # several lease periods
    long = sample_jobs.slow_append.send_later(str(out), "long", seconds)

    procs.work("worker-a", db_url, "--lock-timeout", str(lease), "--exit-on-complete")
    wait_until(lambda: "start long" in read_lines(out), 20, "worker-a to start the long job")
    started = time.monotonic()

    # Worker B (in this process) polls the same table all along, with the same
    # short lock timeout, and is free to take anything it may.
    other_worker = tinydj.Worker(lock_timeout=lease, poll_interval=0.05, name="worker-b")
    other_worker.start()
    seen_locks: set[Any] = set()
    try:
        other = sample_jobs.append_token.send_later(str(out), "other")

        def long_done() -> bool:
            row = job_row(long.id)
            if row is not None and row.locked_at is not None:
                assert row.locked_by == "worker-a", f"the long job was taken: {row}"
                seen_locks.add(row.locked_at)
            return "done long" in read_lines(out)

        wait_until(long_done, seconds + 15, "the long job to finish")
        took = time.monotonic() - started
        wait_until(lambda: job_row(other.id) is None, 10, "worker-b to run the other job")
    finally:
        other_worker.stop()
    procs.assert_exit("worker-a", 0, timeout=15)

    lines = read_lines(out)
    assert lines.count("start long") == 1, f"the long job ran twice: {lines}"
    assert lines.count("done long") == 1
    assert took > 2 * lease, "the job did not outlive its lock timeout"
    assert len(seen_locks) >= 3, f"the lease was not renewed while the job ran: {seen_locks}"
    # B was alive and working meanwhile: it ran the other job (A's one thread was busy).
    others = [line.split() for line in lines if line.startswith("other ")]
    assert len(others) == 1 and others[0][1] == str(os.getpid()), lines
    assert tinydj.list_jobs() == []


# -- 6: many workers starting at once make one row per @every function -----------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_workers_starting_at_once_make_one_recurring_row_and_run_it_once(
    live: tinydj.Config, db_url: str, procs: Processes, tmp_path: Path
) -> None:
    out = tmp_path / "ticks.txt"
    env = {"TINYDJ_TEST_RECURRING_OUT": str(out)}
    # Nothing has touched the database: the workers also race to create the table.
    before = utcnow()
    for wave in range(2):
        names = [f"w{wave}-{i}" for i in range(PROCESSES)]
        for name in names:
            procs.work(name, db_url, "--app", "recurring_app", "--exit-on-complete", env=env)
        for name in names:
            procs.assert_exit(name, 0, timeout=30)

        rows = tinydj.list_jobs()
        assert [r.key for r in rows] == ["recurring_app:tick"], rows
        assert read_lines(out) and len(read_lines(out)) == 1, (
            f"ran {len(read_lines(out))} times in one period (wave {wave}): {read_lines(out)}"
        )
        row = rows[0]
        assert row.reoccur_in is not None and parse_every(row.reoccur_in) == timedelta(hours=1)
        assert row.locked_by is None and row.locked_at is None
        assert row.failed_at is None and row.attempts == 0 and row.last_error is None
        assert row.last_run_at is not None and row.last_run_at >= before - timedelta(seconds=1)
        # Next run: one period after the first (planned) run, not before.
        assert row.run_at >= before + timedelta(minutes=59), row.run_at


def _work_off_at_once(
    cfg: tinydj.Config,
    barrier: threading.Barrier,
    results: list[tuple[int, int]],
    errors: list[str],
) -> None:
    """A worker thread: wait for the others, then ``work_off`` (which first
    creates the table and the @every rows)."""
    try:
        barrier.wait(10)
        results.append(tinydj.Worker(config=cfg).work_off(10))
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}".strip())
    finally:
        cfg.store.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_workers_in_threads_starting_at_once_on_a_fresh_database(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race, tighter: 8 workers (each with its own connection, as in
    separate processes) released by a barrier at the same instant on a database
    without the table, three times. Each must create the table, write the
    @every row and go on; the recurring job runs once per round."""
    from conftest import drop_table

    out = tmp_path / "ticks.txt"
    monkeypatch.setenv("TINYDJ_TEST_RECURRING_OUT", str(out))
    import recurring_app

    # conftest empties the registry around each test; register the task here.
    tinydj.tasks.register_recurring(recurring_app.tick)
    configs: list[tinydj.Config] = []
    try:
        for round_ in range(3):
            drop_table(db_url)
            workers = [tinydj.configure(db_url) for _ in range(8)]
            configs.extend(workers)
            barrier = threading.Barrier(len(workers))
            errors: list[str] = []
            results: list[tuple[int, int]] = []
            threads = [
                threading.Thread(target=_work_off_at_once, args=(c, barrier, results, errors))
                for c in workers
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads), "a worker hung"
            assert not errors, f"round {round_}: {len(errors)} worker(s) failed: {errors}"
            assert sorted(results) == [(0, 0)] * 7 + [(1, 0)], results
            assert len(read_lines(out)) == round_ + 1, "the @every job must run once per round"
            rows = workers[0].store.select()
            assert [r.key for r in rows] == ["recurring_app:tick"], rows
            assert rows[0].locked_by is None and rows[0].attempts == 0
    finally:
        for cfg in configs:
            cfg.store.close()
            if not isinstance(cfg.database, peewee.SqliteDatabase):
                cfg.database.close()


@pytest.mark.slow
def test_restarting_a_worker_leaves_no_old_listener(live: tinydj.Config) -> None:
    """stop() does not wait for the LISTEN thread, but it must end (Postgres)."""
    if live.store.listener() is None:
        pytest.skip("only Postgres listens for NOTIFY")
    worker = tinydj.Worker(config=live, poll_interval=5)

    def listeners() -> int:
        return sum(t.name == "tinydj-listen" and t.is_alive() for t in threading.enumerate())

    def listening() -> int:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN tinydj%%'"
        return int(live.database.execute_sql(sql).fetchone()[0])

    baseline = listening()
    for _ in range(3):
        worker.start()
        # the LISTEN connection is up: the thread is inside its wait loop
        wait_until(lambda: listening() > baseline, 5, "the LISTEN connection")
        worker.stop()
    worker.start()

    try:
        wait_until(lambda: listeners() == 1, 5, "the old LISTEN threads to end")
    finally:
        worker.stop()
    wait_until(lambda: listeners() == 0, 5, "the last LISTEN thread to end")
