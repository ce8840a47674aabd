"""The storage contract, on every database: what ``Store`` promises the worker
and the admin functions, driven directly (no worker, a fixed "now")."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from conftest import START

import tinydj
from tinydj.job import Job
from tinydj.sql import MYSQL, POSTGRES, SQLITE, Statements
from tinydj.store import NewJob, Store

NOW = START
LEASE = timedelta(seconds=30)


def _new(name: str, priority: int = 0, at: timedelta = timedelta(0), queue: str = "q") -> NewJob:
    return NewJob(f"tinydj: 1\nfunction: m:{name}\n", queue, priority, NOW + at)


@pytest.fixture
def store(config: tinydj.Config) -> Store:
    config.store.ensure_schema()
    return config.store


def _reserve(store: Store, worker: str, limit: int = 10, **kw: object) -> list[Job]:
    return store.reserve(worker, NOW, NOW - LEASE, limit=limit, **kw)  # type: ignore[arg-type]


def test_insert_returns_jobs_with_their_ids(store: Store) -> None:
    one = store.insert([_new("a")], NOW)
    many = store.insert([_new(f"b{i}") for i in range(250)], NOW)
    assert len({j.id for j in one + many}) == 251
    for job in (one[0], many[0], many[-1]):
        assert store.get(job.id) == job
    assert store.insert([], NOW) == []


@pytest.mark.parametrize("n", [2, 128, 300, 2001])
def test_a_bulk_of_one_call_gets_each_row_its_id(store: Store, n: int) -> None:
    # Rows that differ only in their handler go in multi-row statements
    # (SQLite: 128 at a time, then powers of two; Postgres: an array).
    rows = NewJob.many([f"tinydj: 1\nfunction: m:f{i}\n" for i in range(n)], "q", 3, NOW)
    jobs = store.insert(rows, NOW)
    assert [j.handler for j in jobs] == [r.handler for r in rows]
    assert sorted(j.id for j in jobs) == [j.id for j in jobs]
    stored = {j.id: j for j in store.select(queue="q")}
    assert [stored[j.id] for j in jobs] == jobs


def test_a_bulk_of_different_rows_keeps_each_row_as_given(store: Store) -> None:
    rows = [_new("a"), _new("b", priority=2), _new("c", queue="other"), _new("d", at=LEASE)]
    rows.append(NewJob("tinydj: 1\nfunction: m:e\n", "q", 0, NOW, key="k", reoccur_in="1h"))
    jobs = store.insert(rows, NOW)
    assert [(j.handler, j.queue, j.priority, j.run_at, j.key) for j in jobs] == [
        (r.handler, r.queue, r.priority, r.run_at, r.key) for r in rows
    ]
    assert [store.get(j.id) for j in jobs] == jobs


def test_a_new_job_is_the_job_its_row_reads_as() -> None:
    new = NewJob("h", "q", 2, NOW, key="k", reoccur_in="1h", concurrency_key="c")
    job = new.inserted(7, NOW + LEASE)
    later = NOW + LEASE
    assert type(job) is Job
    assert job == Job(7, 2, 0, "h", None, NOW, None, None, None, "1h", None, later, later, "q",
                      "k", 0, "c")  # fmt: skip
    with pytest.raises(AttributeError):  # frozen, as every Job
        job.id = 8  # type: ignore[misc]


def test_reserve_takes_due_jobs_in_priority_run_at_id_order(store: Store) -> None:
    late = store.insert([_new("late", at=-timedelta(seconds=1))], NOW)[0]
    urgent = store.insert([_new("urgent", priority=-5)], NOW)[0]
    early = store.insert([_new("early", at=-timedelta(hours=1))], NOW)[0]
    future = store.insert([_new("future", at=timedelta(seconds=1))], NOW)[0]
    taken = _reserve(store, "w")
    assert [j.id for j in taken] == [urgent.id, early.id, late.id]
    assert all(j.locked_by == "w" and j.locked_at == NOW for j in taken)
    assert store.get(future.id).locked_by is None  # type: ignore[union-attr]


def test_reserve_honours_limit_and_queues(store: Store) -> None:
    store.insert([_new(f"m{i}", queue="mail") for i in range(3)], NOW)
    store.insert([_new("other", queue="other")], NOW)
    assert len(_reserve(store, "w", limit=2, queues=["mail"])) == 2
    assert [j.queue for j in _reserve(store, "w2", queues=["other", "nope"])] == ["other"]


def test_reserve_of_several_queues_takes_them_in_one_run_order(store: Store) -> None:
    # Three queues, mixed priorities and times: a worker of two of them takes
    # their due jobs in (priority, run_at, id) order across both, skipping
    # paused queues, jobs held by others, and jobs of the third queue.
    rows = []
    for i in range(30):
        queue = ("a", "b", "c")[i % 3]
        rows.append(_new(f"j{i}", priority=(i * 7) % 4 - 2, at=-timedelta(seconds=i), queue=queue))
    rows.append(_new("later", queue="a", at=timedelta(hours=1)))
    jobs = store.insert(rows, NOW)
    held = {j.id for j in _reserve(store, "other", limit=3, queues=["b"])}
    order = sorted(jobs, key=lambda j: (j.priority, j.run_at, j.id))
    wanted = [j.id for j in order if j.queue in ("a", "b") and j.run_at <= NOW and j.id not in held]
    taken = [j.id for j in _reserve(store, "w", limit=7, queues=["a", "b"])]
    assert taken == wanted[:7]
    rest = [j.id for j in _reserve(store, "w", limit=100, queues=["b", "a"])]
    assert rest == wanted[7:]
    assert _reserve(store, "w", queues=["a", "b", "c"], exclude=["c"]) == []
    assert len(_reserve(store, "w", limit=100, queues=["a", "c"], exclude=["a"])) == 10


def test_workers_of_several_queues_racing_take_each_job_once(store: Store) -> None:
    # Threads reserve (and ack) from the same two queues at once: on Postgres
    # candidates are read without locks, then locked skipping others' rows.
    rows = [_new(f"j{i}", priority=i % 3, queue=("a", "b", "c")[i % 3]) for i in range(600)]
    wanted = {j.id for j in store.insert(rows, NOW) if j.queue != "c"}
    taken: list[list[int]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        done: list[int] = []
        for _ in range(200):
            got = _reserve(store, f"w{k}", limit=16, queues=["a", "b"], done=done)
            done = [j.id for j in got]
            taken[k] += done
            if not got:
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    rest = [j.id for j in _reserve(store, "last", limit=1000, queues=["b", "a"])]
    everything = [i for ids in taken for i in ids] + rest
    assert sorted(everything) == sorted(wanted)  # each once: no id twice, none left


def test_a_held_job_is_locked_until_its_lease_expires(store: Store) -> None:
    (job,) = store.insert([_new("a")], NOW)
    assert [j.id for j in _reserve(store, "first")] == [job.id]
    assert _reserve(store, "second") == []
    later = NOW + LEASE + timedelta(seconds=1)
    (again,) = store.reserve("second", later, later - LEASE)
    assert again.locked_by == "second" and again.interruptions == 1
    assert "Interrupted: worker first" in (again.last_error or "")


def test_renew_counts_only_leases_still_held(store: Store) -> None:
    jobs = store.insert([_new(f"j{i}") for i in range(3)], NOW)
    _reserve(store, "w")
    ids = [j.id for j in jobs]
    assert store.renew("w", NOW + timedelta(seconds=5), ids) == 3
    assert store.release("w", ids[:1]) == 1
    assert store.renew("w", NOW + timedelta(seconds=6), ids) == 2
    assert store.renew("other", NOW, ids) == 0


def test_release_unlocks_some_or_all(store: Store) -> None:
    jobs = store.insert([_new(f"j{i}") for i in range(3)], NOW)
    _reserve(store, "w")
    assert store.release("w", [jobs[0].id]) == 1
    assert store.release("w", []) == 0
    assert store.release("w") == 2
    assert all(j.locked_by is None for j in store.select())


def test_ack_and_finish_check_locked_by(store: Store) -> None:
    a, b = store.insert([_new("a"), _new("b")], NOW)
    _reserve(store, "w")
    assert store.ack("intruder", [a.id]) == 0
    assert not store.finish(b.id, "intruder", NOW, attempts=1, last_error="x", run_at=NOW)
    assert store.ack("w", [a.id]) == 1 and store.get(a.id) is None
    retry_at = NOW + timedelta(minutes=5)
    assert store.finish(b.id, "w", NOW, attempts=1, last_error="boom", run_at=retry_at)
    row = store.get(b.id)
    assert row is not None and row.locked_by is None and row.attempts == 1
    assert row.run_at == retry_at and row.last_error == "boom" and not row.failed


def test_reserve_acknowledges_done_jobs_in_the_same_call(store: Store) -> None:
    a, b = store.insert([_new("a"), _new("b", at=timedelta(seconds=1))], NOW)
    _reserve(store, "w", limit=1)
    later = NOW + timedelta(seconds=2)
    (taken,) = store.reserve("w", later, later - LEASE, done=[a.id])
    assert taken.id == b.id and store.get(a.id) is None


def test_reserve_acknowledges_done_jobs_when_nothing_is_due(store: Store) -> None:
    a, b = store.insert([_new("a"), _new("b")], NOW)
    _reserve(store, "w")
    assert _reserve(store, "w", done=[a.id, b.id]) == []
    assert store.select() == []


def test_a_done_job_whose_lease_expired_is_deleted_not_taken_again(store: Store) -> None:
    (a,) = store.insert([_new("a")], NOW)
    _reserve(store, "w")
    later = NOW + LEASE + timedelta(seconds=1)  # a's lease expired meanwhile
    assert store.reserve("w", later, later - LEASE, done=[a.id]) == []
    assert store.get(a.id) is None


def test_reserve_warns_of_done_jobs_it_no_longer_held(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = store.insert([_new("a"), _new("b"), _new("c", at=timedelta(seconds=1))], NOW)
    _reserve(store, "w", limit=2)
    later = NOW + LEASE + timedelta(seconds=2)
    assert [j.id for j in store.reserve("thief", later, later - LEASE, limit=1)] == [a.id]
    taken = store.reserve("w", later, later - LEASE, done=[a.id, b.id], limit=1)
    assert [j.id for j in taken] == [c.id]
    assert store.get(a.id) is not None and store.get(b.id) is None
    lost = [r for r in caplog.records if getattr(r, "action", None) == "lease_lost"]
    assert len(lost) == 1 and lost[0].getMessage().startswith("1 finished job(s)")


def test_upsert_inserts_then_updates_by_key(store: Store) -> None:
    first = NewJob("tinydj: 1\nfunction: m:tick\n", "q", 0, NOW + timedelta(hours=1), "k", "1h")
    row = store.upsert(first, NOW, NOW + timedelta(hours=1))
    assert row.key == "k" and row.reoccur_in == "1h"
    changed = NewJob("tinydj: 1\nfunction: m:tock\n", "q2", 3, NOW + timedelta(hours=2), "k", "5m")
    again = store.upsert(changed, NOW, NOW + timedelta(minutes=5))
    assert again.id == row.id and again.queue == "q2" and again.priority == 3
    assert again.reoccur_in == "5m" and again.run_at == NOW + timedelta(minutes=5)
    assert len(store.select(key="k")) == 1


def test_counts_retry_delete_clear(store: Store) -> None:
    a, b, _ = store.insert([_new("a"), _new("b"), _new("c", at=timedelta(hours=1))], NOW)
    _reserve(store, "w", limit=1)
    store.finish(a.id, "w", NOW, attempts=25, last_error="x", run_at=NOW, failed_at=NOW)
    assert store.counts(NOW) == {"ready": 1, "scheduled": 1, "locked": 0, "failed": 1}
    assert store.retry(a.id, NOW) and not store.get(a.id).failed  # type: ignore[union-attr]
    assert store.delete(b.id) and not store.delete(b.id)
    assert store.clear() == 2 and store.select() == []


def test_statements_are_rendered_once_per_dialect() -> None:
    for dialect, marker in ((SQLITE, "?"), (POSTGRES, "%s"), (MYSQL, "%s")):
        sql = Statements(dialect)
        assert sql.renew(3) is sql.renew(3)  # kept, not rebuilt
        assert sql.renew(3).count(marker) == 5
        assert ("`" in sql.get) is (dialect is MYSQL)
    assert "RETURNING" in Statements(POSTGRES).reserve(2)


def test_postgres_leaves_room_on_each_page_for_in_place_updates(store: Store) -> None:
    if store.dialect is not POSTGRES:
        pytest.skip("fillfactor is a Postgres table option")
    sql = "SELECT reloptions FROM pg_class WHERE oid = to_regclass('delayed_jobs')"
    (options,) = store.db.execute_sql(sql).fetchone()
    assert "fillfactor=45" in options
    store.db.execute_sql("ALTER TABLE delayed_jobs SET (fillfactor = 70)")  # tinydj's before
    store._schema._ready = False
    store.ensure_schema()
    assert "fillfactor=45" in store.db.execute_sql(sql).fetchone()[0]  # upgraded
    store.db.execute_sql("ALTER TABLE delayed_jobs SET (fillfactor = 90)")  # an operator's own
    store._schema._ready = False
    store.ensure_schema()
    assert "fillfactor=90" in store.db.execute_sql(sql).fetchone()[0]  # left as it is
