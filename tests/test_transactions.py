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
