"""Enqueueing joins the application's own transaction (same peewee.Database)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import peewee
import pytest
import sample_jobs

import tinydj
from tinydj.config import open_database


class Order(peewee.Model):
    number = peewee.CharField()


@pytest.fixture
def app_db(db_url: str) -> Iterator[peewee.Database]:
    db = open_database(db_url)
    Order._meta.set_database(db)
    db.drop_tables([Order])
    db.create_tables([Order])
    tinydj.configure(db)
    sample_jobs.reset()
    yield db
    db.drop_tables([Order])
    db.close()


def test_enqueue_commits_with_the_application(app_db: peewee.Database) -> None:
    with app_db.atomic():
        order = Order.create(number="A-1")
        job = sample_jobs.record.send_later(order.number)
    assert tinydj.get_job(job.id) is not None
    assert tinydj.Worker().work_off() == (1, 0)
    assert sample_jobs.calls == [(("A-1",), {})]


def test_enqueue_rolls_back_with_the_application(app_db: peewee.Database) -> None:
    with pytest.raises(RuntimeError), app_db.atomic():
        Order.create(number="B-2")
        sample_jobs.record.send_later("B-2")
        tinydj.enqueue(sample_jobs.Report("B-2"))
        raise RuntimeError("the order failed")
    assert Order.select().count() == 0
    assert tinydj.list_jobs() == []


def test_savepoint_rollback_drops_only_its_jobs(app_db: peewee.Database) -> None:
    with app_db.atomic():
        sample_jobs.record.send_later("kept")
        with pytest.raises(ValueError), app_db.atomic():
            sample_jobs.record.send_later("dropped")
            raise ValueError
    assert [j.handler.count("kept") for j in tinydj.list_jobs()] == [1]


def test_model_argument_committed_in_the_same_transaction(app_db: peewee.Database) -> None:
    with app_db.atomic():
        order = Order.create(number="C-3")
        sample_jobs.record.send_later(order)
    assert tinydj.Worker().work_off() == (1, 0)
    ((args, _),) = sample_jobs.calls
    assert args[0].number == "C-3"


@pytest.mark.slow
def test_running_worker_wakes_when_the_transaction_commits(app_db: peewee.Database) -> None:
    worker = tinydj.Worker(poll_interval=30.0).start()
    try:
        with app_db.atomic():
            sample_jobs.record.send_later("after commit")
        deadline = time.monotonic() + 5.0
        while not sample_jobs.calls and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sample_jobs.calls == [(("after commit",), {})]
    finally:
        worker.stop()


# -- first use inside the application's transaction (issue 9, item 2) -------------


@pytest.fixture
def fresh_sqlite_app(tmp_path: object) -> Iterator[peewee.SqliteDatabase]:
    """The application's own SqliteDatabase, never touched by tinydj yet (not in
    WAL mode: a new file's journal mode is 'delete')."""
    db = peewee.SqliteDatabase(f"{tmp_path}/app.sqlite3")
    Order._meta.set_database(db)
    db.create_tables([Order])
    tinydj.configure(db)
    sample_jobs.reset()
    yield db
    db.close()


def test_first_enqueue_inside_atomic_commits(fresh_sqlite_app: peewee.SqliteDatabase) -> None:
    db = fresh_sqlite_app
    with db.atomic():  # a web app's first request: the enqueue comes first
        job = sample_jobs.record.send_later("C-3")
        Order.create(number="C-3")
    assert tinydj.get_job(job.id) is not None
    # WAL mode is set as soon as it is allowed (outside a transaction).
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert tinydj.Worker().work_off() == (1, 0)
    assert sample_jobs.calls == [(("C-3",), {})]


def test_first_enqueue_inside_atomic_rolls_back(fresh_sqlite_app: peewee.SqliteDatabase) -> None:
    db = fresh_sqlite_app
    with pytest.raises(RuntimeError), db.atomic():
        sample_jobs.record.send_later("D-4")
        Order.create(number="D-4")
        raise RuntimeError("the order failed")
    assert Order.select().count() == 0
    # The table was created in the rolled-back transaction: made again.
    assert tinydj.list_jobs() == []
    with db.atomic():
        sample_jobs.record.send_later("E-5")
    assert tinydj.Worker().work_off() == (1, 0)
    assert sample_jobs.calls == [(("E-5",), {})]


# -- sqlite:///:memory: lives as long as its configuration (issue 9, item 1) ------


def test_memory_database_outlives_workers() -> None:
    """The README's testing snippet: two work_off() calls, workers that start
    and stop (their lease threads close "their" connection), then more calls."""
    from tinydj.testing import FakeClock

    clock = FakeClock()
    tinydj.configure("sqlite:///:memory:", clock=clock)
    sample_jobs.record.send_in(3600, "later")
    assert tinydj.Worker().work_off() == (0, 0)
    clock.advance(3600)
    assert tinydj.Worker().work_off() == (1, 0)
    sample_jobs.record.send_later("again")
    tinydj.Worker(threads=2).run(exit_on_complete=True)
    assert tinydj.stats()["ready"] == 0
    assert sample_jobs.calls[-2:] == [(("later",), {}), (("again",), {})]
    assert tinydj.Worker().work_off() == (0, 0)
