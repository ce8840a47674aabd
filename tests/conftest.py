"""Shared fixtures: one ``db_url`` parametrized over the databases tinydj supports.

SQLite always runs. PostgreSQL runs when ``TINYDJ_TEST_PG_URL`` is set; in CI
(``CI`` set) a missing URL is an error, not a skip, so that the Postgres tests
cannot silently vanish.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import peewee
import pytest
from hypothesis import settings
from proc_helpers import Processes

import tinydj
from tinydj.testing import FakeClock

# CI explores the same examples every run (a property that fails there fails
# reproducibly); local runs explore new ones each time.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

BASE_PG_URL = os.environ.get("TINYDJ_TEST_PG_URL")
# Each test session works in a schema of its own, so that two runs against one
# server (or a developer's run beside CI's) do not drop each other's tables.
PG_SCHEMA = f"tinydj_test_{os.getpid()}"
PG_URL = (
    f"{BASE_PG_URL}{'&' if '?' in BASE_PG_URL else '?'}options=-csearch_path%3D{PG_SCHEMA}"
    if BASE_PG_URL
    else None
)

BASE_MYSQL_URL = os.environ.get("TINYDJ_TEST_MYSQL_URL")
# MySQL/MariaDB: a database of its own per session, for the same reason.
MYSQL_DB = f"tinydj_test_{os.getpid()}"
MYSQL_URL = BASE_MYSQL_URL.rsplit("/", 1)[0] + "/" + MYSQL_DB if BASE_MYSQL_URL else None

START = datetime(2030, 1, 1, 12, 0, 0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "restart: restarts the local database server (select with -m restart)"
    )


def _server_param(name: str, url: str | None, variable: str) -> object:
    if url or os.environ.get("CI"):
        # In CI a missing server URL fails the test (see db_url), never skips.
        return pytest.param(name, marks=getattr(pytest.mark, name))
    return pytest.param(name, marks=pytest.mark.skip(reason=f"{variable} not set"))


def drop_table(url: str) -> None:
    """Drop delayed_jobs in a fresh connection (each test starts from nothing)."""
    db = tinydj.config.open_database(url)
    try:
        db.execute_sql("DROP TABLE IF EXISTS delayed_jobs")
        db.execute_sql("DROP TABLE IF EXISTS tinydj_concurrency")
    finally:
        db.close()


@pytest.fixture(scope="session", autouse=True)
def pg_schema() -> Iterator[None]:
    """Create this session's Postgres schema, and drop it at the end."""
    if not BASE_PG_URL:
        yield
        return
    db = tinydj.config.open_database(BASE_PG_URL)
    db.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
    db.close()
    yield
    db = tinydj.config.open_database(BASE_PG_URL)
    db.execute_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
    db.close()


@pytest.fixture(scope="session", autouse=True)
def mysql_database() -> Iterator[None]:
    """Create this session's MySQL/MariaDB database, and drop it at the end."""
    if not BASE_MYSQL_URL:
        yield
        return
    db = tinydj.config.open_database(BASE_MYSQL_URL)
    db.execute_sql(f"CREATE DATABASE IF NOT EXISTS {MYSQL_DB}")
    db.close()
    yield
    db = tinydj.config.open_database(BASE_MYSQL_URL)
    db.execute_sql(f"DROP DATABASE IF EXISTS {MYSQL_DB}")
    db.close()


DATABASES = [
    "sqlite",
    _server_param("postgres", PG_URL, "TINYDJ_TEST_PG_URL"),
    _server_param("mysql", MYSQL_URL, "TINYDJ_TEST_MYSQL_URL"),
]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with no delayed_jobs table yet: SQLite, Postgres, MySQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
        return
    url = PG_URL if request.param == "postgres" else MYSQL_URL
    if not url:
        variable = "TINYDJ_TEST_PG_URL" if request.param == "postgres" else "TINYDJ_TEST_MYSQL_URL"
        pytest.fail(f"{variable} is not set: in CI the {request.param} tests must run")
    drop_table(url)
    yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An SQLite file URL, for tests that are about SQLite itself."""
    return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def config(db_url: str, clock: FakeClock) -> Iterator[tinydj.Config]:
    """tinydj configured on each database, with a fake clock."""
    import sample_jobs

    sample_jobs.reset()
    cfg = tinydj.configure(db_url, clock=clock)
    yield cfg
    cfg.store.close()
    if not isinstance(cfg.database, peewee.SqliteDatabase):
        cfg.database.close()


@pytest.fixture
def worker(config: tinydj.Config) -> tinydj.Worker:
    return tinydj.Worker(config=config)


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Each test starts with no @every tasks registered (sample_jobs defines one)."""
    from tinydj import tasks

    saved = dict(tasks._recurring)
    tasks._recurring.clear()
    yield
    tasks._recurring.clear()
    tasks._recurring.update(saved)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts itself (appended to this list); those
    still running at teardown are killed, and all are reaped."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """The ``tinydj`` subprocesses of one test (see ``proc_helpers.Processes``);
    whatever is still running at teardown is killed."""
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.cleanup()
