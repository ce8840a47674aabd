"""Defining and enqueueing jobs: ``@job``, ``@every``, ``send_later`` and friends.

A decorated function still runs inline when called; enqueueing is an explicit
verb (``send_later``, ``send_at``, ``send_in``). Recurring functions are kept in
a registry keyed by import path, which every worker writes to the table before
its first job.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload
from zoneinfo import ZoneInfo

from . import immediate, limits, serialize
from . import options as check
from .config import Config, get_config
from .job import Job
from .recurrence import Cron, Interval, Recurrence
from .schedule import parse_delay, parse_every, to_naive_utc, warn_if_naive
from .store import NewJob
from .unique import UNIQUE_PREFIX, Uniqueness, explicit_key, uniqueness

__all__ = [
    "DEFAULT_QUEUE",
    "Task",
    "enqueue",
    "every",
    "job",
    "recurring_tasks",
    "register_recurring",
    "schedule",
    "send_later",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Queue of jobs that name none.
DEFAULT_QUEUE = "default"

_recurring: dict[str, Task[Any, Any]] = {}


@dataclass(frozen=True)
class _Options:
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        # tinydj.options' validators: the loader checks with the same ones,
        # so a value accepted here never makes a job fail to load.
        check.queue(self.queue)
        check.priority(self.priority)
        if self.max_attempts is not None:
            check.max_attempts(self.max_attempts)
        if self.timeout is not None:
            check.timeout(self.timeout)


def _now(config: Config) -> datetime:
    return to_naive_utc(config.clock())


def _when(when: object) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"send_at() needs a datetime, not {type(when).__name__}")
    warn_if_naive(when, stacklevel=3)  # the caller of send_at, enqueue or schedule
    return to_naive_utc(when)


def _insert(
    config: Config,
    handler: str,
    options: _Options,
    run_at: datetime | None,
    limit: tuple[str, int] | None = None,
) -> Job:
    if config.immediate:
        return immediate.run(config, handler, options.queue, options.priority, run_at)
    now = _now(config)
    if limit is not None:
        limits.declare(config.store, *limit)
    limited = None if limit is None else limit[0]  # the concurrency key
    new = NewJob(handler, options.queue, options.priority, run_at or now, None, None, limited)
    return config.store.insert((new,), now)[0]


class Task(Generic[P, R]):
    """A function made into a job by ``@job`` or ``@every``.

    Calling it runs the function now; ``send_later`` / ``send_at`` /
    ``send_in`` store the call for a worker and return the ``Job``.

    >>> @job(queue="mail")
    ... def send_mail(to: str) -> None: ...
    >>> send_mail.send_in("10m", "ann@example.com")  # doctest: +SKIP
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int | None = None,
        every: timedelta | None = None,
        timeout: float | None = None,
        recurrence: Recurrence | None = None,
        unique: bool | str = False,
        unique_for: str | float | timedelta | None = None,
        concurrency: int | None = None,
        concurrency_key: str | Callable[..., object] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@job needs a function, not {fn!r}")
        self.fn = fn
        #: At most this many jobs (per key) at once (``tinydj.limits``), else None.
        self.concurrency = limits.concurrency(concurrency, concurrency_key, fn)
        self.options = _Options(queue, priority, max_attempts, timeout)
        self.every = every
        #: How calls are kept unique (``tinydj.unique``), else None.
        self.unique: Uniqueness | None = uniqueness(unique, unique_for)
        #: A ``with_options(key=...)`` key (``tinydj.unique``).
        self.unique_key: str | None = None
        #: Writes this task's handlers (``_writer``), once its path is known.
        self._calls: serialize.CallWriter | None = None
        #: The schedule of a recurring task (``@every``, ``@cron``), else None.
        self.recurrence = (
            Interval(every) if recurrence is None and every is not None else recurrence
        )
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<tinydj.Task {self.key}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @property
    def key(self) -> str:
        """The import path ``module:qualname`` (a recurring row's ``key``)."""
        return serialize.import_path(self) or f"{self.fn.__module__}:{self.fn.__qualname__}"

    def with_options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        key: str | None = None,
    ) -> Task[P, R]:
        """A copy of this task with other enqueue options, for one call site.

        ``key``: a unique key for this call (per function), instead of its
        arguments: while a job of this task with that key exists (as
        ``unique=`` says; by default while it waits), ``send_*`` returns it.

        >>> resize.with_options(priority=-10).send_later("urgent.png")  # doctest: +SKIP
        """
        clone: Task[P, R] = Task.__new__(Task)
        clone.__dict__.update(self.__dict__)
        if key is not None:
            clone.unique_key = explicit_key(key)
            clone.unique = self.unique or Uniqueness()
        clone._calls = None  # other options, other handlers
        clone.options = _Options(
            self.options.queue if queue is None else queue,
            self.options.priority if priority is None else priority,
            self.options.max_attempts if max_attempts is None else max_attempts,
            self.options.timeout if timeout is None else timeout,
        )
        return clone

    def _writer(self, config: Config) -> serialize.CallWriter:
        """Writes the handlers of this task's calls (kept once its import path is known)."""
        writer = self._calls
        if writer is not None and writer.allow_pickle == config.allow_pickle:
            return writer
        writer = serialize.CallWriter(
            self.fn if serialize.import_path(self) is None else self,
            allow_pickle=config.allow_pickle,
            max_attempts=self.options.max_attempts,
            timeout=self.options.timeout,
        )
        if writer.path is not None:  # else looked up again: it may be bound later
            self._calls = writer
        return writer

    def _handler(self, config: Config, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        return self._writer(config).dump(tuple(args), kwargs)

    def _limit(
        self, config: Config, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[str, int] | None:
        """The concurrency key of a call and its limit (None: no limit)."""
        if self.concurrency is None or config.immediate:
            return None
        return self.concurrency.key(self.key, args, kwargs), self.concurrency.limit

    def _send(self, run_at: datetime | None, args: Sequence[Any], kwargs: dict[str, Any]) -> Job:
        config = get_config()
        if self.unique is not None and not config.immediate:
            return self._send_unique(config, run_at, args, kwargs)
        limit = None if self.concurrency is None else self._limit(config, args, kwargs)
        return _insert(config, self._writer(config).dump(args, kwargs), self.options, run_at, limit)

    def _send_unique(
        self,
        config: Config,
        run_at: datetime | None,
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> Job:
        assert self.unique is not None
        limit = self._limit(config, args, kwargs)
        handler = self._handler(config, args, dict(sorted(kwargs.items())))
        now = _now(config)
        key = self.unique.key(self.key, handler, now, self.unique_key)
        new = NewJob(handler, self.options.queue, self.options.priority, run_at or now, key=key)
        if limit is not None:
            limits.declare(config.store, *limit)
            new = new._replace(concurrency_key=limit[0])
        return config.store.insert_unique(new, now)

    def send_later(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Store this call for a worker to run as soon as possible."""
        return self._send(None, args, kwargs)

    def send_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Store this call to run at ``when`` (aware, or naive UTC)."""
        return self._send(_when(when), args, kwargs)

    def send_in(self, delay: timedelta | float | str, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Store this call to run after ``delay`` (timedelta, seconds or "10m")."""
        return self._send(_now(get_config()) + parse_delay(delay), args, kwargs)

    def send_later_many(self, calls: Sequence[Sequence[Any] | dict[str, Any]]) -> list[Job]:
        """Store many calls in one transaction; each item is an args tuple or a kwargs dict.

        >>> resize.send_later_many([("a.png",), ("b.png",), {"path": "c.png"}])  # doctest: +SKIP
        """
        config = get_config()
        if self.unique is not None or self.concurrency is not None:  # one row per call
            return [
                self._send(None, (), dict(c))
                if isinstance(c, dict)
                else self._send(None, tuple(c), {})
                for c in calls
            ]
        handlers = self._writer(config).dump_many(calls)
        queue, priority = self.options.queue, self.options.priority
        if config.immediate:  # every call was stored and checked before the first runs
            return [immediate.run(config, h, queue, priority, None) for h in handlers]
        now = _now(config)
        return config.store.insert(NewJob.many(handlers, queue, priority, now), now)


@overload
def job(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def job(
    *,
    queue: str = ...,
    priority: int = ...,
    max_attempts: int | None = ...,
    timeout: float | None = ...,
    unique: bool | str = ...,
    unique_for: str | float | timedelta | None = ...,
    concurrency: int | None = ...,
    concurrency_key: str | Callable[..., object] | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def job(
    fn: Callable[P, R] | None = None,
    /,
    *,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_attempts: int | None = None,
    timeout: float | None = None,
    unique: bool | str = False,
    unique_for: str | float | timedelta | None = None,
    concurrency: int | None = None,
    concurrency_key: str | Callable[..., object] | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a job: ``@job`` or ``@job(queue=..., priority=..., max_attempts=...)``.

    ``priority``: lower numbers run first (default 0). ``max_attempts``:
    failures before the job is marked failed (default: ``configure``'s, 25).
    ``timeout``: seconds a run may take before it counts as a failed attempt.
    ``unique``: ``True`` (or ``"waiting"``): while a job of this function with
    equal arguments waits, ``send_*`` returns it instead of adding one;
    ``"running"``: also while it runs. ``unique_for``: ("1h") the same within
    a period window (see ``tinydj.unique``). ``concurrency``: at most this
    many jobs of the function run at once, on all workers; with
    ``concurrency_key`` (an argument's name, or a function of the arguments)
    at most this many per value (see ``tinydj.limits``).
    """
    _Options(queue, priority, max_attempts, timeout)  # validate at decoration time
    uniqueness(unique, unique_for)

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        return Task(
            f,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            unique=unique,
            unique_for=unique_for,
            concurrency=concurrency,
            concurrency_key=concurrency_key,
        )

    return decorate if fn is None else decorate(fn)


def every(
    spec: str | float | timedelta,
    *,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_attempts: int | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Run a function every ``spec`` ("30s", "1h30m", seconds, timedelta).

    The function is also a ``@job``. Every worker makes sure it has exactly
    one row in the table (key: its import path) before its first job; a new
    row is due at once. Raises ``ValueError``/``TypeError`` for a bad spec.
    For a time of day or a weekday ("at 03:00 Berlin time") use ``@cron``.
    """
    interval = parse_every(spec)
    _Options(queue, priority, max_attempts, timeout)

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        task = Task(
            f,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            every=interval,
            timeout=timeout,
        )
        register_recurring(task)
        return task

    return decorate


def register_recurring(task: Task[Any, Any]) -> None:
    """Add a recurring task to the registry (``@every`` does this)."""
    if task.recurrence is None:
        raise ValueError(f"{task!r} has no schedule")
    _recurring[task.key] = task


def recurring_tasks() -> list[Task[Any, Any]]:
    """The ``@every`` and ``@cron`` tasks imported in this process."""
    return list(_recurring.values())


def upsert_recurring(config: Config, task: Task[Any, Any], now: datetime) -> Job:
    """Write a recurring task's row (insert, or update the row with its key)."""
    spec = task.recurrence
    assert spec is not None
    handler = task._handler(config, (), {})
    new = NewJob(
        handler,
        task.options.queue,
        task.options.priority,
        spec.first_run(now),
        key=task.key,
        reoccur_in=spec.text,
    )
    return _upsert(config, new, spec, now)


def _upsert(config: Config, new: NewJob, spec: Recurrence, now: datetime) -> Job:
    # A changed cron spec moves the row to its own first fire time; a changed
    # interval runs no later than one new interval from now.
    return config.store.upsert(new, now, spec.soonest(now), replace=isinstance(spec, Cron))


def send_later(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
    """Store ``fn(*args, **kwargs)`` for a worker: any importable function or
    bound method, or (through cloudpickle) a closure or lambda."""
    if isinstance(fn, Task):
        return fn.send_later(*args, **kwargs)
    config = get_config()
    handler = serialize.dump_call(fn, args, kwargs, allow_pickle=config.allow_pickle)
    return _insert(config, handler, _Options(), None)


def enqueue(
    obj: Any, priority: int = 0, run_at: datetime | None = None, queue: str | None = None
) -> Job:
    """Store an object whose ``perform()`` a worker will call (Delayed::Job's enqueue).

    Optional hooks on the object: ``before(job)``, ``after(job)``,
    ``success(job)``, ``error(job, exc)``, ``failure(job)``, and
    ``max_attempts`` / ``reschedule_at(now, attempts)``. Raises ``TypeError``
    if ``obj`` has no ``perform()``.
    """
    config = get_config()
    options = _options_for(obj, priority, queue)
    handler = serialize.dump_object(obj, allow_pickle=config.allow_pickle)
    return _insert(config, handler, options, None if run_at is None else _when(run_at))


def schedule(
    obj: Any,
    every: str | float | timedelta | None = None,
    key: str | None = None,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    *,
    cron: str | None = None,
    tz: str | ZoneInfo | None = None,
) -> Job:
    """Run ``obj.perform()`` every ``every`` (default "3h"), or at the times of
    ``cron`` in zone ``tz`` (default UTC), as one recurring row.

    Scheduling an equal object (same class and attributes) again updates its
    row; ``key`` names the row explicitly. The first run is due at ``run_at``
    (default: now for an interval, the first fire time for cron).
    """
    spec = _spec(every, cron, tz)
    config = get_config()
    options = _options_for(obj, priority, queue)
    handler = serialize.dump_object(obj, allow_pickle=config.allow_pickle)
    if key is None:
        identity = serialize.identity(obj).encode("utf-8")  # stable across processes
        digest = hashlib.sha1(identity, usedforsecurity=False).hexdigest()[:16]
        cls = type(obj)
        key = f"{serialize.import_path(cls) or cls.__qualname__}#{digest}"
    elif not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, not {key!r}")
    elif key.startswith(UNIQUE_PREFIX):
        raise ValueError(f"keys starting with {UNIQUE_PREFIX!r} are unique jobs' keys, not {key!r}")
    now = _now(config)
    new = NewJob(
        handler,
        options.queue,
        options.priority,
        spec.first_run(now) if run_at is None else _when(run_at),
        key=key,
        reoccur_in=spec.text,
    )
    return _upsert(config, new, spec, now)


def _spec(
    every: str | float | timedelta | None, cron: str | None, tz: str | ZoneInfo | None
) -> Recurrence:
    if cron is None:
        if tz is not None:
            raise ValueError("tz= needs cron=: an interval does not depend on the time zone")
        return Interval(parse_every("3h" if every is None else every))
    if every is not None:
        raise ValueError("give schedule() either every= or cron=, not both")
    return Cron.parse(cron, tz)


def _options_for(obj: Any, priority: int, queue: str | None) -> _Options:
    if not callable(getattr(obj, "perform", None)):
        raise TypeError(f"cannot enqueue {type(obj).__name__} object: it has no perform() method")
    if queue is None:
        queue = getattr(obj, "queue_name", None) or DEFAULT_QUEUE
    return _Options(queue, priority)
