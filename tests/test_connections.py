"""Connections that die (issue 8, item 3): a server restart or a connection
killed on the server must not break a long-lived thread forever. The next
call reconnects; a statement that failed outside the application's
transaction is tried once more; what reaches the caller while the server is
unreachable is a ``DatabaseUnavailable`` naming host and database, never a
password. The restart test is marked ``restart`` (``-m restart`` selects it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peewee
import pytest
import sample_jobs
from conftest import PG_URL, drop_table
from proc_helpers import wait_until

import tinydj
from tinydj.testing import FakeClock


@pytest.fixture
def server_config(config: tinydj.Config) -> tinydj.Config:
    if config.store.dialect.name == "sqlite":
        pytest.skip("a file database has no connection to lose")
    return config


def _kill_this_threads_connection(cfg: tinydj.Config) -> None:
    """End this thread's connection on the server, from another connection."""
    db = cfg.database
    if cfg.store.dialect.name == "postgresql":
        pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        kill = "SELECT pg_terminate_backend(%s)"
    else:
        pid = db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]
        kill = "KILL CONNECTION %s"
    other = tinydj.config.open_database(cfg.url or "")
    try:
        other.execute_sql(kill, (pid,))
    finally:
        other.close()


CALLS: list[tuple[str, Callable[[], Any]]] = [
    ("send_later", lambda: sample_jobs.record.send_later("after")),
    ("get_job", lambda: tinydj.get_job(1)),
    ("list_jobs", lambda: tinydj.list_jobs()),
    ("stats", lambda: tinydj.stats()),
    ("retry_job", lambda: tinydj.retry_job(1)),
    ("delete_job", lambda: tinydj.delete_job(10**9)),
    ("clear", lambda: tinydj.clear()),
]


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[n for n, _ in CALLS])
def test_a_killed_connection_is_replaced_on_the_next_call(
    server_config: tinydj.Config, name: str, call: Callable[[], Any]
) -> None:
    first = sample_jobs.record.send_later("before")
    _kill_this_threads_connection(server_config)
    call()  # the same thread: reconnects instead of failing forever
    again = sample_jobs.record.send_later("again")
    assert tinydj.get_job(again.id) is not None
    if name not in ("clear",):
        assert tinydj.get_job(first.id) is not None


def test_inside_the_applications_transaction_the_error_goes_to_the_caller(
    server_config: tinydj.Config,
) -> None:
    db = server_config.database
    sample_jobs.record.send_later("before")
    _kill_this_threads_connection(server_config)
    with pytest.raises((peewee.OperationalError, peewee.InterfaceError)):
        with db.atomic():
            sample_jobs.record.send_later("in the dead transaction")
    job = sample_jobs.record.send_later("after")  # and then it reconnects
    handlers = [j.handler for j in tinydj.list_jobs()]
    assert not any("in the dead transaction" in h for h in handlers)
    assert tinydj.get_job(job.id) is not None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann:s3cr3t-pw@127.0.0.1:1/orders",
        "mysql://ann:s3cr3t-pw@127.0.0.1:1/orders",
    ],
)
def test_an_unreachable_server_is_one_line_naming_host_and_database(url: str) -> None:
    tinydj.configure(url, clock=FakeClock())
    for call in (
        lambda: sample_jobs.record.send_later(1),
        tinydj.stats,
        lambda: tinydj.get_job(1),
    ):
        with pytest.raises(tinydj.DatabaseUnavailable) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and "s3cr3t" not in message, message
        assert "127.0.0.1:1" in message and "'orders'" in message, message
        assert isinstance(caught.value.__cause__, peewee.OperationalError)
        assert isinstance(caught.value, tinydj.TinyDJError)
    assert "s3cr3t" not in repr(tinydj.get_config())


# -- a real restart of the Postgres server --------------------------------------------


def _pg_version() -> str | None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return versions[-1] if versions and shutil.which("pg_ctlcluster") else None


class _Enqueuer(threading.Thread):
    """A long-lived thread (a web server's) that enqueues until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.ok: list[tuple[float, int, int]] = []  # (finished at, arg, job id)
        self.unavailable: list[tuple[float, int]] = []
        self.other: list[BaseException] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                job = sample_jobs.record.send_later(n)
            except tinydj.DatabaseUnavailable:
                self.unavailable.append((time.monotonic(), n))
            except BaseException as exc:
                self.other.append(exc)
            else:
                self.ok.append((time.monotonic(), n, job.id))
            self.stop.wait(0.005)  # pacing, like requests; not waiting for a condition


def _server_accepts(url: str) -> bool:
    db = tinydj.config.open_database(url)
    try:
        db.connect()
        db.execute_sql("SELECT 1")
        return True
    except peewee.DatabaseError:
        return False
    finally:
        db.close()


@pytest.mark.restart
@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL or not _pg_version(), reason="needs a local Postgres cluster")
def test_a_long_lived_thread_survives_a_postgres_restart(tmp_path: Path) -> None:
    assert PG_URL
    drop_table(PG_URL)
    cfg = tinydj.configure(PG_URL, clock=FakeClock())
    cfg.store.ensure_schema()
    enqueuer = _Enqueuer()
    enqueuer.start()
    accepted: list[float] = []  # when a fresh connection succeeded, during the outage
    probing = threading.Event()

    def probe() -> None:
        while not probing.is_set():
            if enqueuer.unavailable and _server_accepts(PG_URL):
                accepted.append(time.monotonic())
                return
            probing.wait(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    try:
        wait_until(lambda: len(enqueuer.ok) >= 20, 30, "20 enqueues before the restart")
        prober.start()
        restart = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version() or "", "main", "restart"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restart.returncode == 0, restart.stderr
        wait_until(lambda: _server_accepts(PG_URL), 60, "Postgres to accept connections")
        wait_until(lambda: accepted, 30, "the prober to connect after the outage")
        ready = accepted[0]
        wait_until(lambda: any(t > ready for t, _, _ in enqueuer.ok), 30, "an enqueue after it")
    finally:
        probing.set()
        enqueuer.stop.set()
        enqueuer.join(30)
    assert not enqueuer.other, enqueuer.other
    assert enqueuer.unavailable, "the restart was not seen: nothing was tested"
    last_failure = max(t for t, _ in enqueuer.unavailable)
    first_after = min(t for t, _, _ in enqueuer.ok if t > last_failure)
    # The same thread enqueues within 1 s of the server accepting connections.
    assert first_after - ready < 1.0, (first_after - ready, last_failure - ready)
    # Every Job returned has its row; every DatabaseUnavailable wrote nothing.
    by_id = {j.id: j for j in cfg.store.select()}
    returned = {job_id: n for _, n, job_id in enqueuer.ok}
    assert set(by_id) == set(returned), (len(by_id), len(returned))
    for job_id, n in returned.items():
        assert f"args: [{n}]" in by_id[job_id].handler
    cfg.store.close()
    cfg.database.close()
    (tmp_path / "figures.txt").write_text(
        f"calls {len(enqueuer.ok) + len(enqueuer.unavailable)}, unavailable "
        f"{len(enqueuer.unavailable)}, outage {last_failure - enqueuer.unavailable[0][0]:.3f} s, "
        f"first enqueue {first_after - ready:+.3f} s after a fresh connection succeeded\n"
    )
    print((tmp_path / "figures.txt").read_text())
