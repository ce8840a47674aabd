"""Rows written by other programs (issue 8, item 2): whatever a row holds, it
never ends a runner thread. A row that cannot be read fails on its own with a
``last_error`` naming the column; the rest of its batch runs; times in other
ISO 8601 forms are read (and, on SQLite, compared) as UTC."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sample_jobs
from conftest import START

import tinydj
from tinydj import rows, serialize
from tinydj.testing import FakeClock

GOOD = serialize.dump_call(sample_jobs.record, ("good",), {})
_COLUMNS = (
    "priority, attempts, handler, run_at, queue, reoccur_in, locked_at, locked_by, "
    "interruptions, created_at, updated_at"
)
#: A time tinydj writes itself on SQLite (naive UTC, one fixed text form).
T0 = (START - timedelta(minutes=1)).isoformat(" ", "microseconds")


def _raw_insert(cfg: tinydj.Config, **values: Any) -> int:
    """Insert one row the way another program would (plain SQL, its own values)."""
    row: dict[str, Any] = {
        "priority": 0,
        "attempts": 0,
        "handler": GOOD,
        "run_at": T0,
        "queue": "default",
        "reoccur_in": None,
        "locked_at": None,
        "locked_by": None,
        "interruptions": 0,
        "created_at": T0,
        "updated_at": T0,
    }
    row.update(values)
    cfg.store.ensure_schema()
    marks = ", ".join(["?"] * len(row))
    sql = f"INSERT INTO delayed_jobs ({_COLUMNS}) VALUES ({marks})"
    returning = cfg.store.dialect.name == "postgresql"
    params = [row[c.strip()] for c in _COLUMNS.split(",")]
    cursor = cfg.database.execute_sql(cfg.store._q(sql + " RETURNING id" * returning), params)
    return int(cursor.fetchone()[0] if returning else cursor.lastrowid)


@pytest.fixture
def lite(sqlite_url: str) -> Any:
    sample_jobs.reset()
    cfg = tinydj.configure(sqlite_url, clock=FakeClock(START))
    yield cfg
    cfg.store.close()


UNREADABLE = [
    ("handler", {"handler": "tinydj: 1\nfunction: sample_jobs:r\xe9cord\n".encode("latin-1")}),
    ("run_at", {"run_at": ""}),
    ("run_at", {"run_at": 1764579600}),
    ("priority", {"priority": "high"}),
    ("priority", {"priority": b"\xff"}),
    ("attempts", {"attempts": "x"}),
    ("attempts", {"attempts": 1.5}),
    ("interruptions", {"interruptions": "none"}),
    ("queue", {"queue": b"caf\xe9"}),
    ("reoccur_in", {"reoccur_in": "banana"}),
    ("reoccur_in", {"reoccur_in": b"\x80"}),
    ("created_at", {"created_at": "yesterday"}),
]


@pytest.mark.parametrize(("column", "values"), UNREADABLE, ids=lambda v: repr(v)[:40])
def test_an_unreadable_row_fails_on_its_own_and_its_batch_runs(
    lite: tinydj.Config, column: str, values: dict[str, Any]
) -> None:
    before = _raw_insert(lite)
    bad = _raw_insert(lite, **values)
    after = _raw_insert(lite)
    worker = tinydj.Worker(config=lite, batch_size=10)
    assert worker.work_off(10) == (2, 0)
    assert sample_jobs.calls == [(("good",), {})] * 2
    assert tinydj.get_job(before) is None and tinydj.get_job(after) is None
    row = tinydj.get_job(bad)
    assert row is not None
    assert row.failed_at == START and row.locked_by is None
    assert f"column {column} " in (row.last_error or ""), row.last_error
    # Nothing is left to run, and a second worker does not trip over it either.
    assert tinydj.Worker(config=lite).work_off(10) == (0, 0)


def test_a_handler_bound_as_bytes_runs(lite: tinydj.Config) -> None:
    job_id = _raw_insert(lite, handler=GOOD.encode())
    assert tinydj.Worker(config=lite).work_off(5) == (1, 0)
    assert sample_jobs.calls == [(("good",), {})]
    assert tinydj.get_job(job_id) is None


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2030-01-01T11:00:00.000Z", datetime(2030, 1, 1, 11)),
        ("2030-01-01T13:30:00+02:00", datetime(2030, 1, 1, 11, 30)),
        ("2030-01-01 11:59:59.5", datetime(2030, 1, 1, 11, 59, 59, 500000)),
        ("2030-01-01T11:59:59.123456789Z", datetime(2030, 1, 1, 11, 59, 59, 123000)),
        ("2030-01-01T10:00:00-01:30", datetime(2030, 1, 1, 11, 30)),
    ],
)
def test_iso_times_of_other_programs_are_due_in_utc(
    lite: tinydj.Config, text: str, utc: datetime
) -> None:
    job_id = _raw_insert(lite, run_at=text)
    job = tinydj.get_job(job_id)
    assert job is not None and abs(job.run_at - utc) < timedelta(milliseconds=1)
    assert tinydj.Worker(config=lite).work_off(5) == (1, 0)


@pytest.mark.parametrize(
    "text", ["2030-01-01T12:30:00-05:00", "2030-01-01T12:00:01Z", "2030-01-02T00:00:00+11:00"]
)
def test_iso_times_of_other_programs_that_are_not_due_wait(lite: tinydj.Config, text: str) -> None:
    """12:30 at UTC-5 is 17:30 UTC; 'T' sorts after ' ', so without the
    conversion a same-day text comparison would be wrong in one direction or
    the other."""
    job_id = _raw_insert(lite, run_at=text)
    assert tinydj.Worker(config=lite).work_off(5) == (0, 0)
    job = tinydj.get_job(job_id)
    assert job is not None and job.run_at > START and job.failed_at is None


def test_an_expired_lease_written_with_t_and_z_is_taken_over(lite: tinydj.Config) -> None:
    """locked_at one hour ago, as ``toISOString()`` writes it: the lease has
    expired (lock_timeout 30 s), so a worker takes the job over."""
    job_id = _raw_insert(lite, locked_at="2030-01-01T11:00:00.000Z", locked_by="node-1")
    assert tinydj.Worker(config=lite, lock_timeout=30).work_off(5) == (1, 0)
    assert tinydj.get_job(job_id) is None


def test_a_fresh_lease_written_with_an_offset_is_respected(lite: tinydj.Config) -> None:
    """14:59:50 at +03:00 is 11:59:50 UTC: held 10 s ago, not expired."""
    _raw_insert(lite, locked_at="2030-01-01T14:59:50+03:00", locked_by="node-1")
    assert tinydj.Worker(config=lite, lock_timeout=30).work_off(5) == (0, 0)


def test_listing_shows_unreadable_rows_without_raising(lite: tinydj.Config) -> None:
    job_id = _raw_insert(lite, run_at="", handler=b"\xff\xfe", priority="p")
    (job,) = tinydj.list_jobs()
    assert job.id == job_id and job.handler == "\ufffd\ufffd" and job.priority == 0
    assert tinydj.stats()["ready"] == 1


def test_the_error_names_the_column_and_a_shortened_value() -> None:
    row = [7, 0, 0, "x" * 5000, None, "not a time " * 40, None, None, None, None, None]
    row += ["2030-01-01 00:00:00", "2030-01-01 00:00:00", "default", None, 0, None]
    with pytest.raises(rows.UnreadableRow) as caught:
        rows.read(row)
    message = caught.value.message
    assert "column run_at holds 'not a time not a time" in message
    assert len(message) < 200


def test_well_formed_rows_of_every_database_are_read(config: tinydj.Config) -> None:
    """The same rows on each database: readable rows run; a bad interval and a
    priority out of tinydj's range fail only their own row."""
    now = config.clock()
    t = config.store._t(now - timedelta(seconds=5))
    good = _raw_insert(config, run_at=t, created_at=t, updated_at=t)
    bad = _raw_insert(config, run_at=t, created_at=t, updated_at=t, reoccur_in="every tuesday")
    assert tinydj.Worker(config=config).work_off(5) == (1, 0)
    assert tinydj.get_job(good) is None
    row = tinydj.get_job(bad)
    assert row is not None and row.failed and "column reoccur_in" in (row.last_error or "")


def test_assemble_makes_the_same_frozen_job_as_its_constructor() -> None:
    import dataclasses

    from tinydj.job import Job, assemble

    when = datetime(2030, 1, 1)
    values = (1, 0, 2, "h", "err", when, None, "w", None, "1h", when, when, when, "q", "k", 1, "c")
    made = assemble(*values)
    assert made == Job(*values) and hash(made) == hash(Job(*values))
    assert repr(made) == repr(Job(*values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.attempts = 3  # type: ignore[misc]
    assert type(made) is Job and dataclasses.astuple(made) == values
    with pytest.raises(TypeError):
        assemble(*values[:-1])  # every field must be given


def test_rows_reserved_together_share_their_times_correctly() -> None:
    from tinydj.job import RESERVED_COLUMNS
    from tinydj.rows import read_reserved

    def row(job_id: int, run_at: bytes, created_at: bytes) -> tuple[object, ...]:
        values = {"id": job_id, "priority": 0, "attempts": 0, "handler": b"h", "queue": b"q"}
        values |= {"run_at": run_at, "created_at": created_at, "updated_at": created_at}
        values |= {"interruptions": 0}
        return tuple(values.get(c) for c in RESERVED_COLUMNS)

    now = datetime(2030, 1, 2)
    first = read_reserved(row(1, b"2030-01-01 10:00:00", b"2030-01-01 10:00:00"), "w", now)
    second = read_reserved(row(2, b"2030-01-01 10:00:00", b"2029-12-31 09:00:00.5"), "w", now)
    third = read_reserved(row(3, b"2030-01-01T10:00:00Z", b"2030-01-01 11:00:00+01:00"), "w", now)
    assert first.run_at == first.created_at == first.updated_at == datetime(2030, 1, 1, 10)
    assert second.run_at == datetime(2030, 1, 1, 10)
    assert second.created_at == second.updated_at == datetime(2029, 12, 31, 9, 0, 0, 500000)
    assert third.run_at == third.created_at == datetime(2030, 1, 1, 10)
