"""The worker's reservation, on every database: the slim rows it returns
(``RESERVED_COLUMNS``) make the same ``Job`` as a full read, an expired lease
still counts an interruption, the order (priority, run_at, id) holds across
priorities behind future rows (Postgres seeks per priority), locked rows are
skipped and replaced, and nothing indexes ``locked_by`` any more."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sample_jobs
from conftest import START

import tinydj
from tinydj.config import open_database
from tinydj.job import Job
from tinydj.sql import SQLITE, UNIQUE_PREFIX, WAITING_PREFIX
from tinydj.store import NewJob, Store
from tinydj.testing import FakeClock

LEASE = timedelta(seconds=40)


def _new(name: str, priority: int = 0, key: str | None = None) -> NewJob:
    return NewJob(f"tinydj: 1\nfunction: m:{name}\n", "q", priority, START, key=key)


@pytest.fixture
def store(config: tinydj.Config) -> Store:
    config.store.ensure_schema()
    return config.store


def _reserve(store: Store, worker: str, at: timedelta, limit: int) -> list[Job]:
    now = START + at
    return store.reserve(worker, now, now - LEASE, limit=limit)


def test_in_one_batch_only_the_expired_job_counts_an_interruption(store: Store) -> None:
    (dead,) = store.insert([_new("dead", priority=-1)], START)
    assert [j.id for j in _reserve(store, "dead-worker", timedelta(0), 1)] == [dead.id]
    (fresh,) = store.insert([_new("fresh")], START)
    got = _reserve(store, "live", LEASE + timedelta(seconds=1), 5)
    assert [j.id for j in got] == [dead.id, fresh.id]
    assert got[0].interruptions == 1 and got[0].attempts == 0
    assert (got[0].last_error or "").startswith("Interrupted: worker dead-worker")
    assert got[1].interruptions == 0 and got[1].last_error is None
    for job in got:
        assert job == store.get(job.id)


def test_a_job_nobody_held_keeps_its_last_error_and_interruptions(store: Store) -> None:
    (job,) = store.insert([_new("retried")], START)
    assert [j.id for j in _reserve(store, "w", timedelta(0), 1)] == [job.id]
    assert store.finish(
        job.id, "w", START, attempts=1, last_error="boom", run_at=START, interruptions=2
    )
    (again,) = _reserve(store, "w", timedelta(seconds=1), 1)
    assert (again.attempts, again.last_error, again.interruptions) == (1, "boom", 2)


def test_a_reserved_job_is_the_row_as_stored(store: Store) -> None:
    plain, urgent = store.insert([_new("plain"), _new("urgent", priority=-3)], START)
    waiting = store.insert_unique(_new("waits", key=f"{WAITING_PREFIX}a"), START)
    unique = store.insert_unique(_new("unique", key=f"{UNIQUE_PREFIX}b"), START)
    got = _reserve(store, "w", timedelta(seconds=3), 10)
    assert [j.id for j in got] == [urgent.id, plain.id, waiting.id, unique.id]
    for job in got:
        assert job == store.get(job.id)
    assert got[2].key is None and got[3].key == f"{UNIQUE_PREFIX}b"
    assert got[0].locked_at == START + timedelta(seconds=3) and got[0].locked_by == "w"


def test_cancel_requests_are_found_by_id(store: Store) -> None:
    jobs = store.insert([_new(f"j{i}") for i in range(3)], START)
    _reserve(store, "w", timedelta(0), 3)
    assert store.cancel(jobs[1].id, START, START - LEASE) == "requested"
    ids = [j.id for j in jobs]
    assert store.cancel_requests("w", ids) == {jobs[1].id}
    assert store.cancel_requests("w", ids[:1]) == set()
    assert store.cancel_requests("other", ids) == set()
    assert store.cancel_requests("w") == {jobs[1].id}  # without ids: a scan
    assert store.cancel_requests("w", []) == set()


def _indexes(store: Store) -> set[str]:
    return {i.name for i in store.db.get_indexes("delayed_jobs")}


def test_an_older_table_loses_the_locked_by_index(db_url: str, clock: FakeClock) -> None:
    old = tinydj.configure(db_url, clock=clock)
    old.store.ensure_schema()
    assert "delayed_jobs_locked_by" not in _indexes(old.store)
    old.store.db.execute_sql("CREATE INDEX delayed_jobs_locked_by ON delayed_jobs (locked_by)")
    old.store.close()
    fresh = tinydj.configure(db_url, clock=clock)
    job = sample_jobs.record.send_later("after upgrade")
    assert "delayed_jobs_locked_by" not in _indexes(fresh.store)
    assert {"delayed_jobs_ready", "delayed_jobs_queue_ready"} <= _indexes(fresh.store)
    assert tinydj.Worker(config=fresh).work_off() == (1, 0)
    assert tinydj.get_job(job.id) is None
    fresh.store.close()


def _at(name: str, priority: int, seconds: int) -> NewJob:
    return NewJob(
        f"tinydj: 1\nfunction: m:{name}\n", "q", priority, START + timedelta(seconds=seconds)
    )


def _mixed(store: Store) -> list[int]:
    """Due jobs of three priorities behind future ones of a higher priority;
    their ids in run order."""
    store.insert([_at(f"later{i}", -10, 3600 + i) for i in range(5)], START)
    due = store.insert(
        [_at("c", 3, -30), _at("a", -5, -10), _at("b", 0, -20), _at("a2", -5, -40)]
        + [_at(f"b{i}", 0, -20) for i in range(3)],
        START,
    )
    return [j.id for j in sorted(due, key=lambda j: (j.priority, j.run_at, j.id))]


def test_reserve_keeps_priority_run_at_id_order_across_priorities(store: Store) -> None:
    order = _mixed(store)
    first = _reserve(store, "w", timedelta(0), 4)
    assert [j.id for j in first] == order[:4]
    rest = _reserve(store, "w", timedelta(0), 10)
    assert [j.id for j in rest] == order[4:]


@pytest.mark.parametrize("paused", [(), ("other",)])
def test_reserve_of_one_queue_keeps_run_order_across_priorities(
    store: Store, paused: tuple[str, ...]
) -> None:
    """One queue has a statement of its own on SQLite (a seek per priority)."""
    order = _mixed(store)
    others = store.insert(
        [
            NewJob(f"tinydj: 1\nfunction: m:o{i}\n", "other", -20 + i, START - timedelta(1))
            for i in range(3)
        ],
        START,
    )
    got: list[int] = []
    for limit in (3, 2, 10):
        now = START
        batch = store.reserve("w", now, now - LEASE, ["q"], limit, exclude=paused)
        got += [j.id for j in batch]
    assert got == order
    assert not {j.id for j in others} & set(got)


def test_reserve_skips_rows_another_transaction_locks_and_fills_its_batch(
    store: Store, db_url: str
) -> None:
    if store.dialect is SQLITE:
        pytest.skip("SQLite locks the whole database, not rows")
    order = _mixed(store)
    other = open_database(db_url)
    try:
        with other.atomic():
            # another worker's reservation, not committed yet: the first two in run order
            locked = [order[0], order[2]]
            lock = "SELECT id FROM delayed_jobs WHERE id IN (%s, %s) FOR UPDATE"
            other.execute_sql(lock, locked)
            got = _reserve(store, "w", timedelta(0), 3)
            assert [j.id for j in got] == [i for i in order if i not in locked][:3]
    finally:
        other.close()


def test_a_worker_of_several_queues_skips_rows_another_transaction_locks(
    store: Store, db_url: str
) -> None:
    """Another worker is locking the first rows of both queues: this one
    takes the next ones at once, not nothing (it would go idle while jobs
    wait)."""
    if store.dialect is SQLITE:
        pytest.skip("SQLite locks the whole database, not rows")
    rows = [
        NewJob(f"tinydj: 1\nfunction: m:{q}{i}\n", q, 0, START - timedelta(seconds=60 - i))
        for i in range(6)
        for q in ("a", "b")
    ]
    jobs = store.insert(rows, START)
    order = [j.id for j in sorted(jobs, key=lambda j: (j.priority, j.run_at, j.id))]
    other = open_database(db_url)
    try:
        with other.atomic():
            locked = order[:8]  # the first four of each queue: as many as a reserve of 4 seeks
            for job_id in locked:  # one by one: an IN list may scan (and on MySQL lock) all
                other.execute_sql("SELECT id FROM delayed_jobs WHERE id = %s FOR UPDATE", (job_id,))
            now = START
            got = store.reserve("w", now, now - LEASE, ["a", "b"], 4)
            assert [j.id for j in got] == order[8:12]
    finally:
        other.close()
