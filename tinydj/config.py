"""Where jobs live: ``configure()`` and the defaults, documented in one place.

The environment is read only here, and only when ``configure()`` is called
without a database (or when tinydj is first used without ``configure()``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import urlparse

import peewee

from .errors import ConfigurationError
from .redact import mask
from .schedule import Clock, utcnow
from .store import Store

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_SQLITE_FILE",
    "ENV_DATABASE_URL",
    "Config",
    "Options",
    "configure",
    "get_config",
    "open_database",
    "overriding",
]

#: Environment variable read when ``configure()`` gets no database.
ENV_DATABASE_URL = "TINYDJ_DATABASE_URL"
#: SQLite file (in the current directory) used when nothing else is said.
DEFAULT_SQLITE_FILE = "tinydj.sqlite3"
#: A job that failed this many times gets ``failed_at`` and is kept.
DEFAULT_MAX_ATTEMPTS = 25
#: Seconds a SQLite connection waits for another writer before giving up
#: (tinydj then still retries, see ``store.SQLITE_BUSY_BUDGET``).
DEFAULT_SQLITE_BUSY_TIMEOUT = 10.0
#: SQLite ``synchronous`` level. NORMAL is durable across process crashes in WAL
#: mode; a power loss may forget the last commits. Use "FULL" to fsync each one.
DEFAULT_SQLITE_SYNCHRONOUS = "NORMAL"


class Options(TypedDict, total=False):
    """Keyword options of ``configure()``."""

    max_attempts: int
    allow_pickle: bool
    busy_timeout: float
    synchronous: str
    clock: Clock
    allowed_modules: Sequence[str] | None
    immediate: bool


@dataclass(frozen=True)
class Config:
    """The database tinydj uses and how (see ``configure``)."""

    database: peewee.Database
    store: Store
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    allow_pickle: bool = True
    url: str | None = None
    #: Source of "now" for enqueueing and (by default) for workers.
    clock: Clock = utcnow
    #: If set, workers load functions, classes and models only from these
    #: modules (and their submodules).
    allowed_modules: tuple[str, ...] | None = None
    #: Run jobs at once in the caller instead of storing them (for tests).
    immediate: bool = False

    def __repr__(self) -> str:
        url = mask(self.url) if self.url else None
        return (
            f"Config(url={url!r}, database={type(self.database).__name__}"
            f"({mask(repr(self.database.database))}), max_attempts={self.max_attempts}, "
            f"allow_pickle={self.allow_pickle}, allowed_modules={self.allowed_modules!r})"
        )


_lock = threading.Lock()
_current: Config | None = None
#: A configuration that replaces the current one in this context (``tinydj.using``).
_override: contextvars.ContextVar[Config | None] = contextvars.ContextVar(
    "tinydj_override", default=None
)

_DRIVERS = {
    "postgresql": (("psycopg2", "psycopg"), "pip install 'tinydj[postgres]'"),
    "mysql": (("pymysql", "MySQLdb"), "pip install 'tinydj[mysql]'"),
}


def _check_driver(kind: str) -> None:
    modules, command = _DRIVERS[kind]
    if not any(importlib.util.find_spec(m) for m in modules):
        raise ConfigurationError(
            f"{kind} needs a database driver ({' or '.join(modules)}): {command}"
        )


def open_database(
    url: str,
    *,
    busy_timeout: float = DEFAULT_SQLITE_BUSY_TIMEOUT,
    synchronous: str = DEFAULT_SQLITE_SYNCHRONOUS,
) -> peewee.Database:
    """Open a peewee database for a URL.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``,
    ``postgresql://user@host:5432/db`` (also ``postgres://``). A bare path is
    taken as an SQLite file.
    """
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and url[1:3] == ":\\"):
        return _sqlite(url, busy_timeout, synchronous)
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        return _sqlite(path or ":memory:", busy_timeout, synchronous)
    if scheme in ("postgres", "postgresql"):
        _check_driver("postgresql")
        from playhouse.db_url import parse

        params: dict[str, Any] = parse(url)
        name = params.pop("database")
        if not name:
            raise ConfigurationError(f"no database name in {mask(url)!r}")
        return peewee.PostgresqlDatabase(name, **params)
    if scheme in ("mysql", "mariadb"):
        _check_driver("mysql")
        from playhouse.db_url import parse

        params = parse(url.replace("mariadb://", "mysql://", 1))
        if "passwd" in params:  # PyMySQL deprecated the old name
            params["password"] = params.pop("passwd")
        name = params.pop("database")
        if not name:
            raise ConfigurationError(f"no database name in {mask(url)!r}")
        return peewee.MySQLDatabase(name, **params)
    raise ConfigurationError(
        f"unsupported database URL {mask(url)!r}: use sqlite:///path.db, postgresql://... or mysql://..."
    )


def _sqlite(path: str, busy_timeout: float, synchronous: str) -> peewee.SqliteDatabase:
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError(f"invalid SQLite synchronous level {synchronous!r}")
    if path == ":memory:":
        # One connection shared by every thread: a private in-memory database
        # per connection would hide the jobs from the worker threads.
        return peewee.SqliteDatabase(
            ":memory:", thread_safe=False, check_same_thread=False, timeout=busy_timeout
        )
    return peewee.SqliteDatabase(
        os.path.abspath(path),
        timeout=busy_timeout,
        pragmas={"journal_mode": "wal", "synchronous": synchronous.upper()},
    )


def configure(database: str | peewee.Database | None = None, **options: Any) -> Config:
    """Point tinydj at a database; return the new configuration.

    ``database`` is a URL (``sqlite:///jobs.db``, ``postgresql://...``) or the
    application's own ``peewee.Database``, so that enqueueing joins its
    transactions. Without one, ``$TINYDJ_DATABASE_URL`` is used, else the
    SQLite file ``tinydj.sqlite3`` in the current directory. May be called
    again to switch databases.

    Options: ``max_attempts`` (default 25), ``allow_pickle`` (default True;
    False refuses cloudpickle payloads when enqueueing and when running),
    ``allowed_modules`` (module names: workers then load functions, classes
    and models only from these and their submodules), ``clock`` (a function
    returning the current UTC datetime, for tests; see
    ``tinydj.testing.FakeClock``), ``immediate`` (run each job at once in the
    caller, for tests: see ``tinydj.immediate``), and for SQLite URLs
    ``busy_timeout`` (seconds) and ``synchronous``.

    >>> tinydj.configure("sqlite:///jobs.db")  # doctest: +SKIP
    """
    global _current
    max_attempts = _check_options(options)
    db, url = _open(database, options)
    config = Config(
        database=db,
        store=_store(db),
        max_attempts=max_attempts,
        allow_pickle=bool(options.get("allow_pickle", True)),
        url=url,
        clock=options.get("clock", utcnow),
        allowed_modules=_modules(options.get("allowed_modules")),
        immediate=bool(options.get("immediate", False)),
    )
    with _lock:
        _current = config
    return config


def _check_options(options: dict[str, Any]) -> int:
    """Refuse unknown options; the checked ``max_attempts``."""
    unknown = set(options) - set(Options.__annotations__)
    if unknown:
        raise TypeError(f"configure() got unknown option(s): {', '.join(sorted(unknown))}")
    max_attempts = options.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        raise ValueError(f"max_attempts must be a positive int, not {max_attempts!r}")
    return max_attempts


def _open(
    database: str | peewee.Database | None, options: dict[str, Any]
) -> tuple[peewee.Database, str | None]:
    """The database ``configure`` was given (or the default one), and its URL if it had one."""
    if database is None:
        database = os.environ.get(ENV_DATABASE_URL) or DEFAULT_SQLITE_FILE
    if isinstance(database, str):
        db = open_database(
            database,
            busy_timeout=float(options.get("busy_timeout", DEFAULT_SQLITE_BUSY_TIMEOUT)),
            synchronous=str(options.get("synchronous", DEFAULT_SQLITE_SYNCHRONOUS)),
        )
        return db, database
    if isinstance(database, peewee.Database):
        return database, None
    raise TypeError(f"database must be a URL or a peewee.Database, not {type(database).__name__}")


def _store(db: peewee.Database) -> Store:
    memory = isinstance(db, peewee.SqliteDatabase) and db.database == ":memory:"
    try:
        return Store(db, serialize=memory)
    except TypeError as exc:
        raise ConfigurationError(str(exc)) from None


def _modules(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(m, str) and m for m in value
    ):
        raise TypeError(f"allowed_modules must be a list of module names, not {value!r}")
    return tuple(value)


def get_config() -> Config:
    """The current configuration; configures the default on first use."""
    config = _override.get() or _current
    if config is None:
        with _lock:
            config = _current
        if config is None:
            config = configure()
    return config


@contextlib.contextmanager
def overriding(config: Config) -> Iterator[Config]:
    """Make ``get_config()`` return ``config`` inside the block (this thread/task only)."""
    token = _override.set(config)
    try:
        yield config
    finally:
        _override.reset(token)
