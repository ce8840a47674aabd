"""Writing what became of a worker's jobs, whatever the database does.

``Completer.complete(job, outcome)`` asks ``outcome.decide`` what to do, logs
it, runs the ``failure`` hook of a job that failed for good, and writes the
row (a plain success is only acknowledged later, in batches, by the caller).

An outcome must not be lost: a job whose result was not recorded would run
again. Every write goes through ``Completer.record``, which retries while the
database is unreachable (as long as it takes while the worker runs; once it
is stopping, at most ``lock_timeout``, after which the job runs again
elsewhere when its lease expires). Each write checks ``locked_by`` (in the
store), so a worker that lost a lease cannot overwrite the work of the one
that took over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

import peewee

from .errors import DatabaseBusy
from .hooks import call_hook_guarded
from .job import Job
from .leases import LeaseKeeper
from .outcome import Decision, Kind, Outcome, Policy, Write, decide
from .wakeup import MAX_ERROR_PAUSE

__all__ = ["Completer", "storable"]

log = logging.getLogger("tinydj.worker")
T = TypeVar("T")
_SUCCEEDED = Kind.SUCCEEDED
_INFO = logging.INFO


def storable(text: str) -> str:
    """Text every database can store: no lone surrogates, no NUL (PostgreSQL)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class Completer:
    """Finishes, acknowledges and releases the jobs of one worker."""

    def __init__(
        self,
        leases: LeaseKeeper,
        stopping: threading.Event,
        *,
        policy: Policy,
        now: Callable[[], datetime],
    ) -> None:
        self.store = leases.store
        self.worker = leases.worker
        self.leases = leases
        self._stopping = stopping
        self.lock_timeout = leases.lock_timeout
        self.policy = policy
        self._now = now
        self._reported: set[int] = set()  # jobs whose failure is logged once per worker

    def quiet(self) -> bool:
        """True while a plain success (not recurring) needs nothing from
        ``complete``: no log line (the runner then skips the call; it asks
        once per batch)."""
        return not log.isEnabledFor(_INFO)

    def complete(self, job: Job, outcome: Outcome) -> bool:
        """Decide, log and write what follows ``outcome``; True on success."""
        ok = outcome.kind is _SUCCEEDED
        if ok and job.reoccur_in is None:
            # The hot path. ``decide`` says the same (delete the row: the
            # caller acknowledges it with its next reservation) but needs a
            # clock reading and a Decision per job, a tenth of a quick job.
            if log.isEnabledFor(_INFO):
                log.info(
                    "Job %s (id=%s) COMPLETED after %.4f s",
                    job.name,
                    job.id,
                    outcome.seconds,
                    extra={"action": "job_success"},
                )
            return True
        now = self._now()
        try:
            decision = decide(job, outcome, now, self.policy)
        except Exception as exc:  # e.g. a recurring row with a bad reoccur_in
            log.exception("Job %s (id=%s) could not be handled", job.name, job.id)
            decision = decide(job, Outcome.broken(exc), now, self.policy)
            ok = False
        self._log(job, decision)
        if decision.final:
            call_hook_guarded(outcome.hooks, "failure", job)
        if decision.write is not None:
            self.finish(job, now, decision.write)
        return ok

    def broken(self, job: Job, exc: Exception) -> None:
        """Record a job whose handling raised (it must not stay locked)."""
        log.exception("Job %s (id=%s) could not be handled", job.name, job.id)
        self.complete(job, Outcome.broken(exc))

    def _log(self, job: Job, decision: Decision) -> None:
        level = decision.level
        if not level:
            return
        if decision.once:
            if job.id in self._reported:
                level = logging.DEBUG
            self._reported.add(job.id)
        if log.isEnabledFor(level):
            log.log(
                level,
                "Job %s (id=%s) " + decision.message,
                job.name,
                job.id,
                *decision.args,
                extra={"action": decision.action},
            )

    def record(self, fn: Callable[[], T]) -> T:
        """Run the write ``fn``, retrying while the database is unreachable."""
        pause = 0.05
        deadline: float | None = None
        while True:
            try:
                return fn()
            except (peewee.OperationalError, peewee.InterfaceError, DatabaseBusy) as exc:
                now = time.monotonic()
                if self._stopping.is_set():
                    deadline = deadline or now + self.lock_timeout
                    if now > deadline:
                        raise
                log.warning(
                    "%s: database unavailable (%s); retrying in %.2f s",
                    self.worker,
                    exc,
                    pause,
                    extra={"action": "db_retry"},
                )
                self.store.close()
                time.sleep(pause)
                pause = min(pause * 2, MAX_ERROR_PAUSE)

    def finish(self, job: Job, now: datetime, write: Write) -> None:
        """Write the row of a job that is kept (retry, failure, next period)."""
        error = storable(write.last_error) if write.last_error else write.last_error
        self.record(
            lambda: self.store.finish(
                job.id,
                self.worker,
                now,
                attempts=write.attempts,
                last_error=error,
                run_at=write.run_at,
                failed_at=write.failed_at,
                last_run_at=write.last_run_at,
                interruptions=write.interruptions,
            )
        )
        self.leases.drop((job.id,))

    def ack(self, ids: Sequence[int]) -> None:
        """Delete the rows of jobs that succeeded."""
        if ids:
            self.record(lambda: self.store.ack(self.worker, ids))
            self.leases.drop(ids)

    def release(self, ids: Sequence[int] | None) -> None:
        """Unlock jobs this worker holds but will not run (``None``: all)."""
        if ids is None:
            held = self.leases.held()
            try:
                # By id: nothing indexes locked_by (every reservation would write it).
                self.record(lambda: self.store.release(self.worker, held))
            finally:
                self.leases.drop(self.leases.held())
        elif ids:
            self.record(lambda: self.store.release(self.worker, ids))
            self.leases.drop(ids)
