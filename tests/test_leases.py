"""Leases: a worker that lost them does not run the jobs it had reserved.

A worker process frozen longer than ``lock_timeout`` (SIGSTOP, ``docker
pause``, a suspended VM) comes back holding a batch of jobs that it reserved
but had not started. Another worker took them over when their leases expired
and ran them. The frozen worker must drop them without running them: only
the jobs that were running at the freeze (one per thread) may run twice.

The unit tests drive ``tinydj.leases.LeaseKeeper`` with a fake monotonic
clock; the process test freezes a real ``Worker`` with SIGSTOP.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sample_jobs
from proc_helpers import LOG_TAIL, Processes, child_env, read_lines, wait_until

import tinydj
from tinydj.leases import LeaseKeeper
from tinydj.schedule import utcnow

# -- the keeper on its own ---------------------------------------------------------

_LOST = re.compile(r"lost the leases of \d+ reserved job\(s\) \(([\d, ]+)\)")


def _lost_ids(message: str) -> set[int]:
    """The ids that a "lost the leases" warning names."""
    match = _LOST.search(message)
    assert match, message
    return {int(i) for i in match.group(1).split(", ")}


class Ticks:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _keeper(config: tinydj.Config, ticks: Ticks, lock_timeout: float = 10.0) -> LeaseKeeper:
    return LeaseKeeper(
        config.store, "w1", lock_timeout, now=lambda: config.clock(), monotonic=ticks
    )


def _reserve(config: tinydj.Config, n: int) -> list[int]:
    jobs = sample_jobs.record.send_later_many([(i,) for i in range(n)])
    now = config.clock()
    config.store.reserve("w1", now, now - timedelta(seconds=10), None, n)
    return [j.id for j in jobs]


def test_a_lease_older_than_the_lock_timeout_is_lost_and_logged_once(
    config: tinydj.Config, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    keeper = _keeper(config, ticks)
    ids = _reserve(config, 3)
    keeper.hold(ids, since=ticks())
    assert keeper.begin(ids[0]), "a fresh lease is held"
    ticks.now += 60  # frozen for 6 x lock_timeout: nothing renewed meanwhile
    _taken_over(config, ids[1:])
    with caplog.at_level(logging.WARNING, logger="tinydj"):
        assert not keeper.begin(ids[1])
        assert not keeper.begin(ids[2])
    warnings = [r for r in caplog.records if "lost the leases" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert _lost_ids(warnings[0].getMessage()) == {ids[1], ids[2]}


def _taken_over(config: tinydj.Config, ids: list[int]) -> None:
    """Another worker takes ``ids`` over (their leases expired by its clock)."""
    config.store.release("w1", ids)
    now = config.clock()
    config.store.reserve("w2", now, now, None, len(ids))
    assert {j.id for j in config.store.select() if j.locked_by == "w2"} == set(ids)


def test_a_stale_lease_that_is_still_held_is_renewed_not_dropped(
    config: tinydj.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A slow database (a reservation that took most of the lock timeout) is
    not a lost lease: the keeper renews it before the job starts."""
    ticks = Ticks()
    keeper = _keeper(config, ticks)
    ids = _reserve(config, 2)
    keeper.hold(ids, since=ticks())
    ticks.now += 9.5  # older than LOST_AFTER x lock_timeout
    with caplog.at_level(logging.WARNING, logger="tinydj"):
        assert keeper.begin(ids[0]) and keeper.begin(ids[1])
    assert not [r for r in caplog.records if "lost the leases" in r.getMessage()]


def test_a_renewal_keeps_the_leases_fresh(config: tinydj.Config) -> None:
    ticks = Ticks()
    keeper = _keeper(config, ticks)
    ids = _reserve(config, 2)
    keeper.hold(ids, since=ticks())
    for _ in range(10):  # 10 x lock_timeout in all, renewed every lock_timeout / 4
        ticks.now += 2.5
        keeper.renew()
    assert keeper.begin(ids[0]) and keeper.begin(ids[1])


def test_a_renewal_that_touches_fewer_rows_finds_the_lost_ones(
    config: tinydj.Config, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    keeper = _keeper(config, ticks)
    ids = _reserve(config, 3)
    keeper.hold(ids, since=ticks())
    _taken_over(config, [ids[1]])
    with caplog.at_level(logging.WARNING, logger="tinydj"):
        keeper.renew()
    assert keeper.begin(ids[0]) and keeper.begin(ids[2])
    assert not keeper.begin(ids[1])
    warnings = [r.getMessage() for r in caplog.records if "lost the leases" in r.getMessage()]
    assert len(warnings) == 1 and _lost_ids(warnings[0]) == {ids[1]}, warnings


def test_a_job_that_started_is_not_reported_lost(
    config: tinydj.Config, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    keeper = _keeper(config, ticks)
    ids = _reserve(config, 2)
    keeper.hold(ids, since=ticks())
    assert keeper.begin(ids[0])
    ticks.now += 60
    _taken_over(config, ids)
    with caplog.at_level(logging.WARNING, logger="tinydj"):
        assert not keeper.begin(ids[1])
    (message,) = [r.getMessage() for r in caplog.records if "lost the leases" in r.getMessage()]
    assert _lost_ids(message) == {ids[1]}


# -- a frozen worker process ---------------------------------------------------------

LEASE = 1.0
BATCH = 20
WORKER_A = """
import logging, sys, tinydj
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
tinydj.configure(sys.argv[1])
tinydj.Worker(
    threads=int(sys.argv[2]), batch_size=int(sys.argv[3]), lock_timeout=float(sys.argv[4]),
    poll_interval=0.05, name="A",
).run(exit_on_complete=True)
"""


def _stopped(pid: int) -> bool:
    """True once every thread of process ``pid`` is stopped (state T)."""
    tasks = Path(f"/proc/{pid}/task")
    states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
    return all(state in ("T", "t") for state in states)


def _spawn_script(procs: Processes, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = procs.logs[name] = open(procs.log_path(name), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_A, *args],
        cwd=procs.tmp_path,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    procs.procs[name] = proc
    return proc


def test_finished_ids_wait_for_the_runner_or_the_lease_thread(config: tinydj.Config) -> None:
    ticks = Ticks()
    keeper = _keeper(config, ticks)
    done = keeper.finishing()  # what a runner asks once per batch
    done += [1, 2]
    assert keeper.take_waiting(0.05) == []  # not waited long enough
    ticks.now += 0.1
    assert keeper.take_waiting(0.05) == [1, 2]  # the runner went on with a long job
    done.append(3)  # appended by the runner meanwhile, kept for it
    assert keeper.take_waiting(0.05) == []
    keeper.give_back([1, 2])  # an acknowledgement that failed goes first
    assert keeper.finishing() is done and done == [1, 2, 3]
    ticks.now += 0.1
    done.append(4)
    assert keeper.take_waiting(0.05) == [1, 2, 3, 4]
    done.append(5)
    assert keeper.take_done() == [5]  # the runner's next reservation
    assert keeper.take_done() == [] and keeper.take_waiting(0.0) == []
    assert keeper.finishing() is not done  # a fresh list for the next batch


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("threads", [1, 4])
def test_a_frozen_worker_does_not_run_the_jobs_it_lost(
    db_url: str, procs: Processes, tmp_path: Path, threads: int
) -> None:
    """Each of A's threads holds a batch of BATCH jobs: a gate job (running,
    blocked on a marker file) and BATCH - 1 quick jobs behind it. A is frozen
    with SIGSTOP; its leases expire; B takes every job over and drains the
    queue; then A is resumed. Only the gates (one per thread, in flight at
    the freeze) may run twice."""
    cfg = tinydj.configure(db_url)
    out, marker = tmp_path / "ran.txt", tmp_path / "go"
    batches: list[list[int]] = []
    for group in range(threads):
        # One batch per thread: priorities make each reservation take exactly
        # one gate followed by its own quick jobs.
        gate = sample_jobs.append_token_and_wait.with_options(priority=group * 10)
        token = sample_jobs.append_token.with_options(priority=group * 10 + 1)
        jobs = [gate.send_later(str(out), f"gate{group}", str(marker))]
        jobs += token.send_later_many([(str(out), f"t{group}-{i}") for i in range(BATCH - 1)])
        batches.append([j.id for j in jobs])
    tokens = {f"t{g}-{i}" for g in range(threads) for i in range(BATCH - 1)}
    try:
        a = _spawn_script(procs, "A", db_url, str(threads), str(BATCH), str(LEASE))
        wait_until(
            lambda: sum(line.startswith("gate") for line in read_lines(out)) == threads,
            60,
            "every thread of A to run its gate job",
            details=lambda: procs.output("A", LOG_TAIL),
        )
        total = threads * BATCH

        def finished_rows_deleted() -> bool:
            # With SKIP LOCKED (Postgres) a batch may start with quick jobs of
            # another group before its gate: those finished, and their rows
            # must be deleted (not held until the gate ends) before the freeze.
            ran = [line for line in read_lines(out) if not line.startswith("gate")]
            return len(cfg.store.select()) == total - len(ran)

        wait_until(finished_rows_deleted, 30, "A to delete the rows of the jobs it finished")
        a.send_signal(signal.SIGSTOP)
        # SIGSTOP takes effect asynchronously: until A is really stopped, its
        # threads could still see the marker and run on.
        wait_until(lambda: _stopped(a.pid), 10, "A to be stopped by SIGSTOP")
        marker.touch()  # the gates finish wherever they run from now on

        def leases_expired() -> bool:
            limit = utcnow() - timedelta(seconds=LEASE + 0.1)
            return all(r.locked_at is not None and r.locked_at < limit for r in cfg.store.select())

        wait_until(leases_expired, 30, "A's leases to expire")
        procs.work("B", db_url, "--lock-timeout", str(LEASE), "--exit-on-complete", "--quiet")
        procs.assert_exit("B", 0, timeout=60)
        assert cfg.store.select() == [], "B drained the queue"
        a.send_signal(signal.SIGCONT)
        procs.assert_exit("A", 0, timeout=60)
    finally:
        if procs.procs.get("A") is not None and procs.procs["A"].poll() is None:
            procs.procs["A"].send_signal(signal.SIGCONT)
        cfg.store.close()
        cfg.database.close()

    ran = Counter(line.split()[0] for line in read_lines(out))
    twice = sorted(t for t, n in ran.items() if n > 1)
    token_twice = [t for t in twice if not t.startswith("gate")]
    assert set(ran) == tokens | {f"gate{g}" for g in range(threads)}, "every job ran"
    assert not token_twice, (
        f"{len(token_twice)} of {len(tokens)} reserved but not started jobs ran twice: "
        f"{token_twice[:10]}; log of A:\n{procs.output('A', LOG_TAIL)}"
    )
    assert len(twice) <= threads, twice
    lost = [line for line in procs.output("A").splitlines() if "lost the leases" in line]
    # One warning names the jobs (two checks running at once may split it:
    # at most one per thread).
    assert 1 <= len(lost) <= threads, procs.output("A", LOG_TAIL)
    dropped = set().union(*(_lost_ids(line) for line in lost))
    assert dropped <= {i for batch in batches for i in batch[1:]}, lost
    if threads == 1:
        assert dropped == set(batches[0][1:]), lost[0]
