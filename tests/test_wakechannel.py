"""The wake channel: an enqueue in one process wakes an idle worker in another
(SQLite), through a Unix datagram socket beside the database.

Real processes, waited on with deadlines. A worker that must be woken through
the channel runs with every other way to notice the job switched off (poll
interval and ``data_version`` tick of an hour), so that the job running at all
shows the channel worked; the job also reports the worker's channel counter.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from proc_helpers import child_env, read_lines, wait_until

import tinydj
from tinydj import wakechannel, wakeup
from tinydj.wakechannel import Receiver, directory_for
from tinydj.wakeup import WakeUp

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX sockets")

HOUR = 3600.0


@tinydj.job
def report(path: str, token: str) -> None:
    """Append the worker process's channel counters to ``path`` as JSON."""
    line = json.dumps({"token": token, "pid": os.getpid(), "received": wakechannel.STATS.received})
    with open(path, "a") as out:
        out.write(line + "\n")


#: A worker process on argv[1]. With argv[2] == "channel-only" nothing but the
#: wake channel can wake it. It appends a line to argv[3] each time one of its
#: threads goes to sleep (after its look: a job enqueued later must wake it).
WORKER = """
import logging, sys
import tinydj
from tinydj import wakeup

url, mode, sleeps = sys.argv[1:4]
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(message)s")
if mode == "channel-only":
    wakeup.CHANNEL_TICK = 3600.0
original = wakeup.WakeUp.sleep

def sleep(self, ticket):
    with open(sleeps, "a") as out:
        out.write(f"{int(self.channel_live)}\\n")
    original(self, ticket)

wakeup.WakeUp.sleep = sleep
tinydj.configure(url)
tinydj.Worker(threads=1, poll_interval=3600).run()
"""


@pytest.fixture
def wake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A channel base directory of this test's own (also for its children)."""
    base = tmp_path / "wake"
    monkeypatch.setenv("TINYDJ_WAKE_DIR", str(base))
    return base


@pytest.fixture
def db(tmp_path: Path, wake_dir: Path) -> Iterator[Path]:
    path = tmp_path / "jobs.sqlite3"
    config = tinydj.configure(f"sqlite:///{path}")
    tinydj.create_tables()
    yield path
    config.store.close()


def start_worker(
    children: list[subprocess.Popen[bytes]], tmp_path: Path, db: Path, mode: str, name: str = "w"
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    sleeps, log = tmp_path / f"{name}.sleeps", tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, f"sqlite:///{db}", mode, str(sleeps)],
            cwd=tmp_path,
            env=child_env({"TINYDJ_WAKE_DIR": os.environ["TINYDJ_WAKE_DIR"]}),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    children.append(proc)
    return proc, sleeps, log


def sockets(db: Path) -> list[str]:
    directory = directory_for(str(db))
    assert directory is not None
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def reports(path: Path) -> list[dict[str, int | str]]:
    return [json.loads(line) for line in read_lines(path)]


def test_enqueue_in_this_process_wakes_a_worker_in_another(
    tmp_path: Path, db: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    proc, sleeps, log = start_worker(children, tmp_path, db, "channel-only")
    wait_until(lambda: read_lines(sleeps), 60, "the worker to fall asleep", details=log.read_text)
    assert read_lines(sleeps)[0] == "1", "the worker has no wake channel"
    (name,) = sockets(db)
    assert name.startswith(f"{proc.pid}.")

    out = tmp_path / "ran.jsonl"
    sent = wakechannel.STATS.sent
    report.send_later(str(out), "first")
    assert wakechannel.STATS.sent == sent + 1
    # With an hour of poll interval and data_version tick, only the channel
    # can have woken it.
    (ran,) = wait_until(lambda: reports(out), 60, "the job to run", details=log.read_text)
    assert ran["token"] == "first" and ran["pid"] == proc.pid
    assert int(ran["received"]) >= 1

    # Asleep again, it is woken again.
    wait_until(lambda: len(read_lines(sleeps)) >= 2, 60, "the worker to sleep again")
    report.send_later(str(out), "second")
    wait_until(lambda: len(reports(out)) == 2, 60, "the second job", details=log.read_text)
    assert int(reports(out)[1]["received"]) > int(ran["received"])


def test_socket_of_a_killed_worker_is_removed_by_the_next_enqueue(
    tmp_path: Path, db: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    proc, sleeps, log = start_worker(children, tmp_path, db, "channel-only")
    wait_until(lambda: read_lines(sleeps), 60, "the worker to fall asleep", details=log.read_text)
    assert len(sockets(db)) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert len(sockets(db)) == 1, "a killed process leaves its socket behind"

    removed = wakechannel.STATS.removed
    report.send_later(str(tmp_path / "ran.jsonl"), "t")
    assert sockets(db) == []
    assert wakechannel.STATS.removed == removed + 1


def test_stopped_worker_removes_its_socket(db: Path) -> None:
    worker = tinydj.Worker(threads=2, poll_interval=HOUR).start()
    try:
        wait_until(lambda: worker._wakeup.channel_live, 60, "the worker to open its channel")
        assert len(sockets(db)) == 1
    finally:
        worker.stop()
    assert not worker._wakeup.channel_live
    assert sockets(db) == []


def test_worker_falls_back_to_the_tick_without_a_directory(
    tmp_path: Path,
    db: Path,
    children: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("TINYDJ_WAKE_DIR", str(blocker / "wake"))
    proc, sleeps, log = start_worker(children, tmp_path, db, "default")
    wait_until(lambda: read_lines(sleeps), 60, "the worker to fall asleep", details=log.read_text)
    assert read_lines(sleeps)[0] == "0", "a channel where none can be"

    out = tmp_path / "ran.jsonl"
    sent = wakechannel.STATS.sent
    report.send_later(str(out), "t")
    assert wakechannel.STATS.sent == sent
    (ran,) = wait_until(lambda: reports(out), 60, "the job to run", details=log.read_text)
    assert ran["pid"] == proc.pid and ran["received"] == 0
    assert log.read_text().count("no wake channel in") == 1


def test_datagram_between_look_and_sleep_is_not_slept_through(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wakeup, "CHANNEL_TICK", HOUR)
    store = tinydj.get_config().store
    stopping = threading.Event()
    wake = WakeUp(store, HOUR, stopping)
    code = (
        "import sys, tinydj, test_wakechannel as t; tinydj.configure(sys.argv[1]); "
        "t.report.send_later(sys.argv[2], 'late')"
    )

    def enqueue_elsewhere() -> list[object]:
        # Another process enqueues after the look has read the counters.
        subprocess.run(
            [sys.executable, "-c", code, f"sqlite:///{db}", str(tmp_path / "ran.jsonl")],
            env=child_env({"TINYDJ_WAKE_DIR": os.environ["TINYDJ_WAKE_DIR"]}),
            check=True,
            timeout=120,
        )
        return []

    jobs, ticket = wake.look(enqueue_elsewhere, watch=True)
    assert jobs == [] and wake.channel_live
    sleeper = threading.Thread(target=wake.sleep, args=(ticket,))
    sleeper.start()
    try:
        sleeper.join(60)
        assert not sleeper.is_alive(), "slept through a datagram sent before the sleep"
        assert wake.channel_wakes == 1
    finally:
        stopping.set()
        wake.ring()
        sleeper.join(10)
        store.close()
    assert not wake.channel_live, "ring() after stop closes the channel"


def test_ring_wakes_the_thread_waiting_on_the_channel(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wakeup, "CHANNEL_TICK", HOUR)
    store = tinydj.get_config().store
    stopping = threading.Event()
    wake = WakeUp(store, HOUR, stopping)
    tickets = [wake.look(list, watch=True)[1] for _ in range(2)]
    sleepers = [threading.Thread(target=wake.sleep, args=(t,)) for t in tickets]
    for sleeper in sleepers:
        sleeper.start()
    try:
        wait_until(lambda: wake._reading, 60, "a thread to wait on the channel")
        wake.ring()  # an enqueue in this process
        for sleeper in sleepers:
            sleeper.join(60)
        assert not any(s.is_alive() for s in sleepers), "a ring left a thread asleep"
        assert wake.channel_wakes == 0
    finally:
        stopping.set()
        wake.ring()
        for sleeper in sleepers:
            sleeper.join(10)
        store.close()


def test_no_channel_for_an_in_memory_database() -> None:
    assert directory_for(":memory:") is None
    assert directory_for("") is None
    assert directory_for("file:jobs?mode=memory&cache=shared") is None
    assert directory_for(None) is None
    config = tinydj.configure("sqlite:///:memory:")
    stopping = threading.Event()
    wake = WakeUp(config.store, HOUR, stopping)
    jobs, _ = wake.look(list, watch=True)
    assert jobs == [] and not wake.channel_live


def test_every_spelling_of_a_file_shares_one_directory(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    link = tmp_path / "link.sqlite3"
    link.symlink_to(path)
    first = directory_for(str(path))
    assert first is not None
    assert directory_for(str(link)) == first
    assert directory_for(f"file:{path}?cache=shared") == first
    assert directory_for(str(tmp_path / "other.sqlite3")) != first


def test_socket_path_too_long_means_no_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYDJ_WAKE_DIR", str(tmp_path / ("d" * 120)))
    assert Receiver.open(str(tmp_path / "jobs.sqlite3")) is None
