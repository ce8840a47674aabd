"""``Job``: a read-only snapshot of one row of the ``delayed_jobs`` table."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

__all__ = ["COLUMNS", "RESERVED_COLUMNS", "Job", "NewJob", "assemble", "builder"]

T = TypeVar("T")

#: The columns of ``delayed_jobs`` in the order ``Job.from_row`` reads them.
COLUMNS = (
    "id",
    "priority",
    "attempts",
    "handler",
    "last_error",
    "run_at",
    "locked_at",
    "locked_by",
    "failed_at",
    "reoccur_in",
    "last_run_at",
    "created_at",
    "updated_at",
    "queue",
    "key",
    "interruptions",
    "concurrency_key",
)

#: The columns a worker's reservation returns (``rows.read_reserved``): the
#: others it knows already (``locked_at``: the reservation's time,
#: ``locked_by``: the worker; ``failed_at`` and ``concurrency_key``: NULL, or
#: the row would not have been taken).
RESERVED_COLUMNS = tuple(
    c for c in COLUMNS if c not in ("locked_at", "locked_by", "failed_at", "concurrency_key")
)

_NAME = re.compile(r"^\s*(?:function|class|model): ['\"]?([\w.:<>]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored: returned by ``send_later``, ``enqueue`` and friends.

    It is a snapshot; ``tinydj.get_job(job.id)`` reads the row again. The
    status is derived from the columns: ``failed`` when ``failed_at`` is set,
    ``locked`` while a worker holds its lease, ``recurring`` when
    ``reoccur_in`` is set.
    """

    id: int
    priority: int
    attempts: int
    handler: str
    last_error: str | None
    run_at: datetime
    locked_at: datetime | None
    locked_by: str | None
    failed_at: datetime | None
    reoccur_in: str | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    queue: str
    key: str | None
    #: Runs cut short because the worker died (lease expired); they do not
    #: count as attempts, but too many fail the job (see ``MAX_INTERRUPTIONS``).
    interruptions: int = 0
    #: The key whose concurrency limit this job counts against
    #: (``@job(concurrency=...)``, see ``tinydj.limits``), else None.
    concurrency_key: str | None = None

    @classmethod
    def from_row(cls, row: tuple[object, ...] | list[object]) -> Job:
        """Build a Job from a row whose columns are in ``COLUMNS`` order."""
        values = list(row)
        for i in _DATETIME_POSITIONS:
            value = values[i]
            if isinstance(value, str):
                values[i] = datetime.fromisoformat(value)
        return cls(*values)  # type: ignore[arg-type]

    @property
    def failed(self) -> bool:
        """True once the job gave up (``failed_at`` is set); the row is kept."""
        return self.failed_at is not None

    @property
    def locked(self) -> bool:
        """True while a worker holds (or held, until its lease expires) the job."""
        return self.locked_at is not None

    @property
    def recurring(self) -> bool:
        """True for a row created by ``@every`` or ``tinydj.schedule``."""
        return self.reoccur_in is not None

    @property
    def name(self) -> str:
        """What the job runs, for logs: ``"myapp.tasks:resize"``."""
        if self.key and self.recurring:
            return self.key
        match = _NAME.search(self.handler or "")
        return match.group(1) if match else f"job {self.id}"


class NewJob(NamedTuple):
    """A row about to be inserted (a tuple: cheap to make by the thousand)."""

    handler: str
    queue: str
    priority: int
    run_at: datetime
    key: str | None = None
    reoccur_in: str | None = None
    concurrency_key: str | None = None

    def params(self, now: Any, run_at: Any) -> tuple[Any, ...]:
        """Values of an INSERT (``sql.Statements.insert``), times as bound."""
        return (
            self.priority,
            0,
            self.handler,
            run_at,
            self.queue,
            self.key,
            self.reoccur_in,
            now,
            now,
            self.concurrency_key,
        )

    @classmethod
    def many(cls, handlers: list[str], queue: str, priority: int, run_at: datetime) -> list[NewJob]:
        """Rows that differ only in their handler (a bulk enqueue)."""
        new = tuple.__new__
        return [new(cls, (h, queue, priority, run_at, None, None, None)) for h in handlers]

    def inserted(self, job_id: int, now: datetime) -> Job:
        """The ``Job`` of this row once inserted with ``job_id``."""
        return assemble(
            job_id, self.priority, 0, self.handler, None, self.run_at, None, None, None,
            self.reoccur_in, None, now, now, self.queue, self.key, 0, self.concurrency_key,
        )  # fmt: skip


_DATETIME_POSITIONS = tuple(
    COLUMNS.index(c)
    for c in ("run_at", "locked_at", "failed_at", "last_run_at", "created_at", "updated_at")
)


def builder(cls: type[T]) -> Callable[..., T]:
    """A constructor of the frozen slots dataclass ``cls`` that takes every
    field, positionally, for the hot path (a ``Job`` per reserved row, an
    ``Outcome`` per run).

    A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, a call per field. The builder stores the fields as
    plain attributes of a draft (an instance of a mutable class with the same
    slots), then turns the draft into a ``cls`` by ``__class__`` assignment,
    which Python allows between classes of the same layout: a fifth of the
    instructions. What it returns is a ``cls`` equal to ``cls(*values)`` in
    every way (``==``, ``hash``, ``repr``, frozen).
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    draft = type(f"_{cls.__name__}Draft", (), {"__slots__": cls.__slots__})  # type: ignore[attr-defined]
    stores = "".join(f"    draft.{name} = {name}\n" for name in names)
    source = (
        f"def build({', '.join(names)}):\n    draft = new(Draft)\n{stores}"
        "    draft.__class__ = cls\n    return draft\n"
    )
    namespace: dict[str, Any] = {"new": object.__new__, "Draft": draft, "cls": cls}
    exec(source, namespace)  # generated as dataclasses generates __init__
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"builder({cls.__name__})"
    return build


#: ``Job(*values)`` with every field given, for the readers of reserved rows.
assemble: Callable[..., Job] = builder(Job)
