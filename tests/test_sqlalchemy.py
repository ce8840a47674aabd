"""tinydj.using(): enqueue through a SQLAlchemy Session/Connection or a DB-API connection.

A job enqueued inside the application's transaction exists if and only if that
transaction commits; savepoints roll back only their own jobs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import sample_jobs

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import Integer, String, create_engine, select  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

import tinydj  # noqa: E402


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "sa_orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32))


@pytest.fixture
def engine(db_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = create_engine(tinydj.sqlalchemy_url(db_url))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    tinydj.configure(db_url)  # the worker's own connection
    tinydj.create_tables()
    sample_jobs.reset()
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()
    tinydj.get_config().store.close()
    tinydj.get_config().database.close()


def handlers() -> list[str]:
    return [j.handler for j in tinydj.list_jobs()]


def test_session_commit_keeps_the_job(engine: sqlalchemy.Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(Order(number="A-1"))
        with tinydj.using(session):
            job = sample_jobs.record.send_later("A-1")
            assert tinydj.get_job(job.id) is not None  # visible inside the transaction
    assert tinydj.Worker().work_off() == (1, 0)
    assert sample_jobs.calls == [(("A-1",), {})]


def test_session_rollback_removes_the_job(engine: sqlalchemy.Engine) -> None:
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.add(Order(number="B-2"))
        with tinydj.using(session):
            sample_jobs.record.send_later("B-2")
            tinydj.enqueue(sample_jobs.Report("B-2"))
        raise RuntimeError("the order failed")
    with Session(engine) as session:
        assert session.scalars(select(Order)).all() == []
    assert handlers() == []


def test_session_savepoint_rolls_back_only_its_jobs(engine: sqlalchemy.Engine) -> None:
    with Session(engine) as session, session.begin():
        with tinydj.using(session):
            sample_jobs.record.send_later("kept")
            with pytest.raises(ValueError), session.begin_nested():
                sample_jobs.record.send_later("dropped")
                raise ValueError
            sample_jobs.record.send_later_many([("many-1",), ("many-2",)])
    assert [("kept" in h, "many" in h) for h in handlers()] == [
        (True, False),
        (False, True),
        (False, True),
    ]


def test_savepoint_first_then_outer_rollback(engine: sqlalchemy.Engine) -> None:
    # A savepoint taken before any other statement must not commit on release.
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        with tinydj.using(session):
            sample_jobs.record.send_later_many([("a",), ("b",)])
        raise RuntimeError
    assert handlers() == []


def test_connection_commit_and_rollback(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as conn:
        with tinydj.using(conn):
            sample_jobs.record.send_later("rolled back")
        conn.rollback()
        with tinydj.using(conn):
            sample_jobs.record.send_later("committed")
        conn.commit()
    assert ["committed" in h for h in handlers()] == [True]


def test_worker_in_this_process_wakes_after_commit(engine: sqlalchemy.Engine) -> None:
    woken: list[int] = []
    store = None
    with Session(engine) as session, session.begin():
        with tinydj.using(session) as config:
            store = config.store
            store.add_listener(lambda: woken.append(1))
            sample_jobs.record.send_later("x")
        assert woken == []  # not before the commit
    assert woken == [1]
    store.remove_listener(store.doorbell._callbacks[0])


def test_using_a_bare_sqlite3_connection(sqlite_url: str) -> None:
    tinydj.configure(sqlite_url)
    tinydj.create_tables()
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        with tinydj.using(conn):
            sample_jobs.record.send_later("gone")
        conn.rollback()
        with tinydj.using(conn):
            sample_jobs.record.send_later("kept")
        conn.commit()
    finally:
        conn.close()
    assert ["kept" in h for h in handlers()] == [True]


def test_using_outside_the_block_is_an_error(engine: sqlalchemy.Engine) -> None:
    with Session(engine) as session, tinydj.using(session) as config:
        pass
    with pytest.raises(tinydj.ConfigurationError, match=r"tinydj\.using"):
        config.store.get(1)


def test_using_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"), tinydj.using(42):
        pass


def test_sqlalchemy_url_names_the_driver_tinydj_uses() -> None:
    assert tinydj.sqlalchemy_url("postgresql://u:p@h:5432/db") == (
        "postgresql+psycopg2://u:p@h:5432/db"
    )
    assert tinydj.sqlalchemy_url("postgres://h/db") == "postgresql+psycopg2://h/db"
    assert tinydj.sqlalchemy_url("mysql://root@h:3306/test") == "mysql+pymysql://root@h:3306/test"
    assert tinydj.sqlalchemy_url("mariadb://root@h/test") == "mysql+pymysql://root@h/test"
    assert tinydj.sqlalchemy_url("sqlite:///jobs.db") == "sqlite:///jobs.db"
    assert tinydj.sqlalchemy_url("sqlite:////abs/jobs.db") == "sqlite:////abs/jobs.db"
    assert tinydj.sqlalchemy_url("jobs.db") == "sqlite:///jobs.db"
    assert tinydj.sqlalchemy_url("/abs/jobs.db") == "sqlite:////abs/jobs.db"


def test_sqlalchemy_url_takes_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    missing = {"psycopg2", "pymysql"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    if real("psycopg") is not None:
        assert tinydj.sqlalchemy_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    missing.add("psycopg")
    assert tinydj.sqlalchemy_url("postgresql://h/db") == "postgresql+psycopg2://h/db"
    missing.add("MySQLdb")
    assert tinydj.sqlalchemy_url("mysql://h/db") == "mysql+pymysql://h/db"


def test_sqlalchemy_url_defaults_to_the_configured_database(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    tinydj.configure(url)
    assert tinydj.sqlalchemy_url() == url
    with create_engine(tinydj.sqlalchemy_url()).connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def test_sqlalchemy_url_refuses_what_it_cannot_spell(tmp_path: Any) -> None:
    import peewee

    tinydj.configure(peewee.SqliteDatabase(str(tmp_path / "jobs.db")))
    with pytest.raises(tinydj.ConfigurationError, match="peewee Database"):
        tinydj.sqlalchemy_url()
    with pytest.raises(tinydj.ConfigurationError) as err:
        tinydj.sqlalchemy_url("oracle://scott:tiger@h/db")
    assert "tiger" not in str(err.value)
