"""Every SQL statement of the dashboard: read-only looks at ``delayed_jobs``.

The statements are written with ``?`` markers and ``"`` quotes; the Store
translates them for each database. They are shaped to stay fast on a table of
a million rows: pages walk the primary key from a cursor (keyset pagination,
never OFFSET), filters that read rows one by one look at a window of ids
("running" too: no index on ``locked_by``, which every reservation would
write), recurring rows are found through the ``key`` index, and counts per queue read the
covering ``delayed_jobs_queue_ready`` index for waiting jobs.

The few writes here ("run now" and pausing of recurring jobs) change
``run_at`` only, on rows no worker holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..job import COLUMNS, Job
from ..models import TABLE
from ..states import CONDITIONS
from ..store import Store

__all__ = [
    "PAGE_SIZE",
    "PAUSED_RUN_AT",
    "SCAN_WINDOW",
    "STATES",
    "JobFilter",
    "JobPage",
    "QueueCounts",
    "held_jobs",
    "list_jobs",
    "queue_counts",
    "queue_names",
    "recurring_jobs",
    "run_now",
    "set_recurring_paused",
]

#: Rows per page of the job list.
PAGE_SIZE = 50
#: A paused recurring job waits for this ``run_at`` (resuming sets it to now).
PAUSED_RUN_AT = datetime(9999, 1, 1)
#: The states a job can be filtered by.
STATES = ("ready", "scheduled", "running", "failed", "recurring")

_COLS = ", ".join(f'"{c}"' for c in COLUMNS)
# LIKE patterns escape their wildcards with "!" (a backslash means different
# things in MySQL string literals).
_ESCAPE = " ESCAPE '!'"


def _like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


# The SQL condition of each filter state; its ``?`` (if any) is ``now``.
# "running" and "failed" are the states of ``tinydj.states``. The dashboard
# differs on recurring jobs: "recurring" is a kind of job, listed whatever its
# state (the Recurring page shows running and failed ones too), and a recurring
# row waiting for its time is ready or scheduled like any other (the overview's
# cards count it there), where ``tinydj.states`` gives it a state of its own.
_STATE_SQL = {
    "ready": "failed_at IS NULL AND locked_at IS NULL AND run_at <= ?",
    "scheduled": "failed_at IS NULL AND locked_at IS NULL AND run_at > ?",
    "running": CONDITIONS["running"],
    "failed": CONDITIONS["failed"],
    # Recurring rows always carry a key: the (partial) key index finds them.
    "recurring": '"key" IS NOT NULL AND reoccur_in IS NOT NULL',
}


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What the job list shows; every field is optional and they combine."""

    state: str | None = None
    queue: str | None = None
    #: ``module:function`` (or ``module:Class``) as the handler names it.
    function: str | None = None
    #: Free text searched in the handler (arguments) and the last error.
    text: str | None = None
    job_id: int | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}: use one of {', '.join(STATES)}")

    def where(self, store: Store, now: datetime) -> tuple[list[str], list[Any]]:
        """SQL conditions and their parameters."""
        where: list[str] = []
        params: list[Any] = []
        if self.job_id is not None:
            where.append("id = ?")
            params.append(self.job_id)
        if self.state:
            condition = _STATE_SQL[self.state]
            where.append(condition)
            params += [store._t(now)] * condition.count("?")
        if self.queue:
            where.append("queue = ?")
            params.append(self.queue)
        if self.function:
            name = _like(self.function)
            where.append(f'(handler LIKE ?{_ESCAPE} OR handler LIKE ?{_ESCAPE} OR "key" = ?)')
            params += [f"%function: {name}%", f"%class: {name}%", self.function]
        if self.text:
            pattern = f"%{_like(self.text.lower())}%"
            where.append(
                f"(LOWER(handler) LIKE ?{_ESCAPE} OR LOWER(COALESCE(last_error, '')) "
                f"LIKE ?{_ESCAPE})"
            )
            params += [pattern, pattern]
        return where, params


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of jobs, newest first, with the cursors of its neighbours."""

    jobs: list[Job]
    #: Pass as ``after`` for the newer page (None: this is the newest).
    newer: int | None
    #: Pass as ``before`` for the older page (None: this is the oldest).
    older: int | None
    #: ``(lowest, highest)`` ids looked at, when a filter that reads rows one
    #: by one stopped at the end of its window before the page was full.
    searched: tuple[int, int] | None = None


#: A filter that has to read rows one by one (free text, function, queue,
#: state) looks at no more than this many ids per page, so that a rare match
#: in a million rows cannot make a page slow; the page then offers to search
#: further.
SCAN_WINDOW = 50_000


def _windowed(flt: JobFilter) -> bool:
    if flt.job_id is not None or flt.state == "recurring":
        return False  # served by an index
    return bool(flt.text or flt.function or flt.queue or flt.state)


def _id_range(store: Store) -> tuple[int, int]:
    # Two sub-selects: SQLite reads MIN and MAX from the key only one at a time.
    sql = f"SELECT (SELECT MIN(id) FROM {TABLE}), (SELECT MAX(id) FROM {TABLE})"
    low, high = store._run(lambda: store.query(sql).fetchone())
    return int(low or 0), int(high or 0)


def list_jobs(
    store: Store,
    flt: JobFilter,
    now: datetime,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> JobPage:
    """Jobs matching ``flt``, newest (highest id) first, ``limit`` at a time.

    ``before``/``after`` are ids: the page holds jobs older than ``before``
    or, going back, newer than ``after``. One extra row is read to know
    whether there is a further page. Filters that read rows one by one look
    at ``SCAN_WINDOW`` ids at most (see ``JobPage.searched``).
    """
    store.ensure_schema()
    where, params = flt.where(store, now)
    windowed = _windowed(flt)
    low, high = _id_range(store) if windowed else (0, 0)
    start = high + 1 if windowed and before is None else before  # reading onwards
    if after is not None:
        order = "ASC"
        _bound(where, params, "id > ?", after, "id <= ?", after + SCAN_WINDOW, windowed)
    else:
        order = "DESC"
        if start is not None:
            _bound(where, params, "id < ?", start, "id >= ?", start - SCAN_WINDOW, windowed)
    sql = f"SELECT {_COLS} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY id {order} LIMIT ?"
    params.append(limit + 1)
    rows = store._run(lambda: store.query(sql, params).fetchall())
    more = len(rows) > limit
    jobs = [Job.from_row(r) for r in rows[:limit]]
    if after is not None:
        jobs.reverse()
        return JobPage(jobs, *_links_back(jobs, more, after, windowed, high))
    return JobPage(jobs, *_links_on(jobs, more, before, start, windowed, low))


def _bound(
    where: list[str],
    params: list[Any],
    near: str,
    value: int,
    far: str,
    window_end: int,
    windowed: bool,
) -> None:
    """Add the page's bound ``near`` (and, for a windowed filter, the end of
    the window that it searches, ``far``)."""
    where.append(near)
    params.append(value)
    if windowed:
        where.append(far)
        params.append(window_end)


def _links_back(
    jobs: list[Job], more: bool, after: int, windowed: bool, high: int
) -> tuple[int | None, int | None, tuple[int, int] | None]:
    """(newer, older, searched) of a page read going back (``after``)."""
    ceiling = after + SCAN_WINDOW
    newer = jobs[0].id if more and jobs else None
    searched = None
    if not more and windowed and ceiling < high:
        newer, searched = ceiling, (after + 1, ceiling)
    return newer, jobs[-1].id if jobs else after + 1, searched


def _links_on(
    jobs: list[Job],
    more: bool,
    before: int | None,
    start: int | None,
    windowed: bool,
    low: int,
) -> tuple[int | None, int | None, tuple[int, int] | None]:
    """(newer, older, searched) of a page read onwards (older jobs)."""
    newer = None if before is None else (jobs[0].id if jobs else before - 1)
    older = jobs[-1].id if more and jobs else None
    searched = None
    if not more and windowed and start is not None and start - SCAN_WINDOW > low:
        older, searched = start - SCAN_WINDOW, (start - SCAN_WINDOW, start - 1)
    return newer, older, searched


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Jobs of one queue by state, and its lag."""

    queue: str
    ready: int = 0
    scheduled: int = 0
    running: int = 0
    failed: int = 0
    #: ``run_at`` of its oldest due job not finished yet (None: nothing due).
    oldest_due: datetime | None = None

    @property
    def total(self) -> int:
        return self.ready + self.scheduled + self.running + self.failed

    def lag(self, now: datetime) -> float | None:
        """Seconds its oldest due job has waited (None when nothing is due)."""
        if self.oldest_due is None or self.ready == 0:
            return None
        return max(0.0, (now - self.oldest_due).total_seconds())


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def queue_counts(store: Store, now: datetime) -> list[QueueCounts]:
    """Counts per queue and state, by queue name.

    Waiting jobs are counted from the covering partial index of not-failed
    rows (queue, priority, run_at, id); running and failed ones by a scan of
    their columns.
    """
    store.ensure_schema()
    t = store._t(now)
    waiting_sql = (
        "SELECT queue, COUNT(*), COALESCE(SUM(CASE WHEN run_at <= ? THEN 1 ELSE 0 END), 0), "
        f"MIN(run_at) FROM {TABLE} WHERE failed_at IS NULL GROUP BY queue"
    )
    running_sql = (
        f"SELECT queue, COUNT(*) FROM {TABLE} WHERE {_STATE_SQL['running']} GROUP BY queue"
    )
    failed_sql = f"SELECT queue, COUNT(*) FROM {TABLE} WHERE {_STATE_SQL['failed']} GROUP BY queue"

    def go() -> tuple[list[Any], list[Any], list[Any]]:
        with store.db.atomic():  # one snapshot for the three counts
            return (
                list(store.query(waiting_sql, (t,)).fetchall()),
                list(store.query(running_sql).fetchall()),
                list(store.query(failed_sql).fetchall()),
            )

    waiting, running, failed = store._run(go)
    acc: dict[str, dict[str, Any]] = {}
    for queue, total, due, oldest in waiting:
        acc.setdefault(queue, {}).update(
            due=int(due), later=int(total) - int(due), oldest=_dt(oldest)
        )
    for queue, count in running:
        acc.setdefault(queue, {})["running"] = int(count)
    for queue, count in failed:
        acc.setdefault(queue, {})["failed"] = int(count)
    result = []
    for queue in sorted(acc):
        c = acc[queue]
        run = c.get("running", 0)
        # Running jobs are due (run_at <= now) ones a worker holds.
        result.append(
            QueueCounts(
                queue=queue,
                ready=max(0, c.get("due", 0) - run),
                scheduled=c.get("later", 0),
                running=run,
                failed=c.get("failed", 0),
                oldest_due=c.get("oldest") if c.get("due", 0) else None,
            )
        )
    return result


def queue_names(store: Store) -> list[str]:
    """Names of the queues that have waiting jobs (a loose index scan: fast)."""
    store.ensure_schema()
    sql = (
        "WITH RECURSIVE q(name) AS ("
        f"SELECT MIN(queue) FROM {TABLE} WHERE failed_at IS NULL "
        f"UNION ALL SELECT (SELECT MIN(queue) FROM {TABLE} "
        "WHERE failed_at IS NULL AND queue > q.name) FROM q WHERE q.name IS NOT NULL) "
        "SELECT name FROM q WHERE name IS NOT NULL"
    )
    rows = store._run(lambda: store.query(sql).fetchall())
    return [str(r[0]) for r in rows]


def held_jobs(store: Store, limit: int = 1000) -> dict[str, list[Job]]:
    """Jobs locked right now, by the worker holding them (``locked_by``)."""
    store.ensure_schema()
    sql = (
        f"SELECT {_COLS} FROM {TABLE} WHERE locked_by IS NOT NULL AND locked_at IS NOT NULL "
        "ORDER BY locked_at LIMIT ?"
    )
    rows = store._run(lambda: store.query(sql, (limit,)).fetchall())
    held: dict[str, list[Job]] = {}
    for row in rows:
        job = Job.from_row(row)
        held.setdefault(job.locked_by or "", []).append(job)
    return held


def recurring_jobs(store: Store) -> list[Job]:
    """Every recurring row, by name."""
    store.ensure_schema()
    sql = f'SELECT {_COLS} FROM {TABLE} WHERE {_STATE_SQL["recurring"]} ORDER BY "key"'
    rows = store._run(lambda: store.query(sql).fetchall())
    return [Job.from_row(r) for r in rows]


def run_now(store: Store, job_id: int, now: datetime) -> bool:
    """Make a waiting (not failed, not running) job due now; False otherwise."""
    store.ensure_schema()
    sql = (
        f"UPDATE {TABLE} SET run_at = ?, updated_at = ? "
        "WHERE id = ? AND failed_at IS NULL AND locked_at IS NULL"
    )
    t = store._t(now)
    return bool(store._run(lambda: store.query(sql, (t, t, job_id)).rowcount))


def set_recurring_paused(store: Store, job_id: int, paused: bool, now: datetime) -> bool:
    """Pause a recurring job (it waits until resumed) or resume it (due now).

    Only a row no worker holds changes; False otherwise.
    """
    store.ensure_schema()
    run_at = PAUSED_RUN_AT if paused else now
    sql = (
        f"UPDATE {TABLE} SET run_at = ?, updated_at = ? WHERE id = ? AND reoccur_in IS NOT NULL "
        "AND locked_at IS NULL AND failed_at IS NULL"
    )
    params: Sequence[Any] = (store._t(run_at), store._t(now), job_id)
    return bool(store._run(lambda: store.query(sql, params).rowcount))
