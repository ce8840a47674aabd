"""Batches: reserve due jobs in one statement, run them in order.

A thread reserves several quick jobs at once (one commit per batch instead
of one per job): by default as many as make about ``PREFETCH_BUDGET`` seconds
of work after the first, judged by a running average of a job's duration
(one at a time for slow jobs, up to ``MAX_BATCH`` for quick ones). Before
each job starts the lease keeper is asked whether the worker still holds it:
a job whose lease was lost (the worker was frozen) is not run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from .completer import Completer
from .job import Job
from .limits import Gate, reservation
from .outcome import Kind, Outcome
from .timeouts import ShutdownInterrupt

__all__ = ["MAX_BATCH", "PREFETCH_BUDGET", "Batches"]

log = logging.getLogger("tinydj.worker")
_SUCCEEDED = Kind.SUCCEEDED

#: Most jobs one thread reserves in one statement (adaptive batch size).
MAX_BATCH = 128
#: The adaptive batch holds about this much (seconds) of work beyond the job
#: that runs first: jobs reserved but not started wait at most about this long.
PREFETCH_BUDGET = 0.005


class Batches:
    """Reserves and runs the batches of one worker (any number of threads).

    ``execute(job) -> Outcome`` runs one job (``Executor.run``), whose outcome
    the completer records; ``count(tally)`` is told, after each batch, how
    many jobs of each queue succeeded and failed (``Presence.count``);
    ``refresh()`` is called before each batch (``Executor.refresh``);
    ``in_flight`` maps each runner thread to the id of the job it runs.
    """

    def __init__(
        self,
        completer: Completer,
        *,
        queues: Sequence[str] | None,
        batch_size: int | None,
        execute: Callable[[Job], Outcome],
        count: Callable[[dict[str, list[int]]], None] = lambda tally: None,
        refresh: Callable[[], None] = lambda: None,
        stopping: threading.Event,
        now: Callable[[], datetime],
        paused: Callable[[], frozenset[str]] = frozenset,
        gate: Gate | None = None,
    ) -> None:
        self.leases = leases = completer.leases
        self.store = leases.store
        self.worker = leases.worker
        self.lock_timeout = leases.lock_timeout
        self.queues = queues
        #: The queues paused by an operator (read at most once per poll).
        self.paused = paused
        self.batch_size = batch_size
        #: Takes jobs with a concurrency limit (``tinydj.limits``).
        self.gate = gate
        self._completer = completer
        self._execute = execute
        self._count = count
        self._refresh = refresh
        self._stopping = stopping
        self._now = now
        self.in_flight: dict[int, int] = {}
        # Running average of a job's duration, for the adaptive batch size.
        self.job_seconds = 0.01

    def reserve(self, limit: int) -> list[Job]:
        """Reserve up to ``limit`` due jobs; delete the rows of the jobs this
        thread finished in the same transaction."""
        done = self.leases.take_done()
        try:
            return self._reserve(limit, done)
        except BaseException:
            self.leases.give_back(done)
            raise

    def _reserve(self, limit: int, done: list[int]) -> list[Job]:
        now = self._now()
        expired = now - timedelta(seconds=self.lock_timeout)
        since = self.leases.clock()
        paused = sorted(self.paused())
        limited = None
        if self.gate is not None and self.gate.active():
            want = reservation(self.store, now, expired, self.queues or (), paused)
            gate = self.gate
            limited = lambda n: gate.take(want, n)  # noqa: E731
        jobs = self.store.reserve(
            self.worker, now, expired, self.queues, limit, done, exclude=paused, limited=limited
        )
        if len(jobs) > 1 and any(j.interruptions for j in jobs):
            # A job whose worker died may be what kills workers: it runs alone,
            # so that the jobs reserved with it are not interrupted with it.
            n = next(i for i, j in enumerate(jobs) if j.interruptions) or 1
            self.store.release(self.worker, [j.id for j in jobs[n:]])
            jobs = jobs[:n]
        self.leases.drop(done)
        self.leases.hold((j.id for j in jobs), since=since)
        return jobs

    def limit(self) -> int:
        """How many jobs to reserve next (see ``batch_size``)."""
        if self.batch_size is not None:
            return self.batch_size
        return max(1, min(MAX_BATCH, 1 + int(PREFETCH_BUDGET / max(self.job_seconds, 1e-6))))

    def run(self, jobs: Iterable[Job]) -> tuple[int, int, list[int]]:
        """Run reserved jobs in order; return (succeeded, failed, not started)."""
        queue = list(jobs)
        tally: dict[str, list[int]] = {}  # queue -> [succeeded, failed]
        started = time.perf_counter()
        try:
            lost = self._run(queue, tally)
        finally:
            self._count(tally)
            ran = sum(cell[0] + cell[1] for cell in tally.values())
            if ran:  # as a running average over each job (weight 0.2) would
                took = (time.perf_counter() - started) / ran
                self.job_seconds += (1 - 0.8**ran) * (took - self.job_seconds)
        succeeded = sum(cell[0] for cell in tally.values())
        return succeeded, sum(cell[1] for cell in tally.values()), lost

    def _run(self, queue: list[Job], tally: dict[str, list[int]]) -> list[int]:
        """``run``'s loop: the ids not started; outcomes counted in ``tally``."""
        lost: list[int] = []
        me = threading.get_ident()
        # Bound once per batch: this loop's own cost is paid per job.
        stopping, begin = self._stopping.is_set, self.leases.begin
        finished = self.leases.finishing().append
        execute, complete, in_flight = self._execute, self._completer.complete, self.in_flight
        quiet = self._completer.quiet()  # a plain success is then only acknowledged
        self._refresh()
        for i, job in enumerate(queue):
            if stopping():
                return lost + [j.id for j in queue[i:]]
            job_id = job.id
            if not begin(job_id):
                lost.append(job_id)  # another worker may have run it: not here
                continue
            in_flight[me] = job_id
            try:
                outcome = execute(job)
                if outcome.kind is _SUCCEEDED and quiet and job.reoccur_in is None:
                    ok = True
                else:
                    ok = complete(job, outcome)
            except ShutdownInterrupt:
                log.warning(
                    "Job %s (id=%s) INTERRUPTED by the shutdown deadline; it will run again",
                    job.name,
                    job_id,
                    extra={"action": "job_interrupted"},
                )
                return lost + [j.id for j in queue[i:]]
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # its handling failed: it must not stay locked
                self._completer.broken(job, exc)
                ok = False
            finally:
                in_flight.pop(me, None)
            cell = tally.get(job.queue)
            if cell is None:
                cell = tally[job.queue] = [0, 0]
            if ok:
                cell[0] += 1
                if job.reoccur_in is None:  # a recurring row was moved to its next run
                    finished(job_id)
            else:
                cell[1] += 1
        return lost
