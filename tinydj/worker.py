"""The worker: reserve due jobs, run them, record the outcome.

``work_off(n)`` is the deterministic step everything else is built on:
``start()`` runs the same loop in background threads and ``run()`` runs it in
the foreground until SIGINT/SIGTERM.

Locks are leases. A worker renews the ``locked_at`` of every job it holds
from a separate thread (every ``lock_timeout / 4`` seconds), so a long job is
never taken away from a live worker, however busy its threads are. A worker
that dies stops renewing; once its lease is ``lock_timeout`` seconds old
another worker takes the job and runs it again, without counting an attempt.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import peewee

from . import serialize
from .config import Config, get_config
from .errors import DatabaseBusy, HandlerError
from .job import Job
from .leases import LeaseKeeper
from .schedule import Clock, backoff, next_run_after, parse_every, to_naive_utc
from .signals import on_stop
from .store import Listener
from .tasks import recurring_tasks, upsert_recurring
from .timeouts import MainThreadAlarm, ShutdownInterrupt, complete, run_with_timeout

__all__ = ["Worker"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often (seconds) an idle SQLite worker checks ``PRAGMA data_version`` to
#: notice jobs enqueued by other processes without a full poll.
WATCH_TICK = 0.005
#: A job whose worker died this many times in a row while running it is
#: failed (it may be what kills them: a crash, an out-of-memory kill).
MAX_INTERRUPTIONS = 5
#: Most jobs one thread reserves in one statement (adaptive batch size).
MAX_BATCH = 128
#: The adaptive batch holds about this much (seconds) of work beyond the job
#: that runs first: jobs reserved but not started wait at most about this long.
PREFETCH_BUDGET = 0.005
#: Upper bound of ``lock_timeout`` and ``poll_interval`` (a year): larger
#: values overflow datetime arithmetic and are certainly typos.
MAX_SECONDS = 365 * 86400.0
#: Longest pause after the database failed, before trying again.
MAX_ERROR_PAUSE = 10.0

_ids = itertools.count(1)


def _storable(text: str) -> str:
    """Text every database can store: no lone surrogates, no NUL (PostgreSQL)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _format_error(exc: BaseException) -> str:
    message = f"{type(exc).__name__}: {exc}"
    return message + "\n" + "".join(traceback.format_exception(exc)).rstrip()


def _call_hook(target: object | None, name: str, *args: Any) -> None:
    """Call an optional Delayed::Job hook, passing as many args as it takes."""
    hook = getattr(target, name, None) if target is not None else None
    if not callable(hook):
        return
    try:
        params = inspect.signature(hook).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not any(p.kind == p.VAR_POSITIONAL for p in params):
            args = args[: len(positional)]
    except (TypeError, ValueError):
        pass
    hook(*args)


class Worker:
    """Runs jobs from the table.

    ``queues``: names to take jobs from (None: all). ``threads``: jobs run at
    once by ``start()``/``run()``. ``lock_timeout``: seconds after which a job
    whose worker stopped renewing its lease is taken by another worker.
    ``poll_interval``: longest an idle worker waits before looking again (a
    ``send_later`` in this process, or on SQLite a commit by any process,
    wakes it at once). ``clock``: source of "now", for tests.
    ``job_timeout``: seconds a job may run unless it sets its own ``timeout``
    (see ``tinydj.timeouts``). ``batch_size``: most jobs one thread reserves
    at once; by default it adapts so that a thread holds about
    ``PREFETCH_BUDGET`` seconds of queued work (one job at a time for slow
    jobs, up to ``MAX_BATCH`` for quick ones, which then cost one commit per
    batch instead of one per job).

    >>> worker = tinydj.Worker(threads=4)  # doctest: +SKIP
    >>> worker.start(); ...; worker.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        queues: Sequence[str] | str | None = None,
        threads: int = 1,
        lock_timeout: float = 30.0,
        poll_interval: float = 1.0,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        config: Config | None = None,
        batch_size: int | None = None,
        job_timeout: float | None = None,
    ) -> None:
        if isinstance(queues, str):
            queues = [queues]
        if queues is not None and not all(isinstance(q, str) and q for q in queues):
            raise ValueError(f"queues must be non-empty strings, not {queues!r}")
        sizes = [("threads", threads)] + (
            [("batch_size", batch_size)] if batch_size is not None else []
        )
        for label, value in sizes:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, not {value!r}")
        for label, number in (("lock_timeout", lock_timeout), ("poll_interval", poll_interval)):
            if (
                not isinstance(number, int | float)
                or isinstance(number, bool)
                or not 0 < number <= MAX_SECONDS
            ):
                raise ValueError(
                    f"{label} must be a number of seconds > 0 and <= {MAX_SECONDS:.0f}, "
                    f"not {number!r}"
                )
        if job_timeout is not None and (
            not isinstance(job_timeout, int | float)
            or isinstance(job_timeout, bool)
            or not 0 < job_timeout <= MAX_SECONDS
        ):
            raise ValueError(
                f"job_timeout must be a positive number of seconds, not {job_timeout!r}"
            )
        self.job_timeout = job_timeout
        self.queues = list(queues) if queues else None
        self.threads = threads
        self.lock_timeout = float(lock_timeout)
        self.poll_interval = float(poll_interval)
        self.batch_size = batch_size
        # Running average of a job's duration, for the adaptive batch size.
        self._job_seconds = 0.01
        self.config = config or get_config()
        self.store = self.config.store
        self.clock = clock or self.config.clock
        self.name = name or f"host:{socket.gethostname()} pid:{os.getpid()} w{next(_ids)}"
        self._started = False
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._generation = 0
        self._runners: list[threading.Thread] = []
        self._exit_on_complete = False
        self._intervals: dict[str, timedelta] = {}
        # The jobs this worker holds: only these leases are renewed, so a
        # reservation whose reply was lost (dropped connection) expires.
        self.leases = LeaseKeeper(self.store, self.name, self.lock_timeout, now=self._now)
        self._alarm: MainThreadAlarm | None = None
        self._active = 0
        self._active_lock = threading.Lock()
        self._finished = threading.Event()
        self._launched = False
        self._crash: BaseException | None = None
        self._listen_quit = threading.Event()

    def __repr__(self) -> str:
        return f"<tinydj.Worker {self.name!r}>"

    # -- time and start-up -------------------------------------------------

    def _now(self) -> datetime:
        return to_naive_utc(self.clock())

    def _prepare(self) -> None:
        """Create the table and the rows of ``@every`` jobs (once per worker)."""
        if self._started:
            return
        with self._start_lock:
            if self._started:
                return
            self.store.ensure_schema()
            now = self._now()
            for task in recurring_tasks():
                upsert_recurring(self.config, task, now)
            self._started = True

    # -- leases ------------------------------------------------------------

    # -- one job -----------------------------------------------------------

    def _interval(self, job: Job) -> timedelta:
        spec = job.reoccur_in or ""
        interval = self._intervals.get(spec)
        if interval is None:
            interval = self._intervals[spec] = parse_every(spec)
        return interval

    def _perform(self, job: Job) -> bool:
        """Run one reserved job and record its outcome, except a plain
        success, which the caller acknowledges (in batches). Returns True on
        success."""
        started = time.perf_counter()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Job %s (id=%s) RUNNING", job.name, job.id, extra={"action": "start_job"})
        if job.interruptions >= MAX_INTERRUPTIONS:
            self._give_up(job)
            return False
        try:
            call = serialize.load(
                job.handler,
                allow_pickle=self.config.allow_pickle,
                allowed_modules=self.config.allowed_modules,
            )
        except HandlerError as exc:
            self._load_failed(job, exc)
            return False
        except Exception as exc:  # a loader bug must not leave the job held
            self._load_failed(job, HandlerError(f"{type(exc).__name__}: {exc}"))
            return False
        # Delayed::Job hooks apply to the object of an object job.
        hooks = call.target if getattr(call.fn, "__name__", None) == "perform" else None
        timeout = self._timeout_for(call, hooks)
        try:
            if hooks is not None:
                _call_hook(hooks, "before", job)
            if timeout is None and self._alarm is None:
                complete(call.fn(*call.args, **call.kwargs))  # the common case: no deadline
            else:
                run_with_timeout(
                    lambda: call.fn(*call.args, **call.kwargs),
                    timeout,
                    self._alarm,
                    is_async=inspect.iscoroutinefunction(getattr(call.fn, "fn", call.fn)),
                )
        except (Exception, SystemExit) as exc:  # sys.exit() in a job fails it
            if hooks is not None:
                self._guard_hook(hooks, "error", job, exc)
                self._guard_hook(hooks, "after", job)
            self._run_failed(job, call, hooks, exc, time.perf_counter() - started)
            return False
        if hooks is not None:
            self._guard_hook(hooks, "success", job)
            self._guard_hook(hooks, "after", job)
        if job.recurring:
            now = self._now()
            self._finish(
                job,
                now,
                attempts=0,
                last_error=None,
                run_at=next_run_after(job.run_at, self._interval(job), now),
                last_run_at=now,
            )
        if log.isEnabledFor(logging.INFO):
            log.info(
                "Job %s (id=%s) COMPLETED after %.4f s",
                job.name,
                job.id,
                time.perf_counter() - started,
                extra={"action": "job_success"},
            )
        return True

    def _timeout_for(self, call: serialize.Call, hooks: object | None) -> float | None:
        for value in (call.timeout, getattr(hooks, "max_run_time", None), self.job_timeout):
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    def _guard_hook(self, target: object | None, name: str, *args: Any) -> None:
        # A hook that raises after the work is done must not make the job run
        # again (Delayed::Job re-runs it); it is logged instead.
        try:
            _call_hook(target, name, *args)
        except Exception:
            log.exception("the %s hook of job %s raised", name, args[0].id)

    def _give_up(self, job: Job) -> None:
        """Fail a job that was interrupted too often: it may kill its workers."""
        self._fail_now(
            job,
            f"Interrupted {job.interruptions} times in a row: each time the worker running "
            "it died (a crash, an out-of-memory kill, a forced restart), so the job may be "
            "what kills it. Giving up; retry it once the cause is fixed.",
        )

    def _load_failed(self, job: Job, exc: HandlerError) -> None:
        self._fail_now(job, f"Job failed to load: {exc}\nHandler:\n{job.handler[:4000]}")

    def _fail_now(self, job: Job, error: str) -> None:
        """Fail a job without retries; a recurring row keeps its schedule."""
        now = self._now()
        log.error(
            "Job %s (id=%s) FAILED: %s",
            job.name,
            job.id,
            error.split("\n", 1)[0],
            extra={"action": "job_failed"},
        )
        if job.recurring:
            self._finish(
                job,
                now,
                attempts=job.attempts + 1,
                last_error=error,
                run_at=next_run_after(job.run_at, self._interval(job), now),
                last_run_at=now,
            )
        else:
            self._finish(
                job,
                now,
                attempts=job.attempts + 1,
                last_error=error,
                run_at=job.run_at,
                failed_at=now,
                interruptions=job.interruptions,
            )

    def _run_failed(
        self, job: Job, call: serialize.Call, hooks: object | None, exc: BaseException, took: float
    ) -> None:
        now = self._now()
        attempts = job.attempts + 1
        error = _format_error(exc)
        if job.recurring:
            log.warning(
                "Job %s (id=%s) FAILED (%d in a row): %s",
                job.name,
                job.id,
                attempts,
                exc,
                extra={"action": "job_error"},
            )
            self._finish(
                job,
                now,
                attempts=attempts,
                last_error=error,
                run_at=next_run_after(job.run_at, self._interval(job), now),
                last_run_at=now,
            )
            return
        limit = call.max_attempts or getattr(hooks, "max_attempts", None)
        if not isinstance(limit, int) or limit < 1:
            limit = self.config.max_attempts
        if attempts >= limit:
            log.error(
                "Job %s (id=%s) FAILED permanently after %d attempts: %s",
                job.name,
                job.id,
                attempts,
                exc,
                extra={"action": "job_failed"},
            )
            self._guard_hook(hooks, "failure", job)
            self._finish(
                job,
                now,
                attempts=attempts,
                last_error=error,
                run_at=job.run_at,
                failed_at=now,
            )
            return
        run_at: datetime | None = None
        reschedule_at = getattr(hooks, "reschedule_at", None)
        if callable(reschedule_at):
            try:
                run_at = to_naive_utc(reschedule_at(now, attempts))
            except Exception:
                log.exception("reschedule_at of job %s raised; using the default delay", job.id)
        if run_at is None:
            run_at = now + backoff(attempts)
        log.warning(
            "Job %s (id=%s) FAILED (attempt %d of %d, retry at %s) after %.4f s: %s",
            job.name,
            job.id,
            attempts,
            limit,
            run_at,
            took,
            exc,
            extra={"action": "job_error"},
        )
        self._finish(job, now, attempts=attempts, last_error=error, run_at=run_at)

    # -- the loop ----------------------------------------------------------

    def _reserve(self, limit: int, done: Sequence[int]) -> list[Job]:
        now = self._now()
        expired = now - timedelta(seconds=self.lock_timeout)
        since = self.leases.clock()
        jobs = self.store.reserve(self.name, now, expired, self.queues, limit, done)
        if len(jobs) > 1 and any(j.interruptions for j in jobs):
            # A job whose worker died may be what kills workers: it runs alone,
            # so that the jobs reserved with it are not interrupted with it.
            n = next(i for i, j in enumerate(jobs) if j.interruptions) or 1
            self.store.release(self.name, [j.id for j in jobs[n:]])
            jobs = jobs[:n]
        self.leases.drop(done)
        self.leases.hold((j.id for j in jobs), since=since)
        return jobs

    def _record(self, fn: Callable[[], T]) -> T:
        """Write a job's outcome, retrying while the database is unreachable.

        An outcome must not be lost: a job whose result was not recorded would
        run again. While the worker runs this waits as long as it takes; once
        it is stopping, at most ``lock_timeout`` (the job then runs again
        elsewhere when its lease expires).
        """
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
                    self.name,
                    exc,
                    pause,
                    extra={"action": "db_retry"},
                )
                self.store.close()
                time.sleep(pause)
                pause = min(pause * 2, MAX_ERROR_PAUSE)

    def _unhold(self, ids: Iterable[int]) -> None:
        self.leases.drop(ids)

    def _finish(self, job: Job, now: datetime, **outcome: Any) -> None:
        if outcome.get("last_error"):
            outcome["last_error"] = _storable(outcome["last_error"])
        self._record(lambda: self.store.finish(job.id, self.name, now, **outcome))
        self._unhold((job.id,))

    def _ack(self, ids: Sequence[int]) -> None:
        if ids:
            self._record(lambda: self.store.ack(self.name, ids))
            self._unhold(ids)

    def _release(self, ids: Sequence[int]) -> None:
        if ids:
            self._record(lambda: self.store.release(self.name, ids))
            self._unhold(ids)

    def _limit(self) -> int:
        """How many jobs to reserve next (see ``batch_size``)."""
        if self.batch_size is not None:
            return self.batch_size
        return max(1, min(MAX_BATCH, 1 + int(PREFETCH_BUDGET / max(self._job_seconds, 1e-6))))

    def _work(self, jobs: Iterable[Job], done: list[int]) -> tuple[int, int, list[int]]:
        """Run reserved jobs in order; return (succeeded, failed, not started)."""
        succeeded = failed = 0
        queue = list(jobs)
        lost: list[int] = []
        for i, job in enumerate(queue):
            if self._stopping.is_set():
                return succeeded, failed, lost + [j.id for j in queue[i:]]
            if not self.leases.begin(job.id):
                lost.append(job.id)  # another worker may have run it: not here
                continue
            started = time.perf_counter()
            try:
                try:
                    ok = self._perform(job)
                except (ShutdownInterrupt, KeyboardInterrupt):
                    raise
                except Exception as exc:  # e.g. a recurring row with a bad reoccur_in
                    log.exception("Job %s (id=%s) could not be handled", job.name, job.id)
                    now = self._now()
                    self._finish(
                        job,
                        now,
                        attempts=job.attempts + 1,
                        last_error=_format_error(exc),
                        run_at=now + timedelta(hours=1),
                        failed_at=None if job.recurring else now,
                    )
                    ok = False
            except ShutdownInterrupt:
                log.warning(
                    "Job %s (id=%s) INTERRUPTED by the shutdown deadline; it will run again",
                    job.name,
                    job.id,
                    extra={"action": "job_interrupted"},
                )
                return succeeded, failed, lost + [j.id for j in queue[i:]]
            self._job_seconds += 0.2 * (time.perf_counter() - started - self._job_seconds)
            if ok:
                succeeded += 1
                if not job.recurring:
                    done.append(job.id)
            else:
                failed += 1
        return succeeded, failed, lost

    def work_off(self, num: int = 100) -> tuple[int, int]:
        """Run up to ``num`` due jobs in this thread; return (succeeded, failed).

        Stops early when no job is due. Jobs are run one by one in order of
        priority (lower first), then ``run_at``, then id.
        """
        self._prepare()
        succeeded = failed = 0
        done: list[int] = []
        self.leases.acquire()
        try:
            while succeeded + failed < num and not self._stopping.is_set():
                jobs = self._reserve(min(self._limit(), num - succeeded - failed), done)
                done = []
                if not jobs:
                    break
                ok, bad, unstarted = self._work(jobs, done)
                succeeded, failed = succeeded + ok, failed + bad
                self._release(unstarted)
        finally:
            try:
                self._ack(done)
            finally:
                self.leases.release()
        return succeeded, failed

    def _runner(self) -> None:
        try:
            self._run_loop()
        except BaseException as exc:
            self._crash = exc
            self._stopping.set()
            log.critical("%s: unexpected error, stopping", self.name, exc_info=True)
            raise
        finally:
            with self._active_lock:
                self._active -= 1
                if self._active <= 0:
                    self._finished.set()

    def _run_loop(self) -> None:
        done: list[int] = []
        pause = 0.0
        idle = False
        try:
            while not self._stopping.is_set():
                try:
                    # Read the wake-up counters BEFORE looking at the table, so
                    # that a job enqueued between the look and the sleep is
                    # not slept through.
                    generation = self._generation
                    version = self.store.data_version() if idle else None
                    jobs = self._reserve(self._limit(), done)
                    done = []
                    pause = 0.0
                    if not jobs:
                        if self._exit_on_complete:
                            return
                        if idle:
                            self._idle_wait(generation, version)
                        idle = True
                        continue
                    idle = False
                    _, _, unstarted = self._work(jobs, done)
                    self._release(unstarted)
                except (peewee.DatabaseError, peewee.InterfaceError, DatabaseBusy, OSError):
                    # The database went away: wait, reconnect, go on. Any other
                    # error is a bug and ends the thread (``run()`` re-raises it).
                    pause = min(max(pause * 2, 0.1), MAX_ERROR_PAUSE)
                    log.exception("%s: database error; trying again in %.1f s", self.name, pause)
                    self._stopping.wait(pause)
                    self.store.close()
        finally:
            try:
                self._ack(done)
            except Exception:
                log.exception("%s could not acknowledge %d finished jobs", self.name, len(done))
            self.store.close()

    def _idle_wait(self, generation: int, version: int | None) -> None:
        """Sleep until woken, a commit by another process (SQLite), or the poll interval."""
        deadline = time.monotonic() + self.poll_interval
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with self._cond:
                if self._generation != generation:
                    return
                self._cond.wait(remaining if version is None else min(remaining, WATCH_TICK))
                if self._generation != generation:
                    return
            if version is not None and self.store.data_version() != version:
                return

    def _listen(self, listener: Listener, ended: threading.Event) -> None:
        """Wake idle threads on NOTIFY (Postgres); reconnect after errors."""
        pause = 0.1
        try:
            # ``ended`` belongs to this launch: stop() does not wait for this
            # thread, and a restarted worker must not keep the old one alive.
            while not ended.is_set() and not self._finished.is_set():
                try:
                    if listener.wait(0.25):
                        self.wake()
                    pause = 0.1
                except Exception as exc:
                    log.warning(
                        "%s: LISTEN connection failed (%s); polling until it is back",
                        self.name,
                        exc,
                        extra={"action": "listen_error"},
                    )
                    listener.close()
                    self._stopping.wait(pause)
                    pause = min(pause * 2, MAX_ERROR_PAUSE)
        finally:
            listener.close()

    def wake(self) -> None:
        """Make idle threads look for jobs now (called after an enqueue here)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    # -- background and foreground -----------------------------------------

    def start(self, *, exit_on_complete: bool = False) -> Worker:
        """Run jobs in ``threads`` background threads; return at once."""
        self._launch(self.threads, exit_on_complete)
        return self

    def _launch(self, threads: int, exit_on_complete: bool) -> None:
        """Start ``threads`` runner threads plus the lease and LISTEN helpers."""
        with self._start_lock:
            if self._runners or self._active:
                raise RuntimeError(f"{self!r} is already running")
            self._active = max(threads, 1)  # 0 threads: the caller runs the loop itself
        self._finished.clear()
        self._stopping.clear()
        self._crash = None
        self._listen_quit = threading.Event()
        self._exit_on_complete = exit_on_complete
        try:
            self._prepare()
        except BaseException:
            self._active = 0
            raise
        self.store.add_listener(self.wake)
        self.leases.acquire()
        self._launched = True
        self._runners = [
            threading.Thread(target=self._runner, name=f"tinydj-worker-{i}", daemon=True)
            for i in range(1, threads + 1)
        ]
        listener = self.store.listener()
        if listener is not None:
            self._runners.append(
                threading.Thread(
                    target=self._listen,
                    args=(listener, self._listen_quit),
                    name="tinydj-listen",
                    daemon=True,
                )
            )
        for thread in self._runners:
            thread.start()
        log.info(
            "%s started: %d thread(s), queues %s",
            self.name,
            max(threads, 1),
            ", ".join(self.queues) if self.queues else "all",
            extra={"action": "worker_start"},
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs, let running ones finish, release what is left.

        With ``timeout``, running jobs get that many seconds; jobs still
        running then are abandoned: their locks are released so that they run
        again elsewhere (the threads cannot be stopped). Idempotent and
        thread-safe.
        """
        self._stopping.set()
        self._listen_quit.set()
        self.wake()
        runners, self._runners = self._runners, []
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in runners:
            # The LISTEN thread ends by itself within its 0.25 s wait, closing
            # its connection; waiting for it would only delay every stop.
            if thread is not threading.current_thread() and thread.name != "tinydj-listen":
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        abandoned = [t for t in runners if t.is_alive() and t.name.startswith("tinydj-worker")]
        if abandoned:
            log.warning(
                "%s: %d job thread(s) still running after the %.1f s shutdown timeout; "
                "their jobs are released and will run again elsewhere",
                self.name,
                len(abandoned),
                timeout,
                extra={"action": "shutdown_timeout"},
            )
        self.store.remove_listener(self.wake)
        launched, self._launched = self._launched, False
        if launched:
            self.leases.release()
            try:
                self._record(lambda: self.store.release(self.name))
            finally:
                self._unhold(self.leases.held())
                self.store.close()
            log.info("%s stopped", self.name, extra={"action": "worker_stop"})
        with self._active_lock:
            self._active = 0

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the runner threads to end; True if they all have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._runners):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._runners)

    @property
    def running(self) -> bool:
        """True while runner threads are alive."""
        return any(t.is_alive() for t in self._runners)

    def run(self, *, exit_on_complete: bool = False, shutdown_timeout: float | None = None) -> None:
        """Run jobs in the foreground until SIGINT/SIGTERM (or, with
        ``exit_on_complete``, until no job is due).

        The first signal stops taking jobs and lets running ones finish
        (for at most ``shutdown_timeout`` seconds, if given: then they are
        interrupted or abandoned and their locks released, so they run again
        elsewhere without counting an attempt). A second signal exits at once.
        With one thread, called from the main thread, jobs run in the main
        thread, where a job's ``timeout`` can really stop it.
        """
        requested = threading.Event()
        main_thread = self.threads == 1 and MainThreadAlarm.usable()

        def request_stop() -> None:
            requested.set()
            self._stopping.set()
            self.wake()
            if self._alarm is not None and shutdown_timeout is not None:
                self._alarm.set_shutdown_deadline(shutdown_timeout)

        with on_stop(request_stop):
            if main_thread:
                with MainThreadAlarm() as alarm:
                    self._alarm = alarm
                    try:
                        self._launch(0, exit_on_complete)
                        self._runner()
                    finally:
                        self._alarm = None
                        self.stop()
                return
            self.start(exit_on_complete=exit_on_complete)
            try:
                while not requested.wait(0.1):
                    if self._finished.is_set():
                        break
            finally:
                self.stop(timeout=shutdown_timeout)
        if self._crash is not None:
            raise self._crash
