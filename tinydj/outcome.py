"""What became of one run of a job, and what to write for it.

The executor reports an ``Outcome``; ``decide(job, outcome, now, policy)``
turns it into a ``Decision``: delete the row, retry later with a growing
delay, fail it for good, or move a recurring row to its next period. It reads
no clock and no database, so tests drive it directly::

    decide(job, Outcome.failure(ValueError("boom"), 0.1, max_attempts=3), now, Policy())

``next_run(job, now)`` is the one place that computes when a recurring row
runs next.
"""

from __future__ import annotations

import enum
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import recurrence
from .job import Job, builder
from .schedule import backoff

__all__ = [
    "MAX_INTERRUPTIONS",
    "Decision",
    "Kind",
    "Outcome",
    "Policy",
    "Write",
    "decide",
    "describe",
    "format_error",
    "next_run",
]

#: A job whose worker died this many times in a row while running it is
#: failed (it may be what kills them: a crash, an out-of-memory kill).
MAX_INTERRUPTIONS = 5
#: How long a job that the worker could not handle waits before its next try.
BROKEN_DELAY = timedelta(hours=1)


class Kind(enum.Enum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    #: The job raised (or timed out, or called ``sys.exit()``).
    FAILED = "failed"
    #: Its handler could not be loaded (missing function, bad YAML ...).
    UNLOADABLE = "unloadable"
    #: Not run: its workers died while running it ``MAX_INTERRUPTIONS`` times.
    GAVE_UP = "gave_up"
    #: The worker could not handle its outcome (e.g. a bad ``reoccur_in``).
    BROKEN = "broken"


def describe(exc: BaseException) -> str:
    """One line for an exception: ``SystemExit`` says its exit code."""
    if isinstance(exc, SystemExit):
        code = 0 if exc.code is None else exc.code
        text = f"exit code {code}" if isinstance(code, int) else f"{code} (exit code 1)"
        return f"{type(exc).__name__}: {text}"
    return f"{type(exc).__name__}: {exc}"


def format_error(exc: BaseException) -> str:
    """``last_error`` of a failed run: one line, then the traceback."""
    return describe(exc) + "\n" + "".join(traceback.format_exception(exc)).rstrip()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the executor reports about one job.

    ``error``: the text for ``last_error``; ``summary``: one line for the log;
    ``max_attempts``: the job's own limit (option or hook), resolved;
    ``retry_at``: when its ``reschedule_at`` hook wants the retry;
    ``hooks``: the object whose ``failure`` hook runs if it fails for good.
    """

    kind: Kind
    seconds: float = 0.0
    error: str | None = None
    summary: str = ""
    max_attempts: int | None = None
    retry_at: datetime | None = None
    hooks: object | None = field(default=None, compare=False)

    @classmethod
    def success(cls, seconds: float) -> Outcome:
        if cls is not Outcome:
            return cls(Kind.SUCCEEDED, seconds)
        # Once per job: the frozen dataclass's __init__ costs four times this.
        return _build(_SUCCEEDED, seconds, None, "", None, None, None)

    @classmethod
    def failure(
        cls,
        exc: BaseException,
        seconds: float,
        *,
        max_attempts: int | None = None,
        retry_at: datetime | None = None,
        hooks: object | None = None,
    ) -> Outcome:
        text = describe(exc)
        summary = text.split(": ", 1)[1] if isinstance(exc, SystemExit) else str(exc)
        return cls(Kind.FAILED, seconds, format_error(exc), summary, max_attempts, retry_at, hooks)

    @classmethod
    def unloadable(cls, reason: BaseException, handler: str) -> Outcome:
        error = f"Job failed to load: {reason}\nHandler:\n{handler[:4000]}"
        return cls(Kind.UNLOADABLE, error=error, summary=error.split("\n", 1)[0])

    @classmethod
    def gave_up(cls, interruptions: int) -> Outcome:
        error = (
            f"Interrupted {interruptions} times in a row: each time the worker running "
            "it died (a crash, an out-of-memory kill, a forced restart), so the job may be "
            "what kills it. Giving up; retry it once the cause is fixed."
        )
        return cls(Kind.GAVE_UP, error=error, summary=error.split("\n", 1)[0])

    @classmethod
    def broken(cls, exc: BaseException) -> Outcome:
        return cls(Kind.BROKEN, error=format_error(exc), summary=str(exc))


_SUCCEEDED = Kind.SUCCEEDED
#: ``Outcome(*values)`` with every field given (see ``job.builder``).
_build = builder(Outcome)


@dataclass(frozen=True, slots=True)
class Policy:
    """The worker's rules: ``max_attempts`` unless a job sets its own;
    ``backoff(attempts)``: the delay before a retry."""

    max_attempts: int = 25
    max_interruptions: int = MAX_INTERRUPTIONS
    backoff: Callable[[int], timedelta] = backoff


@dataclass(frozen=True, slots=True)
class Write:
    """The columns written to a row that is kept (``Store.finish``)."""

    attempts: int
    last_error: str | None
    run_at: datetime
    failed_at: datetime | None = None
    last_run_at: datetime | None = None
    interruptions: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a job's row, and what to log.

    ``write`` None: delete the row (a plain success). ``final``: the job
    failed for good (its ``failure`` hook runs). The log line is
    ``"Job NAME (id=ID) " + message % args`` at ``level`` (0: no line);
    ``once``: log it once per worker and job (a recurring row that cannot be
    loaded fails every period).
    """

    write: Write | None
    level: int
    message: str
    args: tuple[object, ...]
    action: str
    final: bool = False
    once: bool = False


def next_run(job: Job, now: datetime) -> datetime:
    """When a recurring row runs next: for an interval, the first period
    boundary after ``now`` counted from its planned ``run_at``; for a cron
    spec, the first fire time after both (missed periods are skipped).

    Raises ``ValueError`` when its ``reoccur_in`` is neither.
    """
    return recurrence.next_run(job.reoccur_in or "", job.run_at, now)


def decide(job: Job, outcome: Outcome, now: datetime, policy: Policy) -> Decision:
    """Retry, fail or reschedule ``job`` after ``outcome`` (pure).

    May raise ``ValueError`` for a recurring row with a bad interval: the
    caller then decides ``Outcome.broken(exc)``, which cannot raise.
    """
    kind = outcome.kind
    if kind is Kind.SUCCEEDED:
        return _succeeded(job, outcome, now)
    if kind is Kind.FAILED:
        return _failed(job, outcome, now, policy)
    if kind is Kind.BROKEN:
        failed_at = None if job.recurring else now
        write = Write(job.attempts + 1, outcome.error, now + BROKEN_DELAY, failed_at)
        return Decision(write, 0, "", (), "job_failed")
    return _fail_now(job, outcome, now)


def _succeeded(job: Job, outcome: Outcome, now: datetime) -> Decision:
    write = Write(0, None, next_run(job, now), last_run_at=now) if job.recurring else None
    return Decision(
        write, logging.INFO, "COMPLETED after %.4f s", (outcome.seconds,), "job_success"
    )


def _failed(job: Job, outcome: Outcome, now: datetime, policy: Policy) -> Decision:
    attempts = job.attempts + 1
    error, summary = outcome.error, outcome.summary
    if job.recurring:
        write = Write(attempts, error, next_run(job, now), last_run_at=now)
        return Decision(
            write, logging.WARNING, "FAILED (%d in a row): %s", (attempts, summary), "job_error"
        )
    limit = outcome.max_attempts or policy.max_attempts
    if attempts >= limit:
        return Decision(
            Write(attempts, error, job.run_at, failed_at=now),
            logging.ERROR,
            "FAILED permanently after %d attempts: %s",
            (attempts, summary),
            "job_failed",
            final=True,
        )
    run_at = outcome.retry_at or now + policy.backoff(attempts)
    return Decision(
        Write(attempts, error, run_at),
        logging.WARNING,
        "FAILED (attempt %d of %d, retry at %s) after %.4f s: %s",
        (attempts, limit, run_at, outcome.seconds, summary),
        "job_error",
    )


def _fail_now(job: Job, outcome: Outcome, now: datetime) -> Decision:
    """Fail without retries (it cannot load, or it kills its workers); a
    recurring row keeps its schedule."""
    attempts = job.attempts + 1
    if not job.recurring:
        write = Write(attempts, outcome.error, job.run_at, now, interruptions=job.interruptions)
        return Decision(write, logging.ERROR, "FAILED: %s", (outcome.summary,), "job_failed")
    write = Write(attempts, outcome.error, next_run(job, now), last_run_at=now)
    if outcome.kind is not Kind.UNLOADABLE:
        return Decision(write, logging.ERROR, "FAILED: %s", (outcome.summary,), "job_failed")
    return Decision(
        write,
        logging.ERROR,
        "FAILED: %s. This recurring row fails every period until its function exists "
        "again (renamed or deleted?); remove it with: tinydj delete %s",
        (outcome.summary, job.id),
        "job_failed",
        once=True,
    )
