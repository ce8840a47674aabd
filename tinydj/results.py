"""Opt-in results: what became of a finished job, kept for a while.

A finished job's row leaves ``delayed_jobs`` as always; a task that keeps
results also writes its outcome to a separate ``tinydj_results`` table (one
row per job id): the status, the return value as JSON, the errors of its
attempts, the timings, the attempts and the workers that ran it. Rows expire
after the task's retention period and workers purge them.

>>> @results.keep("7d")
... @tinydj.job
... def add(a, b):
...     return a + b
>>> job = add.send_later(1, 2)  # doctest: +SKIP
>>> tinydj.Worker().work_off()  # doctest: +SKIP
>>> results.get(job.id).value  # doctest: +SKIP
3

Statuses (the same words as Django's ``TaskResultStatus``): ``RUNNING``
(recorded only by trackers made with ``running=True``), ``READY`` (an attempt
failed and the job will run again), ``SUCCESSFUL`` and ``FAILED`` (the last
attempt failed; for a recurring job, that run failed). A job with no result
row yet is still waiting (see ``status``). All SQL of the table is here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from .config import Config, get_config
from .job import Job
from .schedule import parse_every, to_naive_utc

if TYPE_CHECKING:
    from .serialize import Call
    from .store import Store
    from .worker import Worker

__all__ = [
    "DEFAULT_RETENTION",
    "PURGE_EVERY",
    "TABLE",
    "Result",
    "Tracker",
    "create_table",
    "get",
    "keep",
    "purge",
    "running_job",
    "status",
    "status_of",
    "table_ready",
]

log = logging.getLogger(__name__)
F = TypeVar("F")

TABLE = "tinydj_results"
#: How long a result is kept when ``keep()`` is given no period.
DEFAULT_RETENTION = timedelta(days=7)
#: Seconds between two purges of expired results by one process.
PURGE_EVERY = 60.0

_COLUMNS = (
    "job_id",
    "name",
    "queue",
    "status",
    "args",
    "return_value",
    "errors",
    "attempts",
    "worker_ids",
    "enqueued_at",
    "started_at",
    "finished_at",
    "expires_at",
)


def _make_model(database: peewee.Database, micro: bool) -> type[peewee.Model]:
    """The ``tinydj_results`` table as a peewee model (it is the schema)."""

    class DateTime(peewee.DateTimeField):
        field_type = "DATETIME(6)" if micro else "DATETIME"

    class TaskResultRow(peewee.Model):
        job_id = peewee.BigIntegerField(primary_key=True)
        name = peewee.CharField(max_length=255)
        queue = peewee.CharField(max_length=255)
        status = peewee.CharField(max_length=16)
        args = peewee.TextField(null=True)
        return_value = peewee.TextField(null=True)
        errors = peewee.TextField(null=True)
        attempts = peewee.IntegerField(default=0)
        worker_ids = peewee.TextField(null=True)
        enqueued_at = DateTime(null=True)
        started_at = DateTime(null=True)
        finished_at = DateTime(null=True)
        expires_at = DateTime()

        class Meta:
            table_name = TABLE

    TaskResultRow._meta.database = database
    TaskResultRow.add_index(TaskResultRow.expires_at, name="tinydj_results_expires_at")
    return TaskResultRow


@dataclass(frozen=True)
class Result:
    """The kept outcome of one job (``results.get(job_id)``)."""

    job_id: int
    name: str
    queue: str
    status: str
    args: list[Any]
    kwargs: dict[str, Any]
    #: The return value, decoded from JSON (None until SUCCESSFUL).
    value: Any
    #: One entry per failed attempt: ``type`` (exception class path),
    #: ``message`` and ``traceback``.
    errors: list[dict[str, str]]
    attempts: int
    worker_ids: list[str]
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime

    @property
    def error(self) -> str | None:
        """The traceback of the last failed attempt, if any."""
        return self.errors[-1]["traceback"] if self.errors else None

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCESSFUL", "FAILED")


# -- the table ------------------------------------------------------------------


class _Table:
    """The results table of one ``Store``'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        d = store.dialect
        self.param = d.param
        self.text_times = d.text_times
        self.mysql = d.name == "mysql"
        self.model = _make_model(store.db, micro=self.mysql)
        self.ready = False
        self._lock = threading.Lock()
        cols = ", ".join(_COLUMNS)
        marks = ", ".join(["?"] * len(_COLUMNS))
        updates = [c for c in _COLUMNS if c not in ("job_id", "enqueued_at")]
        if self.mysql:
            sets = ", ".join(f"{c} = VALUES({c})" for c in updates)
            tail = f"ON DUPLICATE KEY UPDATE {sets}"
        else:
            sets = ", ".join(f"{c} = excluded.{c}" for c in updates)
            tail = f"ON CONFLICT (job_id) DO UPDATE SET {sets}"
        self.upsert_sql = self._q(f"INSERT INTO {TABLE} ({cols}) VALUES ({marks}) {tail}")
        self.select_sql = self._q(f"SELECT {cols} FROM {TABLE} WHERE job_id = ?")
        self.purge_sql = self._q(f"DELETE FROM {TABLE} WHERE expires_at < ?")

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.param) if self.param != "?" else sql

    def t(self, value: datetime | None) -> Any:
        if value is None or not self.text_times:
            return value
        return value.isoformat(" ", "microseconds")

    def execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        run: Callable[[Callable[[], Any]], Any] = getattr(self.store, "_run", lambda fn: fn())
        return run(lambda: self.store.db.execute_sql(sql, params))

    def ensure(self) -> None:
        if self.ready:
            return
        with self._lock:
            if not self.ready:
                self.model.create_table(safe=True)
                self.ready = not self.store.db.in_transaction()

    def fetch(self, job_id: int) -> tuple[Any, ...] | None:
        self.ensure()
        row = self.execute(self.select_sql, (job_id,)).fetchone()
        return tuple(row) if row else None

    def write(self, values: dict[str, Any]) -> None:
        self.ensure()
        params = tuple(
            self.t(values[c]) if isinstance(values[c], datetime) else values[c] for c in _COLUMNS
        )
        self.execute(self.upsert_sql, params)

    def purge(self, now: datetime) -> int:
        self.ensure()
        return int(self.execute(self.purge_sql, (self.t(now),)).rowcount)


_tables: dict[int, tuple[Store, _Table]] = {}
_tables_lock = threading.Lock()


def _table(store: Store) -> _Table:
    entry = _tables.get(id(store))
    if entry is None or entry[0] is not store:
        with _tables_lock:
            entry = _tables.get(id(store))
            if entry is None or entry[0] is not store:
                entry = _tables[id(store)] = (store, _Table(store))
    return entry[1]


def table_ready(store: Store) -> None:
    """Take the results table of ``store`` as created (e.g. by a migration)."""
    _table(store).ready = True


def _time(value: object) -> datetime | None:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return to_naive_utc(value) if value.tzinfo else value
    return None


def _from_row(row: tuple[Any, ...]) -> Result:
    values = dict(zip(_COLUMNS, row, strict=True))
    args = json.loads(values["args"]) if values["args"] else [[], {}]
    value = json.loads(values["return_value"]) if values["return_value"] is not None else None
    expires = _time(values["expires_at"])
    assert expires is not None
    return Result(
        job_id=int(values["job_id"]),
        name=values["name"],
        queue=values["queue"],
        status=values["status"],
        args=list(args[0]),
        kwargs=dict(args[1]),
        value=value,
        errors=json.loads(values["errors"]) if values["errors"] else [],
        attempts=int(values["attempts"]),
        worker_ids=json.loads(values["worker_ids"]) if values["worker_ids"] else [],
        enqueued_at=_time(values["enqueued_at"]),
        started_at=_time(values["started_at"]),
        finished_at=_time(values["finished_at"]),
        expires_at=expires,
    )


# -- the public functions --------------------------------------------------------


def create_table(config: Config | None = None) -> None:
    """Create ``tinydj_results`` unless it exists (also done on first use)."""
    _table((config or get_config()).store).ensure()


def get(job: int | Job, *, config: Config | None = None) -> Result | None:
    """The kept result of a job (by id or ``Job``), or None if none is kept."""
    job_id = job.id if isinstance(job, Job) else int(job)
    row = _table((config or get_config()).store).fetch(job_id)
    return _from_row(row) if row else None


def status(job: int | Job, *, config: Config | None = None) -> str | None:
    """Where a job stands: the status of its kept result, else from its row.

    ``RUNNING`` while a worker holds it, ``READY`` while it waits, ``FAILED``
    once it gave up, ``SUCCESSFUL`` for a kept success; None when the job is
    unknown (never existed, or done without a kept result, or purged).
    """
    config = config or get_config()
    job_id = job.id if isinstance(job, Job) else int(job)
    return status_of(config.store.get(job_id), get(job_id, config=config))


def status_of(row: Job | None, kept: Result | None) -> str | None:
    """``status()`` from a job's row (or None) and its kept result (or None)."""
    if row is None:
        return kept.status if kept else None
    if row.failed_at is not None:
        return "FAILED"
    if row.locked_by is not None:
        return "RUNNING"
    if kept is not None and kept.status == "SUCCESSFUL" and not row.recurring:
        return "SUCCESSFUL"  # done, its row not yet acknowledged
    return "READY"


def purge(now: datetime | None = None, *, config: Config | None = None) -> int:
    """Delete results whose retention period is over; return how many."""
    config = config or get_config()
    return _table(config.store).purge(to_naive_utc(now or config.clock()))


# -- recording (called by the worker) --------------------------------------------

_running = threading.local()


def running_job() -> tuple[Job, str] | None:
    """(the job, the worker name) that this thread runs for a tracked task."""
    value: tuple[Job, str] | None = getattr(_running, "job", None)
    return value


def _jsonable(value: Any) -> Any:
    """``value`` made JSON (model instances become their references)."""
    return json.loads(json.dumps(value, default=_reference))


def _reference(value: Any) -> Any:
    if isinstance(value, peewee.Model):
        cls = type(value)
        return {"model": f"{cls.__module__}:{cls.__qualname__}", "pk": value.get_id()}
    meta = getattr(value, "_meta", None)
    if meta is not None and hasattr(meta, "label") and hasattr(value, "pk"):  # Django
        return {"model": meta.label, "pk": value.pk}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


@dataclass
class Tracker:
    """What a task that keeps results attaches to itself (``keep()``).

    The worker calls ``started`` before each run, then ``succeeded`` or
    ``failed``. ``describe`` turns a loaded call into (name, args, kwargs) as
    stored; ``encode`` turns the return value into JSON text (it may raise to
    reject the value: the job then fails).
    """

    retention: timedelta = DEFAULT_RETENTION
    running: bool = False
    describe: Callable[[Call], tuple[str, list[Any], dict[str, Any]]] | None = None
    #: job id -> (start time, errors and workers so far), between started and done
    _started: dict[int, tuple[datetime, list[Any], list[str]]] = field(
        default_factory=dict, repr=False
    )
    _last_purge: float = field(default=0.0, repr=False)

    def _base(self, worker: Worker, job: Job, call: Call) -> dict[str, Any]:
        if self.describe is not None:
            name, args, kwargs = self.describe(call)
        else:
            name, args, kwargs = call.name or job.name, list(call.args), dict(call.kwargs)
        return {
            "job_id": job.id,
            "name": name[:255],
            "queue": job.queue,
            "args": json.dumps(_jsonable([args, kwargs])),
            "enqueued_at": job.created_at,
        }

    def _history(self, table: _Table, job: Job) -> tuple[list[Any], list[str]]:
        if job.attempts == 0 and not self.running:
            return [], []  # first attempt: nothing recorded yet
        row = table.fetch(job.id)
        if row is None:
            return [], []
        old = _from_row(row)
        if old.enqueued_at != job.created_at:
            return [], []  # a row of an older job with this id (the table was recreated)
        return old.errors, old.worker_ids

    def started(self, worker: Worker, job: Job, call: Call) -> None:
        now = worker._now()
        _running.job = (job, worker.name)
        if not self.running:
            self._started[job.id] = (now, [], [])
            return
        table = _table(worker.store)
        errors, workers = self._history(table, job)
        self._started[job.id] = (now, errors, [*workers, worker.name])
        table.write(
            {
                **self._base(worker, job, call),
                "status": "RUNNING",
                "return_value": None,
                "errors": json.dumps(errors),
                "attempts": job.attempts + 1,
                "worker_ids": json.dumps([*workers, worker.name]),
                "started_at": now,
                "finished_at": None,
                "expires_at": now + self.retention,
            }
        )

    def _done(
        self, worker: Worker, job: Job, call: Call, status: str, value: str | None, error: Any
    ) -> None:
        _running.job = None
        now = worker._now()
        table = _table(worker.store)
        started, errors, workers = self._started.pop(job.id, (now, [], []))
        if not self.running:
            errors, workers = self._history(table, job)
            workers = [*workers, worker.name]
        if error is not None:
            errors = [*errors, error]
        table.write(
            {
                **self._base(worker, job, call),
                "status": status,
                "return_value": value,
                "errors": json.dumps(errors),
                "attempts": job.attempts + 1,
                "worker_ids": json.dumps(workers),
                "started_at": started,
                "finished_at": None if status == "READY" else now,
                "expires_at": now + self.retention,
            }
        )
        self._maybe_purge(table, now)

    def succeeded(self, worker: Worker, job: Job, call: Call, value: Any) -> None:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            log.warning("job %s returned a value JSON cannot hold; kept as its repr", job.id)
            text = json.dumps(repr(value))
        self._done(worker, job, call, "SUCCESSFUL", text, None)

    def failed(
        self,
        worker: Worker,
        job: Job,
        call: Call,
        exc: BaseException,
        traceback: str,
        final: bool,
    ) -> None:
        cls = type(exc)
        error = {
            "type": f"{cls.__module__}.{cls.__qualname__}",
            "message": str(exc)[:2000],
            "traceback": traceback,
        }
        self._done(worker, job, call, "FAILED" if final else "READY", None, error)

    def _maybe_purge(self, table: _Table, now: datetime) -> None:
        tick = time.monotonic()
        if tick - self._last_purge >= PURGE_EVERY:
            self._last_purge = tick
            table.purge(now)


def keep(
    retention: str | float | timedelta = DEFAULT_RETENTION, *, running: bool = False
) -> Callable[[F], F]:
    """Keep the results of a task's jobs for ``retention`` ("7d", seconds...).

    Use above or below ``@tinydj.job``. ``running=True`` also records when a
    run starts (status ``RUNNING``), at the cost of one more write per job.
    """
    period = parse_every(retention)

    def decorate(task: F) -> F:
        tracker = Tracker(period, running)
        task.tinydj_outcome = tracker  # type: ignore[attr-defined]
        # A task defined in a script is stored as its pickled function, not by
        # import path: the function carries the tracker along.
        inner = getattr(task, "fn", None)
        if callable(inner) and not isinstance(inner, type):
            inner.tinydj_outcome = tracker
        return task

    return decorate
