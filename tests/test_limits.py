"""Concurrency limits (``@job(concurrency=N, concurrency_key=...)``, ``tinydj.limits``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import limit_jobs
import peewee
import pytest
from proc_helpers import Processes, read_lines, wait_until

import tinydj
from tinydj import job, limits
from tinydj.job import Job
from tinydj.store import Store
from tinydj.testing import FakeClock

LEASE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> None:
    limit_jobs.reset()


def _reserve(config: tinydj.Config, worker: str, limit: int = 10) -> list[Job]:
    """One reservation of ``worker``, through the gate as a worker makes it."""
    store = config.store
    now = config.clock().replace(tzinfo=None)
    expired = now - timedelta(seconds=LEASE)
    gate = limits.Gate(store, recheck=1.0)
    assert gate.active()
    want = limits.reservation(store, now, expired, (), ())
    return store.reserve(worker, now, expired, limit=limit, limited=lambda n: gate.take(want, n))


def _names(jobs: list[Job]) -> list[str | None]:
    return sorted(str(j.concurrency_key) for j in jobs)


def test_limited_jobs_run_and_carry_their_key(config: tinydj.Config, worker: tinydj.Worker) -> None:
    a = limit_jobs.import_for.send_later("acme", 1)
    limit_jobs.import_for.send_later("acme", 2)
    limit_jobs.import_for.send_later("globex", 1)
    two = limit_jobs.two_at_a_time.send_later(1)
    synced = limit_jobs.sync.send_later({"id": 7, "name": "x"})
    limit_jobs.free.send_later(1)
    assert a.concurrency_key == "limit_jobs:import_for/acme"
    assert two.concurrency_key == "limit_jobs:two_at_a_time"
    assert synced.concurrency_key == "limit_jobs:sync/7"
    stored = tinydj.get_job(a.id)
    assert stored is not None and stored.concurrency_key == a.concurrency_key
    assert worker.work_off()[1] == 0
    assert sorted(map(str, limit_jobs.calls)) == sorted(
        map(
            str,
            [("acme", 1), ("acme", 2), ("globex", 1), ("two", 1), ("sync", 7), ("free", 1)],
        )
    )
    assert [j for j in tinydj.list_jobs() if not j.recurring] == []


def test_a_full_key_waits_while_other_keys_and_free_jobs_go_on(config: tinydj.Config) -> None:
    first = limit_jobs.import_for.send_later("acme", 1)
    second = limit_jobs.import_for.send_later("acme", 2)
    limit_jobs.import_for.send_later("globex", 1)
    limit_jobs.free.send_later(1)
    w1 = _reserve(config, "w1")
    # One job per key per reservation; the free job fills the batch.
    assert _names(w1) == ["None", "limit_jobs:import_for/acme", "limit_jobs:import_for/globex"]
    assert first.id in {j.id for j in w1}
    assert _reserve(config, "w2") == []  # acme is full; nothing else is due
    waiting = tinydj.get_job(second.id)
    assert waiting is not None and not waiting.locked and not waiting.failed
    # w1 finishes acme's first job: its slot is free, the next one may start.
    assert config.store.ack("w1", [first.id]) == 1
    assert [j.id for j in _reserve(config, "w2")] == [second.id]


def test_a_limit_of_two_lets_two_run(config: tinydj.Config) -> None:
    for n in range(4):
        limit_jobs.two_at_a_time.send_later(n)
    assert len(_reserve(config, "w1")) == 1
    assert len(_reserve(config, "w2")) == 1
    assert _reserve(config, "w3") == []


def test_a_dead_worker_frees_its_slots_when_its_lease_expires(
    config: tinydj.Config, clock: FakeClock
) -> None:
    first = limit_jobs.import_for.send_later("acme", 1)
    second = limit_jobs.import_for.send_later("acme", 2)
    assert [j.id for j in _reserve(config, "dies")] == [first.id]
    clock.advance(LEASE - 1)
    assert _reserve(config, "w2") == []  # the lease is still live
    clock.advance(2)
    (taken,) = _reserve(config, "w2")
    # The dead worker's job comes first (run order) and counts as interrupted;
    # the second job still waits: the reclaimed one holds the key's one slot.
    assert taken.id == first.id and taken.interruptions == 1
    assert _reserve(config, "w3") == []
    job2 = tinydj.get_job(second.id)
    assert job2 is not None and not job2.locked


def test_retried_and_failed_jobs_free_their_slot(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    broken = limit_jobs.breaks.send_later()
    assert worker.work_off() == (0, 1)
    failed = tinydj.get_job(broken.id)
    assert failed is not None and failed.failed and not failed.locked
    for n in range(3):
        limit_jobs.fine.send_later(n)
    assert worker.work_off() == (3, 0)
    assert sorted(limit_jobs.calls) == [("fine", 0), ("fine", 1), ("fine", 2)]


def test_the_gate_stays_out_of_the_way_without_limits(config: tinydj.Config, db_url: str) -> None:
    limit_jobs.free.send_later(1)
    ticks = [0.0]
    gate = limits.Gate(config.store, recheck=5.0, clock=lambda: ticks[0])
    assert not gate.active()
    # Another process declares a limit: this worker notices at its next check.
    other = Store(tinydj.config.open_database(db_url))
    try:
        limits.declare(other, "elsewhere:fn", 3)
    finally:
        other.close()
    assert not gate.active()  # read again only after ``recheck`` seconds
    ticks[0] = 5.0
    assert gate.active()


def test_a_changed_limit_is_written_at_the_next_enqueue(config: tinydj.Config) -> None:
    @job(concurrency=1)
    def report() -> None: ...

    report.send_later()
    rows = config.store.query("SELECT name, max_running FROM tinydj_concurrency").fetchall()
    assert [(str(n), int(m)) for n, m in rows] == [(report.key, 1)]

    @job(concurrency=3)
    def report() -> None: ...  # type: ignore[no-redef]  # the code changed

    report.send_later()
    rows = config.store.query("SELECT max_running FROM tinydj_concurrency").fetchall()
    assert [int(r[0]) for r in rows] == [3]


def test_bad_limits_fail_at_decoration() -> None:
    def f(customer: str) -> None: ...

    for bad, error in [
        (0, ValueError),
        (-1, ValueError),
        (10**6, ValueError),
        (True, TypeError),
        ("2", TypeError),
        (1.5, TypeError),
    ]:
        with pytest.raises(error, match="concurrency"):
            job(concurrency=bad)(f)  # type: ignore[call-overload]
    with pytest.raises(
        ValueError, match=r"'client' is not an argument of .*f \(it has: customer\)"
    ):
        job(concurrency=1, concurrency_key="client")(f)
    with pytest.raises(ValueError, match="needs a limit"):
        job(concurrency_key="customer")(f)
    with pytest.raises(TypeError, match="argument's name or a function"):
        job(concurrency=1, concurrency_key=3)(f)  # type: ignore[call-overload]


def test_a_key_that_cannot_be_stored_fails_at_enqueue(config: tinydj.Config) -> None:
    with pytest.raises(TypeError, match=r"a concurrency key must be a str, an int or a UUID"):
        limit_jobs.import_for.send_later(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sync\(\) missing|required positional"):
        limit_jobs.sync.send_later()  # type: ignore[call-arg]
    assert tinydj.list_jobs() == []


def test_an_overlong_key_is_hashed(config: tinydj.Config) -> None:
    made = limit_jobs.import_for.send_later("x" * 400)
    key = made.concurrency_key or ""
    assert len(key) <= limits.MAX_KEY and key.startswith("limit_jobs:import_for/#")
    assert limit_jobs.import_for.send_later("x" * 400).concurrency_key == key


def test_an_older_table_gets_the_column_and_the_new_reserve_indexes(
    db_url: str, clock: FakeClock
) -> None:
    old = tinydj.configure(db_url, clock=clock)
    old.store.ensure_schema()
    db = old.store.db
    mysql = isinstance(db, peewee.MySQLDatabase)
    for name in ("ready", "queue_ready", "limited"):
        db.execute_sql(f"DROP INDEX delayed_jobs_{name}" + (" ON delayed_jobs" if mysql else ""))
    db.execute_sql("ALTER TABLE delayed_jobs DROP COLUMN concurrency_key")
    if mysql:  # the indexes of the tinydj before limits
        db.execute_sql(
            "CREATE INDEX delayed_jobs_ready ON delayed_jobs (failed_at, priority, run_at, id)"
        )
    else:
        db.execute_sql(
            "CREATE INDEX delayed_jobs_ready ON delayed_jobs (priority, run_at, id) "
            "WHERE failed_at IS NULL"
        )
    old.store.close()
    fresh = tinydj.configure(db_url, clock=clock)
    limit_jobs.import_for.send_later("acme", 1)
    limit_jobs.free.send_later(1)
    indexes = {i.name: i for i in fresh.store.db.get_indexes("delayed_jobs")}
    assert {"delayed_jobs_limited", "delayed_jobs_queue_ready"} <= set(indexes)
    ready = indexes["delayed_jobs_ready"]
    if mysql:
        assert "concurrency_key" in ready.columns
    else:
        assert "concurrency_key" in ready.sql
    assert tinydj.Worker(config=fresh).work_off()[1] == 0
    assert sorted(map(str, limit_jobs.calls)) == [str(("acme", 1)), str(("free", 1))]
    fresh.store.close()


# -- across processes -----------------------------------------------------------

KEYS = ("acme", "globex", "initech")
PER_KEY = 8
LIMIT = 2  # limit_jobs.record's concurrency
SECONDS = 0.15


def _overlaps(lines: list[str]) -> dict[str, int]:
    """The most jobs of each key that ran at the same moment."""
    events: dict[str, list[tuple[float, int]]] = {}
    for line in lines:
        key, start, end, _ = line.split()
        events.setdefault(key, []).extend([(float(start), 1), (float(end), -1)])
    most: dict[str, int] = {}
    for key, marks in events.items():
        running = peak = 0
        for _, step in sorted(marks, key=lambda m: (m[0], m[1])):  # ends first on ties
            running += step
            peak = max(peak, running)
        most[key] = peak
    return most


def test_four_processes_of_four_threads_never_exceed_the_limit(
    db_url: str, procs: Processes, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.txt"
    env = {"TINYDJ_TEST_TRACE": str(trace)}
    config = tinydj.configure(db_url)
    config.store.ensure_schema()
    names = [f"p{i}" for i in range(4)]
    for name in names:
        procs.work(name, db_url, "--threads", "4", "--poll-interval", "0.2", env=env)

    def registered() -> bool:  # (rows of other tests' workers may be there too)
        now = datetime.now(UTC).replace(tzinfo=None)
        return set(names) <= {w.name for w in tinydj.control.list_workers(now=now)}

    wait_until(
        registered,
        90,
        "four worker processes",
        details=lambda: "\n".join(procs.output(n, 2000) for n in names),
    )
    started = time.monotonic()
    for _i in range(PER_KEY):
        for key in KEYS:
            limit_jobs.record.send_later(key, SECONDS)
    total = len(KEYS) * PER_KEY
    lines = wait_until(
        lambda: (found := read_lines(trace)) and len(found) >= total and found,
        120,
        f"{total} jobs to run",
        details=lambda: "\n".join(procs.output(n, 2000) for n in names),
    )
    elapsed = time.monotonic() - started
    assert len(lines) == total
    peaks = _overlaps(lines)
    assert peaks == {key: LIMIT for key in KEYS}, peaks  # never more, and the limit is used
    pids = {line.split()[3] for line in lines}
    ideal = PER_KEY * SECONDS / LIMIT
    print(f"{total} limited jobs in {elapsed:.2f} s (ideal {ideal:.2f} s) on {len(pids)} processes")
    wait_until(lambda: tinydj.list_jobs() == [], 30, "the rows of finished jobs to go")
    config.store.close()
