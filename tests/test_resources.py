"""OS resources are refused at enqueue, saying what to pass instead (issue 9, item 3)."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sample_jobs
from conftest import MYSQL_URL, PG_URL

import tinydj
from tinydj.errors import SerializationError


def _generator() -> Iterator[int]:
    yield 1


@pytest.fixture
def closing() -> Iterator[list[Callable[[], object]]]:
    """Close what a test opened, whatever it asserted."""
    cleanups: list[Callable[[], object]] = []
    yield cleanups
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture
def local(sqlite_url: str) -> Iterator[tinydj.Config]:
    """tinydj on SQLite only: refusing happens before any database is touched."""
    config = tinydj.configure(sqlite_url)
    yield config
    config.store.close()


def _open(cleanups: list[Callable[[], object]], value: Any) -> Any:
    if isinstance(value, subprocess.Popen):
        cleanups.append(value.wait)
    elif not isinstance(value, type(os)) and callable(getattr(value, "close", None)):
        cleanups.append(value.close)
    return value


# (make the value, what the message calls it, what it says to pass instead)
RESOURCES: list[tuple[str, Callable[[Path], Any], str, str]] = [
    ("text file", lambda p: open(p / "notes.txt", "w"), "an open file", "pass its path"),
    ("binary file", lambda p: open(p / "data.bin", "wb"), "an open file", "pass its path"),
    ("temporary file", lambda p: tempfile.TemporaryFile(dir=p), "an open file", "pass its path"),
    (
        "named temporary file",
        lambda p: tempfile.NamedTemporaryFile(dir=p),
        "an open file",
        "pass its path",
    ),
    ("socket", lambda p: socket.socket(), "a socket", "pass its address"),
    ("sqlite3", lambda p: sqlite3.connect(":memory:"), "a database connection", "ids of the rows"),
    (
        "peewee database",
        lambda p: tinydj.config.open_database(f"sqlite:///{p / 'other.db'}"),
        "a database connection",
        "ids of the rows",
    ),
    ("lock", lambda p: threading.Lock(), "a lock", "within one process"),
    ("rlock", lambda p: threading.RLock(), "a lock", "within one process"),
    (
        "event",
        lambda p: threading.Event(),
        "a lock or other synchronization primitive",
        "within one process",
    ),
    ("thread", lambda p: threading.Thread(target=print), "a thread", "pass the data"),
    (
        "process",
        lambda p: subprocess.Popen([sys.executable, "-c", ""]),
        "a running process",
        "pass its pid",
    ),
    ("event loop", lambda p: asyncio.new_event_loop(), "an event loop", "leave it out"),
    ("generator", lambda p: _generator(), "a generator", "a list of its items"),
    ("module", lambda p: os, "a module ", "pass its name"),
    ("frame", lambda p: sys._getframe(), "a stack frame", "traceback.format_exc()"),
]


@pytest.mark.parametrize(
    ("make", "what", "instead"),
    [pytest.param(make, what, instead, id=name) for name, make, what, instead in RESOURCES],
)
def test_os_resources_are_refused_at_enqueue(
    local: tinydj.Config,
    tmp_path: Path,
    closing: list[Callable[[], object]],
    make: Callable[[Path], Any],
    what: str,
    instead: str,
) -> None:
    value = _open(closing, make(tmp_path))
    holder = sample_jobs.Report("with a resource")
    holder.resource = value  # type: ignore[attr-defined]
    for send in (
        lambda: sample_jobs.record.send_later(value),
        lambda: sample_jobs.record.send_later_many([(1,), {"r": value}]),
        lambda: tinydj.send_later(print, [value]),
        lambda: tinydj.enqueue(holder),
    ):
        with pytest.raises(SerializationError) as info:
            send()
        message = str(info.value)
        assert isinstance(info.value, TypeError)
        assert f"cannot store {what}" in message and instead in message, message
    assert tinydj.list_jobs() == []


def test_a_file_is_named_in_the_message(
    local: tinydj.Config, tmp_path: Path, closing: list[Callable[[], object]]
) -> None:
    f = _open(closing, open(tmp_path / "report.csv", "w"))
    with pytest.raises(TypeError, match=r"open file \(_io.TextIOWrapper '.*report.csv'\)"):
        sample_jobs.record.send_later(f)


def test_methods_of_resources_are_refused(
    local: tinydj.Config, tmp_path: Path, closing: list[Callable[[], object]]
) -> None:
    f = _open(closing, open(tmp_path / "log.txt", "w"))
    conn = _open(closing, sqlite3.connect(":memory:"))
    with pytest.raises(TypeError, match="cannot store an open file"):
        tinydj.send_later(f.write, "line")
    with pytest.raises(TypeError, match="cannot store a database connection"):
        tinydj.send_later(conn.execute, "DELETE FROM t")
    assert tinydj.list_jobs() == []


def test_coroutines_are_refused(local: tinydj.Config) -> None:
    coroutine = sample_jobs.async_record.fn(1)
    try:
        with pytest.raises(TypeError, match="async def jobs are awaited in the worker"):
            sample_jobs.record.send_later(coroutine)
    finally:
        coroutine.close()


def test_in_memory_buffers_and_builtins_are_still_stored(
    config: tinydj.Config, worker: tinydj.Worker
) -> None:
    sample_jobs.record.send_later(io.BytesIO(b"bytes"), io.StringIO("text"))
    tinydj.send_later(os.getcwd)  # a module's function, by path
    assert worker.work_off() == (2, 0)
    ((args, _),) = sample_jobs.calls
    assert args[0].getvalue() == b"bytes" and args[1].getvalue() == "text"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(PG_URL, id="psycopg2", marks=pytest.mark.postgres),
        pytest.param(MYSQL_URL, id="pymysql", marks=pytest.mark.mysql),
    ],
)
def test_server_driver_connections_are_refused(local: tinydj.Config, url: str | None) -> None:
    if not url:
        if os.environ.get("CI"):
            pytest.fail("the server URL must be set in CI")
        pytest.skip("server URL not set")
    database = tinydj.config.open_database(url)
    try:
        connection = database.connection()
        for value in (database, connection, connection.cursor()):
            with pytest.raises(TypeError, match="cannot store a database connection"):
                sample_jobs.record.send_later(value)
    finally:
        database.close()
    assert tinydj.list_jobs() == []
