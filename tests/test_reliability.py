"""Reliability: no job lost, no job run twice (unless its worker died), no
"database is locked" reaching a caller, clear errors for bad input.

The soak and contention tests start real ``python -m tinydj work`` processes
(and in-process ``Worker`` threads) on one SQLite file or PostgreSQL database,
with the real clock. Jobs leave their trace in files opened with O_APPEND, so
the test sees what ran, where, and when. Every wait is a poll of a condition
with a deadline; every process a test starts is killed in a ``finally``.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import conftest
import peewee
import pytest
import sample_jobs
from conftest import MYSQL_URL, PG_URL, drop_table
from proc_helpers import LOG_TAIL, Processes, child_env, read_lines, tinydj_command, wait_until

import tinydj
from tinydj.schedule import utcnow
from tinydj.store import NewJob

# -- helpers -----------------------------------------------------------------------


def _db_param(name: str, url: str | None, variable: str) -> Any:
    # conftest's rule: skipped without a server URL, but an error in CI.
    return conftest._server_param(name, url, variable)


SERVERS = [
    "sqlite",
    _db_param("postgres", PG_URL, "TINYDJ_TEST_PG_URL"),
    _db_param("mysql", MYSQL_URL, "TINYDJ_TEST_MYSQL_URL"),
]


@pytest.fixture
def live_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL (no delayed_jobs table yet) with tinydj configured on it
    with the real clock, as the worker processes use."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        url = {"postgres": PG_URL, "mysql": MYSQL_URL}[kind]
        if not url:  # only reached in CI (conftest skips these otherwise)
            pytest.fail(f"no {kind} URL: in CI the {kind} soak must run")
        drop_table(url)
    sample_jobs.reset()
    cfg = tinydj.configure(url)
    yield url
    cfg.store.close()
    cfg.database.close()


def remaining_jobs(cfg: tinydj.Config) -> int:
    counts = cfg.store.counts(utcnow())
    return sum(counts.values())


# -- 1: the soak: SIGKILL a random worker every ~0.5 s ------------------------------

SOAK_JOBS = 3000
SOAK_PROCESSES = 3
SOAK_THREADS = 4
SOAK_JOB_SECONDS = 0.02
KILL_EVERY = 0.5
LOCK_TIMEOUT = 1.0
SOAK_DEADLINE = 120.0


@dataclass
class Run:
    token: str
    pid: int
    started: float
    done: float | None = None


def parse_runs(lines: list[str]) -> dict[str, list[Run]]:
    """Runs of each token, in start order, from ``start/done TOKEN PID TIME`` lines."""
    runs: dict[str, list[Run]] = defaultdict(list)
    open_runs: dict[tuple[str, int], Run] = {}
    for line in lines:
        kind, token, pid_text, when_text = line.split()
        pid, when = int(pid_text), float(when_text)
        if kind == "start":
            assert (token, pid) not in open_runs, f"{token} started twice in pid {pid}"
            run = open_runs[token, pid] = Run(token, pid, when)
            runs[token].append(run)
        else:
            assert kind == "done", line
            run = open_runs.pop((token, pid))
            run.done = when
    for token_runs in runs.values():
        token_runs.sort(key=lambda r: r.started)
    return runs


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("live_url", SERVERS, indirect=True)
def test_soak_random_sigkill_loses_nothing_and_reruns_only_interrupted_jobs(
    live_url: str, tmp_path: Path
) -> None:
    """3 worker processes x 4 threads, 3,000 jobs, a random worker killed with
    SIGKILL every ~0.5 s and replaced at once.

    Every job must finish at least once, and a job may run again only when the
    worker that ran it before was killed first (it was in flight, or finished
    but not yet acknowledged, at the kill), never while that worker lived.
    """
    cfg = tinydj.get_config()
    out = tmp_path / "trace.txt"
    tokens = [f"t{i}" for i in range(SOAK_JOBS)]
    sample_jobs.traced.send_later_many([(str(out), t, SOAK_JOB_SECONDS) for t in tokens])
    assert remaining_jobs(cfg) == SOAK_JOBS

    workers = Processes(tmp_path)
    args = [
        "--threads",
        str(SOAK_THREADS),
        "--lock-timeout",
        str(LOCK_TIMEOUT),
        "--poll-interval",
        "0.2",
        "-q",
    ]
    spawned = 0
    kills: dict[int, float] = {}  # pid -> time.time() just before SIGKILL
    killed_names: set[str] = set()
    rng = random.Random(os.getpid())

    def spawn() -> None:
        nonlocal spawned
        workers.work(f"soak-{spawned}", live_url, *args)
        spawned += 1

    started = time.monotonic()
    try:
        for _ in range(SOAK_PROCESSES):
            spawn()
        next_kill = started + KILL_EVERY
        while True:
            counts = cfg.store.counts(utcnow())
            assert counts["failed"] == 0, f"jobs were failed: {tinydj.list_jobs(failed=True)[:3]}"
            left = sum(counts.values())
            if left == 0:
                break
            now = time.monotonic()
            died = [n for n in workers.procs if n not in killed_names and n not in workers.alive()]
            assert not died, (
                f"worker {died[0]} died by itself:\n{workers.output(died[0], LOG_TAIL)}"
            )
            if now - started > SOAK_DEADLINE:
                raise AssertionError(
                    f"{left} job(s) left after {SOAK_DEADLINE} s ({len(kills)} kills); "
                    f"stats {cfg.store.counts(utcnow())}"
                )
            if now >= next_kill:
                victim = rng.choice(workers.alive())
                proc = workers.procs[victim]
                kills[proc.pid] = time.time()
                killed_names.add(victim)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                spawn()
                next_kill = now + KILL_EVERY
            time.sleep(0.05)
        drained = time.monotonic() - started

        # Stop the survivors gracefully.
        survivors = workers.alive()
        for name in survivors:
            workers.procs[name].send_signal(signal.SIGTERM)
        statuses = {name: workers.procs[name].wait(20) for name in survivors}
    finally:
        workers.cleanup()

    runs = parse_runs(read_lines(out))
    # A survivor that ran jobs had its signal handlers installed: it must stop
    # cleanly (status 0). One spawned just before the end may still have been
    # starting up (Python's default SIGTERM action then ends it: -15).
    worked = {r.pid for rs in runs.values() for r in rs}
    for name, status in statuses.items():
        if workers.procs[name].pid in worked or status != -signal.SIGTERM:
            assert status == 0, (
                f"{name} exited {status} on SIGTERM:\n{workers.output(name, LOG_TAIL)}"
            )
    lost = sorted(set(tokens) - {t for t, rs in runs.items() if any(r.done for r in rs)})
    assert set(runs) <= set(tokens)
    duplicates = {t: rs for t, rs in runs.items() if sum(1 for r in rs if r.done) > 1}
    reclaims: list[float] = []
    interrupted = unacknowledged = 0
    for token, token_runs in runs.items():
        # Each run but the last was by a worker killed before the next run began.
        for run, after in itertools.pairwise(token_runs):
            assert run.pid in kills, (
                f"{token} ran again (pid {after.pid}) although its worker pid {run.pid} "
                f"was never killed: {token_runs}"
            )
            assert after.started >= kills[run.pid], (
                f"{token} ran again {kills[run.pid] - after.started:.3f} s BEFORE its "
                f"worker pid {run.pid} was killed: {token_runs}"
            )
            reclaims.append(after.started - kills[run.pid])
            if run.done is None:
                interrupted += 1
            else:
                unacknowledged += 1
    assert not lost, f"{len(lost)} job(s) never finished, e.g. {lost[:10]}"
    assert remaining_jobs(cfg) == 0
    assert len(kills) >= 5, f"only {len(kills)} kills: the soak did not soak"
    assert reclaims, "no kill hit a running job: nothing was reclaimed"

    figures = (
        f"soak[{cfg.store.dialect.name}]: {SOAK_JOBS} jobs in {drained:.1f} s, "
        f"{len(kills)} kills, {spawned} worker processes, "
        f"{interrupted + unacknowledged} re-runs ({interrupted} of jobs interrupted mid-run, "
        f"{unacknowledged} of jobs finished but not yet acknowledged at the kill), "
        f"{len(duplicates)} jobs completed twice or more, lost 0; "
        f"reclaim after a kill: min {min(reclaims):.2f} s, median "
        f"{statistics.median(reclaims):.2f} s, max {max(reclaims):.2f} s "
        f"(lock timeout {LOCK_TIMEOUT} s)"
    )
    print(figures)
    # The reclaim time is bounded: a dead worker's job waits about one lock
    # timeout, not for a restart or a long poll.
    assert max(reclaims) < LOCK_TIMEOUT + 15, figures


# -- 3: contention: 8 threads enqueue while workers drain ---------------------------

ENQUEUERS = 8
PER_ENQUEUER = 300


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_contention_enqueueing_threads_never_see_database_is_locked(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """8 threads each send_later 300 jobs one by one, while a 4-thread worker in
    this process and a 2-thread worker process drain the same SQLite file. No
    exception reaches an enqueueing thread, each job runs exactly once, and
    nothing is left."""
    caplog.set_level("WARNING", logger="tinydj")
    cfg = tinydj.configure(sqlite_url)
    cfg.store.ensure_schema()
    out = tmp_path / "ran.txt"
    errors: list[str] = []
    sent: list[int] = []
    sent_lock = threading.Lock()
    barrier = threading.Barrier(ENQUEUERS)

    def enqueue(n: int) -> None:
        try:
            barrier.wait(10)
            for i in range(PER_ENQUEUER):
                job = sample_jobs.append_token.send_later(str(out), f"e{n}-{i}")
                with sent_lock:
                    sent.append(job.id)
        except BaseException as exc:
            errors.append("".join(traceback.format_exception(exc)))
        finally:
            cfg.store.close()

    workers = Processes(tmp_path)
    worker = tinydj.Worker(threads=4, lock_timeout=30.0, poll_interval=0.2, name="in-process")
    threads = [threading.Thread(target=enqueue, args=(n,), name=f"enq-{n}") for n in range(8)]
    try:
        workers.work("proc", sqlite_url, "--threads", "2", "--poll-interval", "0.2")
        wait_until(lambda: " started: " in workers.output("proc"), 30, "the worker process")
        worker.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads), "an enqueueing thread hung"
        assert not errors, f"{len(errors)} enqueueing thread(s) failed:\n{errors[0]}"
        assert len(sent) == ENQUEUERS * PER_ENQUEUER
        assert remaining_jobs(cfg) < len(sent), "the workers did not drain while jobs came in"
        wait_until(lambda: remaining_jobs(cfg) == 0, 60, "the workers to drain the table", 0.1)
        workers.procs["proc"].send_signal(signal.SIGTERM)
        status = workers.procs["proc"].wait(20)
        assert status == 0, (
            f"the worker process exited {status}:\n{workers.output('proc', LOG_TAIL)}"
        )
    finally:
        worker.stop()
        workers.cleanup()
        cfg.store.close()

    lines = read_lines(out)
    ran = Counter(line.split()[0] for line in lines)
    expected = {f"e{n}-{i}" for n in range(ENQUEUERS) for i in range(PER_ENQUEUER)}
    twice = sorted(t for t, c in ran.items() if c > 1)
    assert not twice, f"{len(twice)} job(s) ran more than once, e.g. {twice[:10]}"
    assert set(ran) == expected, f"{len(expected - set(ran))} job(s) never ran"
    pids = Counter(line.split()[1] for line in lines)
    assert len(pids) == 2, f"both workers should have taken jobs: {pids}"
    assert tinydj.list_jobs() == []
    # Nor did the workers have to retry after one.
    locked = [r.getMessage() for r in caplog.records if "is locked" in r.getMessage()]
    assert not locked, f"'database is locked' reached the worker: {locked[:3]}"
    assert "is locked" not in workers.output("proc")


# -- 4: an interruption is not a failed attempt ------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_job_of_a_killed_worker_runs_again_without_burning_an_attempt(
    db_url: str, tmp_path: Path
) -> None:
    """Run 1 is interrupted by SIGKILL; run 2 (another worker, after the lease
    expired) sees ``Interrupted`` and attempts 0 while it runs, then fails on
    purpose: the row then counts exactly one attempt, that failure."""
    sample_jobs.reset()
    cfg = tinydj.configure(db_url)
    out, marker = tmp_path / "runs.txt", tmp_path / "go"
    lease = 1.0
    workers = Processes(tmp_path)
    other: tinydj.Worker | None = None
    try:
        job = sample_jobs.interrupted_then_fails.send_later(str(out), str(marker))
        proc = workers.work(
            "worker-a", db_url, "--lock-timeout", str(lease), "--poll-interval", "0.1"
        )
        wait_until(lambda: len(read_lines(out)) == 1, 30, "worker-a to start the job")
        assert read_lines(out) == [f"start 1 {proc.pid}"]
        row = tinydj.get_job(job.id)
        assert row is not None and row.locked_by == "worker-a" and row.attempts == 0

        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        killed_at = utcnow()
        row = tinydj.get_job(job.id)
        assert row is not None and row.locked_by == "worker-a" and row.locked_at is not None
        last_renewal = row.locked_at

        other = tinydj.Worker(lock_timeout=lease, poll_interval=0.05, name="worker-b").start()
        wait_until(lambda: len(read_lines(out)) == 2, 30, "worker-b to reclaim the job")
        reclaimed_at = utcnow()
        assert read_lines(out)[1] == f"start 2 {os.getpid()}"
        assert reclaimed_at >= last_renewal + timedelta(seconds=lease)
        row = tinydj.get_job(job.id)
        assert row is not None and row.locked_by == "worker-b"
        assert row.attempts == 0, "the interruption was counted as an attempt"
        assert row.failed_at is None
        assert (row.last_error or "").startswith("Interrupted"), row.last_error
        assert "worker-a" in (row.last_error or "")

        (tmp_path / "go2").touch()  # run 2 now fails on purpose

        def failed_once() -> tinydj.Job | None:
            r = tinydj.get_job(job.id)
            return r if r is not None and r.locked_by is None else None

        row = wait_until(failed_once, 20, "the second run's failure to be recorded")
        assert len(read_lines(out)) == 2
    finally:
        for n in (1, 2, 3):  # nothing left blocking the in-process worker's stop()
            (tmp_path / f"go{n}").touch()
        if other is not None:
            other.stop()
        workers.cleanup()
        cfg.store.close()
        cfg.database.close()

    assert row.attempts == 1, f"attempts {row.attempts}: the interruption counted too"
    assert (row.last_error or "").startswith("RuntimeError: run 2 fails on purpose")
    assert row.failed_at is None and row.locked_at is None
    assert row.run_at > killed_at, "the failed attempt is retried later"


# -- 5: bad input --------------------------------------------------------------------


def _in_thread(fn: Callable[[], Any], timeout: float) -> BaseException | None:
    """Run ``fn`` in a thread; return what it raised (None if nothing); fail if it hangs."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"hung for {timeout} s instead of raising"
    return outcome[0]


UNREACHABLE = [
    pytest.param("sqlite:////nonexistent-tinydj-dir/x.db", id="sqlite-missing-dir"),
    pytest.param("postgresql://postgres@127.0.0.1:1/test", id="postgres-refused"),
    pytest.param("mysql://root@127.0.0.1:1/test", id="mysql-refused"),
]


@pytest.mark.parametrize("url", UNREACHABLE)
def test_unreachable_database_at_worker_start_raises_a_clear_error(url: str) -> None:
    """``work_off``, ``start`` and ``send_later`` on a database that cannot be
    reached raise a database error at once (peewee's, whatever the driver),
    instead of hanging or leaking a driver-specific exception."""
    cfg = tinydj.configure(url)
    problems: list[str] = []

    def check(what: str, fn: Callable[[], Any]) -> None:
        exc = _in_thread(fn, 30)
        if not isinstance(exc, peewee.DatabaseError | tinydj.TinyDJError) or not str(exc).strip():
            problems.append(f"{what} raised {type(exc).__module__}.{exc!r}")

    worker = tinydj.Worker(config=cfg, threads=2)
    check("Worker.work_off()", lambda: tinydj.Worker(config=cfg).work_off())
    check("Worker.start()", worker.start)
    assert not worker.running
    worker.stop()
    check("send_later()", lambda: sample_jobs.record.send_later(1))
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("url", UNREACHABLE)
def test_unreachable_database_at_cli_start_is_one_line_not_a_traceback(url: str) -> None:
    proc = subprocess.run(
        tinydj_command("work", "--database", url),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinydj: "), proc.stderr


def _count_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM delayed_jobs").fetchone()[0])


def _seeded_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.sqlite3"
    cfg = tinydj.configure(f"sqlite:///{path}")
    sample_jobs.record.send_later("already there")
    cfg.store.close()
    cfg.database.close()
    assert _count_rows(path) == 1
    return path


def _expect_db_error(problems: list[str], what: str, fn: Callable[[], Any], match: str) -> None:
    """``fn`` must raise a peewee database error whose message contains ``match``."""
    try:
        fn()
    except peewee.DatabaseError as exc:
        if match not in str(exc):
            problems.append(f"{what}: {type(exc).__name__}({exc}) does not say {match!r}")
    except Exception as exc:
        problems.append(f"{what}: raised {type(exc).__module__}.{type(exc).__name__}({exc})")
    else:
        problems.append(f"{what}: did not raise")


def test_enqueue_on_a_read_only_database_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = _seeded_file(tmp_path)
    db = peewee.SqliteDatabase(f"file:{path}?mode=ro", uri=True, timeout=1)
    cfg = tinydj.configure(db)
    problems: list[str] = []
    try:
        record = sample_jobs.record
        _expect_db_error(problems, "send_later", lambda: record.send_later("one"), "readonly")
        _expect_db_error(
            problems,
            "send_later_many",
            lambda: record.send_later_many([(i,) for i in range(50)]),
            "readonly",
        )
        _expect_db_error(
            problems, "enqueue", lambda: tinydj.enqueue(sample_jobs.Report("r")), "readonly"
        )
        # The worker cannot reserve either: an error, not a hang or a lost job.
        exc = _in_thread(lambda: tinydj.Worker(config=cfg).work_off(), 30)
        assert isinstance(exc, peewee.OperationalError), repr(exc)
    finally:
        cfg.store.close()
        db.close()
    # Nothing half-written, the existing job untouched.
    assert _count_rows(path) == 1
    rows = tinydj.configure(f"sqlite:///{path}").store.select()
    assert len(rows) == 1 and rows[0].locked_by is None and rows[0].attempts == 0
    assert not problems, "\n".join(problems)


def test_enqueue_on_a_full_database_raises_and_writes_nothing(tmp_path: Path) -> None:
    """A full disk, simulated with SQLite's ``max_page_count``: an enqueue that
    does not fit raises an error that says so, and none of its rows is written
    (all or nothing)."""
    path = _seeded_file(tmp_path)
    with sqlite3.connect(path) as conn:
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    db = peewee.SqliteDatabase(
        str(path), timeout=1, pragmas={"journal_mode": "wal", "max_page_count": pages + 2}
    )
    cfg = tinydj.configure(db)
    problems: list[str] = []
    try:
        record = sample_jobs.record
        big = "x" * 2000
        _expect_db_error(
            problems,
            "send_later_many",
            lambda: record.send_later_many([(big, i) for i in range(200)]),
            "full",
        )
        _expect_db_error(problems, "send_later", lambda: record.send_later("y" * 50_000), "full")
        # Small jobs still fit: the connection is usable after the failures.
        record.send_later("small")
    finally:
        cfg.store.close()
        db.close()
    assert _count_rows(path) == 2
    assert not problems, "\n".join(problems)


# -- found while writing these tests ------------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_job_that_calls_sys_exit_does_not_kill_the_worker_or_stick(
    sqlite_url: str,
) -> None:
    """A job raising SystemExit (``sys.exit()`` in a job) must be recorded as a
    failure like any other exception: the worker thread lives on, and the job
    is neither held forever nor silently released to run again."""
    sample_jobs.reset()
    cfg = tinydj.configure(sqlite_url)
    job = sample_jobs.exits.send_later(3)
    sample_jobs.record.send_later("after")
    worker = tinydj.Worker(threads=1, lock_timeout=1.0, poll_interval=0.05, name="w")
    worker.start()
    try:
        wait_until(lambda: ("exits", 3) in sample_jobs.calls, 10, "the job to run")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            row = tinydj.get_job(job.id)
            if (row is not None and row.locked_by is None) or not worker.running:
                break
            time.sleep(0.02)
        assert worker.running, "the job's SystemExit killed the worker's only thread"
        row = tinydj.get_job(job.id)
        assert row is not None and row.locked_by is None, f"the job stays locked: {row}"
        wait_until(lambda: (("after",), {}) in sample_jobs.calls, 10, "the next job to run")
    finally:
        worker.stop()
        cfg.store.close()
    row = tinydj.get_job(job.id)
    assert row is not None and row.attempts == 1
    assert "SystemExit" in (row.last_error or "")


def test_recurring_row_with_an_invalid_interval_is_not_left_locked(
    sqlite_url: str,
) -> None:
    """A recurring row whose ``reoccur_in`` cannot be parsed (written by hand, or
    by another version) must not make ``work_off`` raise and leave the row
    locked with its outcome unrecorded."""
    sample_jobs.reset()
    cfg = tinydj.configure(sqlite_url)
    now = utcnow()
    handler = "tinydj: 1\nfunction: sample_jobs:record\nargs: [tick]\n"
    cfg.store.insert([NewJob(handler, "default", 0, now, key="bad-interval", reoccur_in="0s")], now)
    try:
        outcome = tinydj.Worker(config=cfg).work_off()
    except Exception as exc:  # the bug: the error escapes and the row stays locked
        outcome = exc
    row = cfg.store.select(key="bad-interval")[0]
    cfg.store.close()
    assert not isinstance(outcome, Exception), (
        f"work_off raised {outcome!r}; row left as attempts={row.attempts}, "
        f"locked_by={row.locked_by!r}, last_error={row.last_error!r}"
    )
    assert row.locked_by is None and row.locked_at is None
    assert row.last_error, "the bad interval must be reported on the row"


def test_job_ids_are_not_reused_after_a_job_is_deleted(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    """A Job's id names that job only: once it ran (its row deleted), a new job
    must not get the same id, or ``get_job`` / ``retry_job`` / ``delete_job``
    with the old id would act on a stranger (SQLite reuses the largest rowid
    unless the key is AUTOINCREMENT)."""
    first = sample_jobs.record.send_later("first")
    assert worker.work_off() == (1, 0)
    assert tinydj.get_job(first.id) is None
    second = sample_jobs.record.send_later("second")
    assert second.id != first.id, f"job id {first.id} was given to another job"
    assert tinydj.delete_job(first.id) is False, "deleting a finished job deleted another one"
    assert tinydj.get_job(second.id) is not None


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_jobs_reserved_with_a_job_that_kills_its_worker_still_run(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A job that crashes its worker (SIGKILL, as an out-of-memory kill) is
    failed after MAX_INTERRUPTIONS crashes. The jobs that happened to be
    reserved in the same batch never started: they must not be counted as
    interrupted with it, and must run."""
    from tinydj.worker import MAX_INTERRUPTIONS

    lease = 0.5
    cfg = tinydj.configure(sqlite_url)
    out = tmp_path / "ran.txt"
    poison = sample_jobs.kills_its_worker.send_later()
    innocent = sample_jobs.append_token.send_later_many([(str(out), f"i{n}") for n in range(3)])
    script = (
        "import sys, tinydj; tinydj.configure(sys.argv[1]); "
        f"tinydj.Worker(batch_size=4, lock_timeout={lease}, poll_interval=0.05)"
        ".run(exit_on_complete=True)"
    )
    statuses: list[int] = []
    try:
        for _ in range(MAX_INTERRUPTIONS + 3):

            def leases_expired() -> bool:
                now = utcnow()
                return all(
                    r.locked_at is None or r.locked_at < now - timedelta(seconds=lease + 0.05)
                    for r in cfg.store.select()
                )

            wait_until(leases_expired, 10, "the dead worker's leases to expire")
            proc = subprocess.run(
                [sys.executable, "-c", script, sqlite_url],
                env=child_env(),
                cwd=tmp_path,
                capture_output=True,
                timeout=30,
            )
            statuses.append(proc.returncode)
            if proc.returncode == 0:
                break
    finally:
        cfg.store.close()
    assert statuses[-1] == 0, f"the workers never got past the poison job: {statuses}"
    assert statuses.count(-signal.SIGKILL) == MAX_INTERRUPTIONS, statuses
    row = tinydj.get_job(poison.id)
    assert row is not None and row.failed, row
    ran = Counter(line.split()[0] for line in read_lines(out))
    failed = [r for r in tinydj.list_jobs(failed=True) if r.id != poison.id]
    assert not failed, (
        f"{len(failed)} job(s) that never started were failed with the poison job: "
        f"{[(r.id, r.interruptions, (r.last_error or '')[:60]) for r in failed]}"
    )
    assert set(ran) == {"i0", "i1", "i2"}, ran
    assert all(tinydj.get_job(j.id) is None for j in innocent)
