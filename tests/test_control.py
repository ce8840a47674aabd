"""tinydj.control: registered workers, paused queues and per-minute counters."""

from __future__ import annotations

from datetime import datetime, timedelta

import dashboard_jobs
import peewee
import pytest

import tinydj
from tinydj import control
from tinydj.testing import FakeClock

START = datetime(2030, 1, 1, 12, 0, 0)


@pytest.fixture(autouse=True)
def _drop_control_tables(config: tinydj.Config) -> None:
    # Each test starts without the control tables (they are created on first use).
    dashboard_jobs.drop_control_tables(config)


def test_tables_are_created_on_first_use(config: tinydj.Config) -> None:
    assert control.paused_queues() == {}
    tables = set(config.database.get_tables())
    assert {"tinydj_workers", "tinydj_queues", "tinydj_stats"} <= tables


def test_register_heartbeat_and_unregister(config: tinydj.Config) -> None:
    control.register_worker("w1", host="box", pid=42, threads=4, queues=["mail", "img"], now=START)
    control.register_worker("w2", host="box", pid=43, threads=1, queues=None, now=START)
    later = START + timedelta(seconds=50)
    assert control.heartbeat("w1", now=later)

    workers = control.list_workers(now=later, lock_timeout=30)
    assert [(w.name, w.alive) for w in workers] == [("w1", True), ("w2", False)]
    w1 = workers[0]
    assert (w1.host, w1.pid, w1.threads, w1.queues) == ("box", 42, 4, ("mail", "img"))
    assert w1.started_at == START and w1.heartbeat_at == later
    assert workers[1].queues == ()

    assert control.unregister_worker("w1")
    assert not control.unregister_worker("w1")
    assert not control.heartbeat("w1", now=later)
    assert [w.name for w in control.list_workers(now=later)] == ["w2"]


def test_register_again_replaces_the_row(config: tinydj.Config) -> None:
    control.register_worker("w", host="a", pid=1, threads=1, queues=None, now=START)
    control.register_worker("w", host="b", pid=2, threads=3, queues=None, now=START)
    (only,) = control.list_workers(now=START)
    assert (only.host, only.pid, only.threads) == ("b", 2, 3)


def test_prune_workers_removes_old_heartbeats(config: tinydj.Config) -> None:
    control.register_worker("old", host="a", pid=1, threads=1, queues=None, now=START)
    control.register_worker(
        "new", host="a", pid=2, threads=1, queues=None, now=START + timedelta(hours=2)
    )
    assert control.prune_workers(before=START + timedelta(hours=1)) == 1
    assert [w.name for w in control.list_workers(now=START)] == ["new"]


def test_pause_and_resume(config: tinydj.Config) -> None:
    assert control.pause("mail", now=START)
    assert not control.pause("mail", now=START + timedelta(minutes=1))  # keeps the first time
    assert control.pause("img", now=START)
    assert control.paused_queues() == {"mail": START, "img": START}
    assert control.resume("mail")
    assert not control.resume("mail")
    assert control.paused_queues() == {"img": START}


def test_pause_refuses_an_empty_name(config: tinydj.Config) -> None:
    with pytest.raises(ValueError, match="empty"):
        control.pause("", now=START)


def test_record_outcomes_adds_up_per_minute(config: tinydj.Config) -> None:
    m0 = START
    control.record_outcomes({(m0 + timedelta(seconds=5), "a"): (3, 1), (m0, "b"): (2, 0)})
    control.record_outcomes({(m0 + timedelta(seconds=59), "a"): (1, 1)})
    control.record_outcomes({(m0 + timedelta(minutes=2), "a"): (7, 0)})
    control.record_outcomes({})

    rows = control.outcomes(since=m0, until=m0 + timedelta(minutes=2, seconds=30))
    assert rows == [
        (m0, 6, 2),
        (m0 + timedelta(minutes=1), 0, 0),
        (m0 + timedelta(minutes=2), 7, 0),
    ]
    only_a = control.outcomes(since=m0, until=m0, queue="a")
    assert only_a == [(m0, 4, 2)]


def test_old_counters_are_pruned(config: tinydj.Config) -> None:
    control.record_outcomes({(START, "a"): (1, 0)})
    later = START + control.STATS_RETENTION + timedelta(minutes=5)
    control.record_outcomes({(later, "a"): (1, 0)})
    (count,) = config.database.execute_sql("SELECT COUNT(*) FROM tinydj_stats").fetchone()
    assert count == 1


def test_tally_counts_in_memory_and_flushes(config: tinydj.Config, clock: FakeClock) -> None:
    tally = control.Tally()
    tally.add(START, "a")
    tally.add(START + timedelta(seconds=10), "a", failed=True)
    tally.add(START + timedelta(minutes=1), "b")
    assert tally.flush(config.store) == 3
    assert tally.flush(config.store) == 0
    rows = control.outcomes(since=START, until=START + timedelta(minutes=1))
    assert rows == [(START, 1, 1), (START + timedelta(minutes=1), 1, 0)]


def test_tally_keeps_counts_when_the_write_fails(config: tinydj.Config) -> None:
    tally = control.Tally()
    tally.add(START, "a")
    broken = config.store
    original = broken.query

    def fail(sql: str, params: object = ()) -> object:
        if "tinydj_stats" in sql and sql.startswith("INSERT"):
            raise peewee.OperationalError("disk on fire")
        return original(sql, params)  # type: ignore[arg-type]

    broken.query = fail  # type: ignore[method-assign]
    try:
        with pytest.raises(peewee.OperationalError):
            tally.flush(broken)
    finally:
        del broken.query
    assert tally.flush(broken) == 1
    assert control.outcomes(since=START, until=START) == [(START, 1, 0)]


def test_format_workers_for_the_command_line(config: tinydj.Config) -> None:
    control.register_worker("w1", host="box", pid=42, threads=4, queues=None, now=START)
    control.register_worker("w-two", host="b", pid=7, threads=1, queues=["mail"], now=START)
    later = START + timedelta(seconds=40)
    control.heartbeat("w1", now=later)
    lines = control.format_workers(control.list_workers(now=later), later)
    assert lines == [
        "STATE  NAME   HOST  PID  THREADS  QUEUES  HEARTBEAT",
        "live   w1     box   42   4        all     0s ago",
        "dead   w-two  b     7    1        mail    40s ago",
    ]
