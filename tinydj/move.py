"""Moving jobs to another database (SQLite to PostgreSQL, say): ``move_jobs``.

Every waiting, scheduled, failed and recurring job of the source's
``delayed_jobs`` is copied into the target's (created there if missing) and
deleted from the source, batch by batch, so that no job is lost or doubled
even if the mover is killed at any point, while workers on both sides run:

1. **claim** (source transaction): up to ``batch`` rows that no live worker
   holds get ``locked_by = "tinydj-move:<run id>"`` and a ``locked_at`` far in
   the future. No worker takes them any more, and nobody reclaims them as
   expired. Rows held by live workers are left alone (moved by a later pass,
   once their run ended and the row is still there). A row whose holder died
   (lease older than ``lock_timeout``) is claimed with its interruption
   recorded, as a worker taking it over would.
2. **copy** (one target transaction): the claimed rows are inserted with new
   ids and every column but the lock kept, together with one row per job in
   the journal table ``tinydj_moves (move_id, source_id, target_id, ...)``,
   whose primary key makes a second copy of a source row impossible. A
   recurring row whose key the target already has (a target worker upserted
   its ``@every`` row) is not copied: the target's row is kept.
3. **delete** (source transaction): the journaled rows are deleted.

A mover that died leaves claimed rows; the next run (any run id) finishes them
first: those in the journal are only deleted, the others copied. Until then
they stay claimed: no worker of the source runs them, so the job runs exactly
once, on whichever side holds it unclaimed.

One pass moves the rows that existed when it started (ids up to the highest
one then). ``until_empty`` repeats passes until the source holds no job at
all, waiting for running jobs to end (``poll_interval``).

What the user must stop: nothing, for correctness. Workers of both sides may
run throughout; each job runs on one side only. In practice:

- running jobs stay in the source; a one-off job that finishes is gone, one
  that will be retried (and a recurring row after its run) is moved by the
  next pass: run ``tinydj move`` again, or use ``until_empty``;
- jobs enqueued in the source while moving are left for the next pass
  ("newer"), or moved by ``until_empty``: point the application at the
  target first, then move;
- a source worker that starts (again) upserts its ``@every`` rows into the
  source: stop or repoint the source's workers once the move is done (a later
  move keeps the target's row of each key);
- do not retry, delete or clear the source's jobs while they are moved: a job
  deleted there after its copy lives on in the target, and one retried by a
  retry that ignores locks (the dashboard's) is then in both databases; the
  mover reports those ("doubled") and leaves them in the source.

The journal stays in the target after the move (an audit trail from source
ids to target ids); drop ``tinydj_moves`` when it is no longer wanted.

All of this module's SQL is here, run through each side's ``Store``.

>>> report = move_jobs(Store(open_database(src)), Store(open_database(dst)))  # doctest: +SKIP
>>> report.moved
{'ready': 98000, 'scheduled': 1000, 'failed': 990, 'recurring': 10}
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import peewee

from .job import COLUMNS
from .limits import copy_limits
from .models import TABLE
from .redact import mask
from .schedule import Clock, to_naive_utc, utcnow
from .sql import MYSQL, POSTGRES, SQLITE
from .store import Store

__all__ = [
    "DEFAULT_BATCH",
    "JOURNAL",
    "MARKER_PREFIX",
    "STATES",
    "MoveReport",
    "format_report",
    "move_jobs",
]

log = logging.getLogger(__name__)

#: Rows moved per transaction.
DEFAULT_BATCH = 1000
#: The target's table of moved rows: one per job, kept after the move.
JOURNAL = "tinydj_moves"
#: ``locked_by`` of a row claimed by a mover: this prefix and the run's id.
MARKER_PREFIX = "tinydj-move:"
#: What a claimed row is counted as in the report, in this order.
STATES = ("ready", "scheduled", "failed", "recurring")

# Beyond any lease: a claimed row never looks expired to a worker.
_FOREVER = datetime(9999, 1, 1)
_PG_LOCK = 7_402_159
_CHUNK = 500
_DATETIME = {SQLITE.name: "DATETIME", POSTGRES.name: "TIMESTAMP", MYSQL.name: "DATETIME(6)"}
# Every column of the table but ``id`` (new rows get new ids) and the lock
# (``locked_at``/``locked_by`` are cleared), copied as they are, in this order.
_COPIED = tuple(c for c in COLUMNS if c not in ("id", "locked_at", "locked_by"))
_TIMES = frozenset(i for i, c in enumerate(_COPIED) if c.endswith("_at"))
_SELECT = "id, " + ", ".join(f'"{c}"' for c in _COPIED)
_INSERT = f"INSERT INTO {TABLE} (" + ", ".join(f'"{c}"' for c in _COPIED) + ") VALUES "
_ROW = "(" + ", ".join(["?"] * len(_COPIED)) + ")"
_KEY = _COPIED.index("key")
_COPY_TRIES = 5

#: ``progress(step, rows)``: called after each committed step.
Progress = Callable[[str, int], None]


@dataclass
class MoveReport:
    """What ``move_jobs`` did."""

    #: Jobs copied and deleted from the source, by state (see ``STATES``).
    moved: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    #: Recurring rows not copied because the target had their key (its row kept).
    kept_target: int = 0
    #: Of the moved jobs, those an interrupted earlier move had claimed.
    resumed: int = 0
    #: Jobs left in the source because a live worker was running them.
    running: int = 0
    #: Jobs left in the source because they were enqueued after the pass began.
    newer: int = 0
    #: Source ids of copied jobs that someone unlocked in the source before
    #: the mover deleted them (a retry that ignores locks): on both sides now.
    doubled: list[int] = field(default_factory=list)
    #: Transactions committed on the target.
    batches: int = 0
    #: Wall-clock seconds the move took.
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Jobs copied into the target (or kept on its side: same key)."""
        return sum(self.moved.values())


# -- the journal table ------------------------------------------------------------


_ready: weakref.WeakSet[Store] = weakref.WeakSet()
_ready_lock = threading.Lock()


def _journal_ddl(store: Store) -> str:
    ts = _DATETIME[store.dialect.name]
    return (
        f"CREATE TABLE IF NOT EXISTS {JOURNAL} ("
        "move_id VARCHAR(64) NOT NULL, source_id BIGINT NOT NULL, target_id BIGINT, "
        f"source VARCHAR(255) NOT NULL, moved_at {ts} NOT NULL, "
        "PRIMARY KEY (move_id, source_id))"
    )


def _ensure_journal(store: Store) -> None:
    if store in _ready:
        return
    with _ready_lock:
        store._run(lambda: _create_journal(store))
        _ready.add(store)


def _create_journal(store: Store) -> None:
    sql = _journal_ddl(store)
    if store.dialect is MYSQL:
        # DDL commits implicitly on MySQL: use a connection of its own.
        with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
            conn = store.db._connect()  # type: ignore[attr-defined]
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()
        return
    with store.db.atomic():
        if store.dialect is POSTGRES:
            store.query("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK,))
        store.query(sql)


# -- helpers ----------------------------------------------------------------------


def _in(n: int) -> str:
    return "(" + ", ".join(["?"] * n) + ")"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _state(row: Sequence[Any], now: datetime) -> str:
    """The report's state of a source row (``_SELECT`` order)."""
    if row[1 + _COPIED.index("failed_at")] is not None:
        return "failed"
    if row[1 + _COPIED.index("reoccur_in")] is not None:
        return "recurring"
    run_at = _dt(row[1 + _COPIED.index("run_at")])
    return "ready" if run_at is not None and run_at <= now else "scheduled"


def _interrupted(holder: str) -> str:
    return (
        f"Interrupted: worker {holder} stopped renewing its lease while running this job "
        "(it died or lost the database); running it again, not counted as an attempt."
    )


# -- the three steps ----------------------------------------------------------------


def _not_in(skip: Sequence[int]) -> str:
    return f" AND id NOT IN ({', '.join(str(int(i)) for i in skip)})" if skip else ""


def _claim(
    source: Store,
    marker: str,
    expired_before: datetime,
    upto: int | None,
    n: int,
    skip: Sequence[int],
) -> int:
    """Step 1: claim up to ``n`` rows no live worker holds; return how many.

    ``skip``: ids not to claim (jobs found on both sides, left to the user).
    """
    free = "(locked_at IS NULL OR locked_at < ?)"
    params: list[Any] = [source._t(expired_before)]
    where = free + _not_in(skip)
    if upto is not None:
        where += " AND id <= ?"
        params.append(upto)
    lock = "" if source.dialect is SQLITE else " FOR UPDATE SKIP LOCKED"
    pick = f"SELECT id, locked_by FROM {TABLE} WHERE {where} ORDER BY id LIMIT {int(n)}{lock}"
    forever = source._t(_FOREVER)

    def go() -> int:
        with source.connection.transaction():
            rows = source.query(pick, params).fetchall()
            for job_id, holder in rows:
                if holder is not None:  # its worker died: count the interruption
                    source.query(
                        f"UPDATE {TABLE} SET last_error = ?, interruptions = interruptions + 1 "
                        "WHERE id = ?",
                        (_interrupted(str(holder)), job_id),
                    )
            claimed = 0
            for part in _chunks([r[0] for r in rows]):
                claimed += source.query(
                    f"UPDATE {TABLE} SET locked_by = ?, locked_at = ? "
                    f"WHERE {free} AND id IN {_in(len(part))}",
                    (marker, forever, source._t(expired_before), *part),
                ).rowcount
            return int(claimed)

    return source._run(go)


def _markers(source: Store) -> list[str]:
    """The markers of rows claimed by earlier movers (a full scan, done once)."""
    sql = f"SELECT DISTINCT locked_by FROM {TABLE} WHERE locked_by LIKE ?"
    rows = source._run(lambda: source.query(sql, (MARKER_PREFIX + "%",)).fetchall())
    return sorted(str(r[0]) for r in rows)


def _claimed(source: Store, markers: Sequence[str], n: int) -> list[tuple[Any, ...]]:
    """Up to ``n`` rows claimed under these markers, lowest ids first."""
    sql = f"SELECT locked_by, {_SELECT} FROM {TABLE} WHERE locked_by = ? ORDER BY id LIMIT {int(n)}"
    for marker in markers:
        rows = source._run(lambda: source.query(sql, (marker,)).fetchall())  # noqa: B023
        if rows:
            return [tuple(r) for r in rows]
    return []


_steps: weakref.WeakKeyDictionary[Store, int | None] = weakref.WeakKeyDictionary()


def _mysql_step(target: Store) -> int | None:
    """The id increment of a multi-row INSERT, if its ids are consecutive.

    InnoDB hands a multi-row INSERT consecutive ids (``auto_increment_increment``
    apart) in the "traditional" and "consecutive" lock modes (0, 1: MariaDB's
    default), not in the "interleaved" one (2: MySQL 8's); then rows are
    inserted one at a time.
    """
    if target not in _steps:
        sql = "SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment"
        mode, step = target.query(sql).fetchone()
        _steps[target] = int(step) if int(mode) in (0, 1) else None
    return _steps[target]


def _insert_rows(target: Store, values: list[tuple[Any, ...]]) -> list[int]:
    """Insert rows (``_COPIED`` order, target's types); their new ids, in order."""
    ids: list[int] = []
    if not values:
        return ids
    if target.dialect is SQLITE:
        # Under the write lock rowids are handed out in sequence.
        cursor = target.db.cursor()
        with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
            cursor.executemany(target._q(_INSERT + _ROW), values)
        last = int(target.query("SELECT last_insert_rowid()").fetchone()[0])
        return list(range(last - len(values) + 1, last + 1))
    if target.dialect is MYSQL:
        step = _mysql_step(target)
        if step is None:
            return [int(target.query(_INSERT + _ROW, v).lastrowid) for v in values]
        for part in _chunks(values):
            flat = [v for row in part for v in row]
            first = int(target.query(_INSERT + ", ".join([_ROW] * len(part)), flat).lastrowid)
            ids.extend(range(first, first + step * len(part), step))
        return ids
    for part in _chunks(values, 1000):
        flat = [v for row in part for v in row]
        sql = _INSERT + ", ".join([_ROW] * len(part)) + " RETURNING id"
        ids.extend(int(r[0]) for r in target.query(sql, flat).fetchall())
    return ids


def _journaled(target: Store, rows: list[tuple[Any, ...]]) -> set[tuple[str, int]]:
    """The (move id, source id) of these rows that the journal holds."""
    done: set[tuple[str, int]] = set()
    for move_id in {r[0] for r in rows}:
        ids = [int(r[1]) for r in rows if r[0] == move_id]
        for part in _chunks(ids):
            found = target.query(
                f"SELECT source_id FROM {JOURNAL} WHERE move_id = ? "
                f"AND source_id IN {_in(len(part))}",
                (move_id, *part),
            ).fetchall()
            done.update((move_id, int(f[0])) for f in found)
    return done


def _copy(
    target: Store, rows: list[tuple[Any, ...]], marker: str, source_name: str, now: datetime
) -> tuple[int, int]:
    """Step 2: copy claimed rows and journal them in one target transaction.

    Returns (rows journaled now, recurring rows whose key the target had).
    Rows journaled before (a resumed move) are skipped.
    """

    def go(check: bool) -> tuple[int, int]:
        with target.connection.transaction():
            done = _journaled(target, rows) if check else set()
            todo = [r for r in rows if (r[0], int(r[1])) not in done]
            keys = [r[2 + _KEY] for r in todo if r[2 + _KEY] is not None]
            taken: dict[str, int] = {}
            for part in _chunks(keys):
                found = target.query(
                    f'SELECT "key", id FROM {TABLE} WHERE "key" IN {_in(len(part))}', part
                ).fetchall()
                taken.update((str(k), int(i)) for k, i in found)
            fresh = [r for r in todo if r[2 + _KEY] is None or r[2 + _KEY] not in taken]
            values = [
                tuple(target._t(_dt(v)) if i in _TIMES else v for i, v in enumerate(r[2:]))
                for r in fresh
            ]
            new_ids = iter(_insert_rows(target, values))
            at = target._t(now)
            journal = [
                (r[0], int(r[1]), _target_id(r, taken, new_ids), source_name, at) for r in todo
            ]
            sql = f"INSERT INTO {JOURNAL} (move_id, source_id, target_id, source, moved_at) VALUES "
            for part in _chunks(journal):
                flat = [v for j in part for v in j]
                target.query(sql + ", ".join(["(?, ?, ?, ?, ?)"] * len(part)), flat)
            return len(todo), len(todo) - len(fresh)

    for attempt in range(_COPY_TRIES):
        # Rows this run claimed a moment ago cannot be in the journal unless
        # another mover finished them meanwhile, and then the journal's
        # primary key refuses the copy: look them up only then.
        check = attempt > 0 or any(r[0] != marker for r in rows)
        try:
            return target._run(lambda: go(check))  # noqa: B023 (called at once)
        except peewee.IntegrityError:
            # A target worker upserted one of the keys, or another mover
            # journaled one of the rows, since we looked: look again.
            if attempt == _COPY_TRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _target_id(row: tuple[Any, ...], taken: dict[str, int], new_ids: Iterator[int]) -> int:
    key = row[2 + _KEY]
    return taken[key] if key is not None and key in taken else next(new_ids)


def _delete(source: Store, rows: list[tuple[Any, ...]]) -> tuple[int, list[int]]:
    """Step 3: delete journaled rows from the source (only while still claimed).

    Returns (rows deleted, ids of rows that lost their claim but are still in
    the source: someone unlocked them there, e.g. a retry that ignores locks,
    so the job is now on both sides).
    """

    def go() -> tuple[int, list[int]]:
        deleted = 0
        with source.connection.transaction():
            for move_id in {r[0] for r in rows}:
                ids = [r[1] for r in rows if r[0] == move_id]
                for part in _chunks(ids):
                    deleted += source.query(
                        f"DELETE FROM {TABLE} WHERE locked_by = ? AND id IN {_in(len(part))}",
                        (move_id, *part),
                    ).rowcount
            if deleted == len(rows):
                return deleted, []
            still: list[int] = []
            for part in _chunks([r[1] for r in rows]):
                sql = f"SELECT id FROM {TABLE} WHERE id IN {_in(len(part))}"
                still.extend(int(r[0]) for r in source.query(sql, part).fetchall())
            return int(deleted), sorted(still)

    return source._run(go)


# -- the move ---------------------------------------------------------------------


def _source_name(store: Store, name: str | None) -> str:
    text = name or f"{store.dialect.name}:{store.db.database}"
    return mask(text)[:255]


def _drain(
    source: Store,
    target: Store,
    report: MoveReport,
    *,
    batch: int,
    name: str,
    marker: str,
    clock: Clock,
    progress: Progress | None,
    markers: Sequence[str],
    once: bool,
) -> int:
    """Copy and delete the rows claimed under ``markers``, ``batch`` at a time
    (just one batch if ``once``); return how many."""
    total = 0
    while True:
        rows = _claimed(source, markers, batch)
        if not rows:
            return total
        now = to_naive_utc(clock())
        copied, kept = _copy(target, rows, marker, name, now)
        report.batches += 1
        report.kept_target += kept
        if progress:
            progress("copied", copied)
        deleted, doubled = _delete(source, rows)
        if doubled:
            report.doubled.extend(doubled)
            log.warning(
                "%d job(s) were unlocked in the source while being moved (retried there?): "
                "they are now in both databases; source ids: %s",
                len(doubled),
                ", ".join(map(str, doubled[:20])),
                extra={"action": "move_conflict"},
            )
        for r in rows:
            report.moved[_state(r[1:], now)] += 1
        total += len(rows)
        if progress:
            progress("deleted", deleted)
        if once:
            return total


def _same(a: Store, b: Store) -> bool:
    """The two stores open one database (by the same path or connect options)."""
    return a.db is b.db or (
        type(a.db) is type(b.db)
        and a.db.database == b.db.database
        and a.db.connect_params == b.db.connect_params
    )


def _max_id(source: Store) -> int:
    sql = f"SELECT COALESCE(MAX(id), 0) FROM {TABLE}"
    return int(source._run(lambda: source.query(sql).fetchone()[0]))


def _left(source: Store, upto: int | None, skip: Sequence[int]) -> tuple[int, int]:
    """(rows up to ``upto`` still in the source, rows after it), but ``skip``."""
    if upto is None:
        sql = f"SELECT COUNT(*), 0 FROM {TABLE} WHERE 1 = 1{_not_in(skip)}"
        params: tuple[Any, ...] = ()
    else:
        sql = (
            "SELECT COALESCE(SUM(CASE WHEN id <= ? THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN id > ? THEN 1 ELSE 0 END), 0) FROM {TABLE} "
            f"WHERE 1 = 1{_not_in(skip)}"
        )
        params = (upto, upto)
    row = source._run(lambda: source.query(sql, params).fetchone())
    return int(row[0]), int(row[1])


def move_jobs(
    source: Store,
    target: Store,
    *,
    batch: int = DEFAULT_BATCH,
    lock_timeout: float = 30.0,
    until_empty: bool = False,
    poll_interval: float = 1.0,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    source_name: str | None = None,
    progress: Progress | None = None,
) -> MoveReport:
    """Move the jobs of ``source`` into ``target``; see the module's docstring.

    ``lock_timeout``: a lease older than this (seconds) belongs to a dead
    worker, as for the workers. ``until_empty``: repeat until the source is
    empty, sleeping ``poll_interval`` s while live workers hold its last jobs.
    ``source_name``: how the journal names the source (masked; default: its
    dialect and database). ``progress(step, n)`` is called after each step
    (``"claimed"``, ``"copied"``, ``"deleted"``) with the rows it touched.
    Safe to interrupt anywhere and to run again.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive int, not {batch!r}")
    if _same(source, target):
        raise ValueError("source and target are the same database")
    started = time.monotonic()
    source.ensure_schema()
    target.ensure_schema()
    _ensure_journal(target)
    copy_limits(source, target)  # before the jobs that count against them
    name = _source_name(source, source_name)
    marker = MARKER_PREFIX + uuid.uuid4().hex
    report = MoveReport()
    args: dict[str, Any] = {
        "batch": batch,
        "name": name,
        "marker": marker,
        "clock": clock,
        "progress": progress,
    }
    report.resumed = _drain(source, target, report, once=False, markers=_markers(source), **args)
    upto = None if until_empty else _max_id(source)
    expired = timedelta(seconds=lock_timeout)
    while True:
        while True:
            now = to_naive_utc(clock())
            claimed = _claim(source, marker, now - expired, upto, batch, report.doubled)
            if progress:
                progress("claimed", claimed)
            if not claimed:
                break
            _drain(source, target, report, once=True, markers=[marker], **args)
        report.running, report.newer = _left(source, upto, report.doubled)
        if not until_empty or not report.running:
            break
        sleep(poll_interval)
    report.seconds = time.monotonic() - started
    return report


def format_report(report: MoveReport) -> list[str]:
    """The lines ``tinydj move`` prints: one per state, then what was left."""
    lines = []
    for state in STATES:
        line = f"{state + ':':<11}{report.moved[state]:>9} moved"
        if state == "recurring" and report.kept_target:
            line += f" ({report.kept_target} kept the target's row of the same key)"
        lines.append(line)
    if report.resumed:
        lines.append(
            f"{'resumed:':<11}{report.resumed:>9} claimed by an interrupted move, finished"
        )
    lines.append(
        f"{'running:':<11}{report.running:>9} left in the source"
        + (
            " (held by live workers: run `tinydj move` again once they end)"
            if report.running
            else ""
        )
    )
    lines.append(
        f"{'newer:':<11}{report.newer:>9} left in the source"
        + (
            " (enqueued after the move began: run it again, or --until-empty)"
            if report.newer
            else ""
        )
    )
    if report.doubled:
        ids = ", ".join(map(str, report.doubled[:20]))
        lines.append(
            f"{'doubled:':<11}{len(report.doubled):>9} unlocked in the source while moving: "
            f"now in both databases (source ids {ids})"
        )
    rate = report.total / report.seconds if report.seconds > 0 else 0.0
    lines.append(
        f"moved {report.total} jobs in {report.seconds:.1f} s ({rate:,.0f} jobs/s, "
        f"{report.batches} batches)"
    )
    return lines
