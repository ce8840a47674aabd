"""Workers as operators see them: registered, heartbeating, pausable, counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import dashboard_jobs
import pytest
import sample_jobs

import tinydj
from tinydj import control
from tinydj.testing import FakeClock


@pytest.fixture(autouse=True)
def _drop_control_tables(config: tinydj.Config) -> None:
    dashboard_jobs.drop_control_tables(config)


def _until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


def test_a_running_worker_is_listed_live_and_leaves_when_it_stops(
    config: tinydj.Config, clock: FakeClock
) -> None:
    worker = tinydj.Worker(threads=2, queues=["mail"], lock_timeout=1.0, config=config)
    worker.start()
    try:
        (info,) = control.list_workers(now=clock(), lock_timeout=1.0)
        assert (info.name, info.threads, info.queues, info.alive) == (
            worker.name,
            2,
            ("mail",),
            True,
        )
        first = info.heartbeat_at
        clock.advance(5)
        # The lease thread heartbeats every lock_timeout / 4 with the worker's clock.
        _until(lambda: control.list_workers(now=clock())[0].heartbeat_at > first)
    finally:
        worker.stop()
    assert control.list_workers(now=clock()) == []


def test_work_off_does_not_register(config: tinydj.Config, clock: FakeClock) -> None:
    tinydj.Worker(config=config).work_off()
    assert control.list_workers(now=clock()) == []


def test_a_paused_queue_is_skipped_and_taken_again_after_resume(
    config: tinydj.Config, clock: FakeClock
) -> None:
    sample_jobs.record.with_options(queue="mail").send_later("m")
    sample_jobs.record.send_later("d")
    control.pause("mail", now=clock())
    assert tinydj.Worker(config=config).work_off() == (1, 0)
    assert [j.queue for j in tinydj.list_jobs()] == ["mail"]
    # A worker restricted to the paused queue takes nothing either.
    assert tinydj.Worker(queues=["mail"], config=config).work_off() == (0, 0)
    control.resume("mail")
    assert tinydj.Worker(config=config).work_off() == (1, 0)
    assert tinydj.list_jobs() == []


def test_a_live_worker_notices_a_pause_within_a_poll_interval(
    config: tinydj.Config, clock: FakeClock
) -> None:
    worker = tinydj.Worker(poll_interval=0.05, config=config).start()
    try:
        sample_jobs.record.send_later("before")
        _until(lambda: tinydj.list_jobs() == [])
        control.pause("default", now=clock())
        # Its threads read the paused queues again within a poll interval...
        _until(lambda: "default" in worker._presence._paused)
        sample_jobs.record.send_later("while paused")
        # ...and from then on its reservations leave the queue alone.
        assert worker._batches.reserve(5) == []
        assert len(tinydj.list_jobs()) == 1
        control.resume("default")
        _until(lambda: tinydj.list_jobs() == [])
    finally:
        worker.stop()


def test_outcomes_are_counted_per_minute(config: tinydj.Config, clock: FakeClock) -> None:
    sample_jobs.record.send_later("ok")
    sample_jobs.always_fails.with_options(max_attempts=1).send_later(1)
    assert tinydj.Worker(config=config).work_off() == (1, 1)
    minute = clock().replace(second=0, microsecond=0)
    assert control.outcomes(since=minute, until=minute) == [(minute, 1, 1)]


def test_a_batch_counts_each_queue_apart(config: tinydj.Config, clock: FakeClock) -> None:
    for i in range(3):
        sample_jobs.record.with_options(queue="a" if i else "b").send_later(i)
    sample_jobs.always_fails.with_options(queue="b", max_attempts=1).send_later(1)
    assert tinydj.Worker(config=config, batch_size=10).work_off() == (3, 1)
    minute = clock().replace(second=0, microsecond=0)
    assert control.outcomes(since=minute, until=minute, queue="a") == [(minute, 2, 0)]
    assert control.outcomes(since=minute, until=minute, queue="b") == [(minute, 1, 1)]


def test_counts_follow_the_minute_and_survive_a_failed_write(
    config: tinydj.Config, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinydj.presence import _Counts

    ticks = [0.0]
    counts = _Counts(clock, monotonic=lambda: ticks[0])
    first = clock().replace(second=0, microsecond=0)
    counts.add({"a": [1, 0]})
    counts.add({"a": [0, 1]})
    clock.advance(60)
    counts.add({"a": [1, 0]})  # the clock is read again only a second later
    ticks[0] = 1.0
    counts.add({"b": [1, 0]})

    def down(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database down")

    with monkeypatch.context() as patched:
        patched.setattr(control, "record_outcomes", down)
        with pytest.raises(RuntimeError):
            counts.flush(config.store)
    counts.add({"b": [0, 1]})  # after the failed flush, in the current minute
    counts.flush(config.store)
    second = first + timedelta(minutes=1)
    assert control.outcomes(since=first, until=second) == [(first, 2, 1), (second, 1, 1)]
    assert control.outcomes(since=second, until=second, queue="b") == [(second, 1, 1)]
    counts.flush(config.store)  # nothing counted since: nothing added
    assert control.outcomes(since=first, until=second) == [(first, 2, 1), (second, 1, 1)]
