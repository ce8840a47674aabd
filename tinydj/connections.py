"""Enqueue through a connection the application already holds.

``tinydj.using(conn)`` makes every tinydj call inside the block (``send_later``,
``enqueue``, ``get_job``...) run on the application's own connection, inside
its open transaction: a job enqueued there exists if and only if that
transaction commits, and no second connection competes for the database (on
SQLite, that would wait for the application's write lock). ``conn`` may be a
SQLAlchemy ``Session`` (also ``scoped_session``) or ``Connection``, a DB-API
connection (``sqlite3``, psycopg 2 or 3, PyMySQL), or a Django connection::

    with Session(engine) as session, session.begin():
        session.add(order)
        with tinydj.using(session):
            send_receipt.send_later(order.id)

How it works: a small ``peewee.Database`` subclass hands tinydj's ``Store`` the
application's DB-API connection for each statement, reports the application's
transaction as its own, runs tinydj's short transactions as savepoints of the
application (``Session.begin_nested()``, ``transaction.atomic()``), and wakes
the workers of this process after the application commits. Workers still use
a connection of their own (``tinydj work --database URL`` on the same
database).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import sqlite3
import threading
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol

import peewee

from .config import Config, get_config, overriding
from .errors import ConfigurationError
from .redact import mask
from .store import Store

__all__ = ["Source", "borrowed_store", "source_for", "sqlalchemy_url", "using"]


class Source(Protocol):
    """A connection the application holds, as tinydj needs to see it."""

    #: ``"sqlite"``, ``"postgresql"`` or ``"mysql"``.
    vendor: str
    #: Identifies the database: connections with equal keys share one Store.
    key: Hashable

    def raw(self) -> Any:
        """The DB-API connection to run the next statement on."""

    def in_transaction(self) -> bool:
        """True while statements are part of a transaction the application ends."""

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the application's transaction commits."""

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        """A nested transaction (savepoint) of the application's transaction."""


# -- the peewee database -----------------------------------------------------------


class _Borrowed:
    """Mixin: a peewee database whose connection is the application's."""

    server_version: Any

    def _setup(self, current: Callable[[], Source]) -> None:
        self._current = current

    def _source(self) -> Source:
        return self._current()

    def connect(self, reuse_if_open: bool = False) -> bool:
        return False  # the application opens and closes its connection

    def close(self) -> bool:
        return False

    def is_closed(self) -> bool:
        # "Closed" from peewee's point of view: it never opens, closes or
        # loads functions into this connection (the application owns it).
        return True

    def _connect(self) -> Any:
        raise ConfigurationError(
            "tinydj.using() borrows the application's connection and cannot open another: "
            "run workers with a database URL (tinydj work --database URL)"
        )

    def connection(self) -> Any:
        raw = self._source().raw()
        if self.server_version is None:
            self._set_server_version(raw)  # type: ignore[attr-defined]
        return raw

    def cursor(self, named_cursor: Any = None) -> Any:
        return self.connection().cursor()

    def in_transaction(self) -> bool:
        return self._source().in_transaction()

    def transaction_depth(self) -> int:
        return int(self.in_transaction())

    def after_commit(self, fn: Any) -> Any:
        source = self._source()
        if source.in_transaction():
            source.on_commit(fn)
        else:
            fn()
        return fn

    def atomic(self, *args: Any, **kwargs: Any) -> Any:
        return self._source().atomic()


class _BorrowedSqlite(_Borrowed, peewee.SqliteDatabase):
    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if sql.startswith("PRAGMA journal_mode") and self.in_transaction():
            # SQLite refuses to switch to WAL inside a transaction; the first
            # worker switches the file on its own connection.
            return self.cursor()
        return super().execute_sql(sql, params)  # type: ignore[no-untyped-call]


class _BorrowedPostgres(_Borrowed, peewee.PostgresqlDatabase):
    def _set_server_version(self, conn: Any) -> None:
        info = getattr(conn, "info", None)
        self.server_version = getattr(info, "server_version", None) or conn.server_version


class _BorrowedMySQL(_Borrowed, peewee.MySQLDatabase):
    pass


_CLASSES: dict[str, type[peewee.Database]] = {
    "sqlite": _BorrowedSqlite,
    "postgresql": _BorrowedPostgres,
    "mysql": _BorrowedMySQL,
}


def borrowed_database(vendor: str, current: Callable[[], Source]) -> peewee.Database:
    """A peewee database running on ``current()``'s connection."""
    cls = _CLASSES.get(vendor)
    if cls is None:
        raise ConfigurationError(f"tinydj does not support {vendor} databases")
    db = cls(None)
    db._setup(current)  # type: ignore[attr-defined]
    return db


_stores: dict[Hashable, Store] = {}
_stores_lock = threading.Lock()
_active: ContextVar[Source | None] = ContextVar("tinydj_source", default=None)


def _active_source() -> Source:
    source = _active.get()
    if source is None:
        raise ConfigurationError("this tinydj configuration is only usable inside tinydj.using()")
    return source


def borrowed_store(source: Source, current: Callable[[], Source] | None = None) -> Store:
    """The Store of ``source``'s database (one per ``source.key``)."""
    store = _stores.get(source.key)
    if store is None:
        with _stores_lock:
            store = _stores.get(source.key)
            if store is None:
                db = borrowed_database(source.vendor, current or _active_source)
                store = _stores[source.key] = Store(db)
    return store


def _check_schema(store: Store) -> None:
    """Take an existing table as ready.

    Store.ensure_schema() would otherwise redo its checks at every enqueue:
    inside the application's transaction it cannot know whether the table it
    created will be committed (and on Postgres recreating the NOTIFY trigger
    locks the table). A catalog query is harmless inside any transaction.
    """
    if not store.schema_ready and store.db.table_exists("delayed_jobs"):
        store.schema_ready = True


def config_for(store: Store, base: Config | None = None) -> Config:
    """``base`` (default: the current configuration) with ``store`` in it."""
    return dataclasses.replace(base or get_config(), database=store.db, store=store, url=None)


@contextlib.contextmanager
def using(connection: Any) -> Iterator[Config]:
    """Run tinydj calls inside the block on ``connection`` (see the module doc).

    >>> with tinydj.using(session):  # doctest: +SKIP
    ...     send_receipt.send_later(order.id)
    """
    source = source_for(connection)
    base = get_config()
    token = _active.set(source)
    try:
        store = borrowed_store(source)
        _check_schema(store)
        with overriding(config_for(store, base)) as config:
            yield config
    finally:
        _active.reset(token)


#: SQLAlchemy's dialect+driver for each tinydj scheme: the first driver
#: installed, in the order tinydj's own connections prefer them.
_SQLALCHEMY_DRIVERS = {
    "postgresql": (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")),
    "postgres": (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")),
    "mysql": (("pymysql", "mysql+pymysql"), ("MySQLdb", "mysql+mysqldb")),
    "mariadb": (("pymysql", "mysql+pymysql"), ("MySQLdb", "mysql+mysqldb")),
}


def sqlalchemy_url(url: str | None = None) -> str:
    """The SQLAlchemy URL of a tinydj database URL (default: the configured one).

    An application that keeps its own data through SQLAlchemy and its jobs
    through tinydj on the same database writes one URL:
    ``create_engine(tinydj.sqlalchemy_url(url))`` names the driver tinydj
    uses (psycopg 2 or 3, PyMySQL or mysqlclient, whichever is installed);
    a bare SQLite path becomes ``sqlite:///path``.
    """
    if url is None:
        url = get_config().url
        if url is None:
            raise ConfigurationError(
                "tinydj is configured with a peewee Database, not a URL: pass the URL"
            )
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "sqlite:///" + url  # a bare path is an SQLite file, as for configure()
    drivers = _SQLALCHEMY_DRIVERS.get(scheme.lower())
    if drivers is None:
        if scheme.lower() == "sqlite":
            return url
        raise ConfigurationError(f"not a tinydj database URL: {mask(url)!r}")
    for module, dialect in drivers:
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    return f"{drivers[0][1]}://{rest}"  # SQLAlchemy names the missing driver


# -- sources -------------------------------------------------------------------------


def source_for(connection: Any) -> Source:
    """A ``Source`` for a SQLAlchemy, Django or DB-API connection."""
    module = type(connection).__module__.split(".", 1)[0]
    if module == "sqlalchemy":
        return _SQLAlchemySource(connection)
    if module == "django" or hasattr(connection, "in_atomic_block"):
        from .contrib.django.connection import DjangoSource

        return DjangoSource(connection.alias)
    if hasattr(connection, "cursor") and hasattr(connection, "commit"):
        return _DBAPISource(connection)
    raise TypeError(
        "tinydj.using() needs a SQLAlchemy Session or Connection, a Django connection "
        f"or a DB-API connection, not {type(connection).__name__}"
    )


def vendor_of(dbapi_connection: Any) -> str:
    """``sqlite``/``postgresql``/``mysql`` from a DB-API connection's type."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        return "sqlite"
    module = type(dbapi_connection).__module__.split(".", 1)[0]
    if module.startswith("psycopg"):
        return "postgresql"
    if module in ("pymysql", "MySQLdb"):
        return "mysql"
    raise TypeError(f"tinydj does not support {module} connections")


def _begin_if_idle(raw: Any) -> None:
    """Open the transaction that sqlite3 (legacy mode) would open only at the
    first INSERT, so that a savepoint taken first does not commit on release."""
    if (
        isinstance(raw, sqlite3.Connection)
        and not raw.in_transaction
        and raw.isolation_level is not None
        and getattr(raw, "autocommit", -1) is not True
    ):
        raw.execute("BEGIN")


@contextlib.contextmanager
def sql_savepoint(raw: Any, in_transaction: bool) -> Iterator[None]:
    """A savepoint inside an open transaction, else a transaction, in plain SQL."""
    cursor = raw.cursor()
    if not in_transaction:
        cursor.execute("BEGIN")
        try:
            yield
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        return
    _begin_if_idle(raw)
    name = f"tinydj_{uuid.uuid4().hex[:12]}"
    cursor.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
        cursor.execute(f"RELEASE SAVEPOINT {name}")
        raise
    cursor.execute(f"RELEASE SAVEPOINT {name}")


class _DBAPISource:
    """A bare DB-API connection: the application commits it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.vendor = vendor_of(conn)
        self.key: Hashable = ("dbapi", self.vendor, id(conn))

    def raw(self) -> Any:
        return self.conn

    def in_transaction(self) -> bool:
        conn = self.conn
        if isinstance(conn, sqlite3.Connection):
            autocommit = getattr(conn, "autocommit", -1)
            if autocommit is True or autocommit is False:
                return not autocommit
            return conn.in_transaction or conn.isolation_level is not None
        autocommit = (
            conn.get_autocommit() if callable(getattr(conn, "get_autocommit", None)) else None
        )
        if autocommit is None:
            autocommit = getattr(conn, "autocommit", False)
        return not autocommit

    def on_commit(self, fn: Callable[[], None]) -> None:
        fn()  # a bare connection has no hook: an early wake-up only costs one look

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        return sql_savepoint(self.conn, self.in_transaction())


class _SQLAlchemySource:
    """A SQLAlchemy 2 ``Session`` / ``scoped_session`` / ``Connection``."""

    def __init__(self, obj: Any) -> None:
        from sqlalchemy.orm import Session, scoped_session

        if isinstance(obj, scoped_session):
            obj = obj()
        self.obj = obj
        self.is_session = isinstance(obj, Session)
        bind = obj.get_bind() if self.is_session else obj.engine
        dialect = bind.dialect.name
        self.vendor = {"postgres": "postgresql", "mariadb": "mysql"}.get(dialect, dialect)
        self.key: Hashable = ("sqlalchemy", bind.url.render_as_string(hide_password=True), id(bind))

    def raw(self) -> Any:
        connection = self.obj.connection() if self.is_session else self.obj
        if not connection.in_transaction():
            connection.begin()  # SQLAlchemy 2 autobegins too; be explicit
        raw = connection.connection.dbapi_connection
        _begin_if_idle(raw)
        return raw

    def in_transaction(self) -> bool:
        return True  # after raw(), the Session/Connection always holds one

    def on_commit(self, fn: Callable[[], None]) -> None:
        from sqlalchemy import event

        if self.is_session:
            event.listen(self.obj, "after_commit", lambda session: fn(), once=True)
        else:
            event.listen(self.obj, "commit", lambda conn: fn(), once=True)

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        self.raw()
        nested: contextlib.AbstractContextManager[Any] = self.obj.begin_nested()
        return nested
