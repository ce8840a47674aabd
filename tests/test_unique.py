"""Unique jobs (issue 12): one row per call while it waits / runs / within a period."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import flow_jobs
import pytest
from proc_helpers import child_env, wait_until

import tinydj
from tinydj.testing import FakeClock
from tinydj.unique import Uniqueness, uniqueness


@pytest.fixture(autouse=True)
def _reset() -> None:
    flow_jobs.reset()


def test_a_waiting_unique_job_is_returned_instead_of_a_second_row(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    first = flow_jobs.refresh.send_later(7)
    again = flow_jobs.refresh.send_later(7)
    other = flow_jobs.refresh.send_later(8)
    assert again.id == first.id and other.id != first.id
    assert (first.key or "").startswith("~w:flow_jobs:refresh#")
    assert len([j for j in tinydj.list_jobs() if not j.recurring]) == 2
    worker.work_off()
    assert sorted(flow_jobs.calls) == [("refresh", 7, False), ("refresh", 8, False)]


def test_keywords_in_any_order_are_one_call(config: tinydj.Config) -> None:
    a = flow_jobs.refresh.send_later(customer=1, full=True)
    b = flow_jobs.refresh.send_later(full=True, customer=1)
    assert a.id == b.id


def test_unique_while_waiting_frees_the_key_once_a_worker_takes_it(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    first = flow_jobs.refresh.send_later(7)
    (reserved,) = config.store.reserve("w", config.clock(), config.clock(), limit=1)
    assert reserved.id == first.id
    row = tinydj.get_job(first.id)
    assert row is not None and row.key is None  # cleared by the reserving UPDATE
    second = flow_jobs.refresh.send_later(7)
    assert second.id != first.id


def test_unique_while_running_keeps_the_key_until_the_job_ends(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    first = flow_jobs.rebuild.send_later("index")
    config.store.reserve("w", config.clock(), config.clock(), limit=1)
    assert flow_jobs.rebuild.send_later("index").id == first.id  # running: still unique
    config.store.release("w")
    worker.work_off()
    assert flow_jobs.calls == [("rebuild", "index")]
    assert flow_jobs.rebuild.send_later("index").id != first.id  # done: a new row


def test_a_job_that_fails_for_good_frees_its_key(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    first = flow_jobs.breaks.send_later("x")
    worker.work_off()
    failed = tinydj.get_job(first.id)
    assert failed is not None and failed.failed and failed.key is None
    assert flow_jobs.breaks.send_later("x").id != first.id


def test_unique_for_a_period(
    config: tinydj.Config, worker: tinydj.Worker, clock: FakeClock
) -> None:
    first = flow_jobs.digest.send_later("ann")
    clock.advance(60)
    assert flow_jobs.digest.send_later("ann").id == first.id
    clock.advance(3600)  # the next window
    later = flow_jobs.digest.send_later("ann")
    assert later.id != first.id
    assert len([j for j in tinydj.list_jobs() if not j.recurring]) == 2


def test_an_explicit_key_replaces_the_arguments(config: tinydj.Config) -> None:
    a = flow_jobs.notify.with_options(key="ann-daily").send_later("ann@example.com")
    b = flow_jobs.notify.with_options(key="ann-daily").send_later("other@example.com")
    c = flow_jobs.notify.send_later("ann@example.com")  # no key: not unique
    d = flow_jobs.notify.send_later("ann@example.com")
    assert a.id == b.id and a.key == "~w:flow_jobs:notify=ann-daily"
    assert len({a.id, c.id, d.id}) == 3


def test_send_in_and_send_at_are_unique_too(config: tinydj.Config, clock: FakeClock) -> None:
    a = flow_jobs.refresh.send_in("10m", 3)
    b = flow_jobs.refresh.send_at(clock() + timedelta(hours=1), 3)
    assert a.id == b.id  # the first row is kept as it is
    assert len([j for j in tinydj.list_jobs() if not j.recurring]) == 1


def test_unique_and_recurring_keys_never_collide(config: tinydj.Config) -> None:
    job = flow_jobs.refresh.send_later(1)
    assert not (job.key or "").startswith("flow_jobs:")


def test_bad_unique_options_fail_at_decoration() -> None:
    with pytest.raises(ValueError, match="'sometimes'"):
        tinydj.job(unique="sometimes")
    with pytest.raises(ValueError, match="unique must be"):
        tinydj.job(unique=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'soon'"):
        tinydj.job(unique_for="soon")
    with pytest.raises(ValueError, match="key must be"):
        flow_jobs.notify.with_options(key="")
    assert uniqueness(False, None) is None
    assert uniqueness(True, "1h") == Uniqueness(False, timedelta(hours=1))


def test_schedule_keys_may_not_look_like_unique_keys(config: tinydj.Config) -> None:
    class Sweep:
        def perform(self) -> None: ...

    with pytest.raises(ValueError, match="'~w:mine'"):
        tinydj.schedule(Sweep(), every="1h", key="~w:mine")


def test_an_overlong_key_is_hashed(config: tinydj.Config) -> None:
    job = flow_jobs.notify.with_options(key="k" * 400).send_later("x")
    assert job.key is not None and len(job.key) <= 255 and job.key.startswith("~w:")


_ENQUEUE = """
import pathlib, sys, time
import tinydj, flow_jobs
tinydj.configure(sys.argv[1])
tinydj.create_tables()
go = pathlib.Path(sys.argv[2])
pathlib.Path(sys.argv[3]).touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    pass
print(flow_jobs.refresh.send_later(42).id)
"""


def test_processes_enqueueing_at_the_same_instant_make_one_row(db_url: str, tmp_path: Path) -> None:
    tinydj.configure(db_url).store.ensure_schema()
    go = tmp_path / "go"
    n = 6
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _ENQUEUE, db_url, str(go), str(tmp_path / f"ready{i}")],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    try:
        wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(n)), 60, "children")
        go.touch()
        outputs = [c.communicate(timeout=60) for c in children]
    finally:
        for c in children:
            c.kill()
    assert all(c.returncode == 0 for c in children), [err for _, err in outputs]
    ids = {out.strip() for out, _ in outputs}
    rows = tinydj.list_jobs()
    assert len(ids) == 1 and [str(r.id) for r in rows] == list(ids)
    tinydj.get_config().store.close()
