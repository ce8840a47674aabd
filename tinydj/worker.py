"""The worker: reserve due jobs, run them, record the outcome.

``work_off(n)`` is the deterministic step everything else is built on:
``start()`` runs the same loop in background threads and ``run()`` runs it in
the foreground until SIGINT/SIGTERM.

The worker is the public face of parts that each do one thing:

- ``leases.LeaseKeeper``: the leases it holds, renewed from a thread of their
  own (every ``lock_timeout / 4`` s), and which of them it lost;
- ``executor.Executor``: runs one loaded job (hooks, deadline) and returns an
  ``outcome.Outcome``;
- ``outcome.decide``: retry, fail or reschedule (pure);
- ``completer.Completer``: writes the decision, retrying while the database
  is away;
- ``wakeup.WakeUp``: wakes idle threads (an enqueue here; on SQLite a
  datagram from an enqueue in another process, else ``data_version``;
  Postgres NOTIFY);
- ``recurring.RecurringRows``: the rows of the ``@every`` functions.

A worker that dies stops renewing; once its lease is ``lock_timeout``
seconds old another worker takes the job and runs it again, without
counting an attempt.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import socket
import threading
from collections.abc import Sequence
from datetime import datetime

import peewee

from . import options
from .batch import MAX_BATCH, PREFETCH_BUDGET, Batches
from .completer import Completer
from .config import Config, get_config
from .errors import DatabaseBusy
from .executor import Executor
from .leases import LeaseKeeper
from .limits import Gate
from .outcome import MAX_INTERRUPTIONS, Policy
from .pool import Pool
from .presence import Presence
from .recurring import RecurringRows
from .redact import mask
from .schedule import Clock, to_naive_utc
from .signals import on_stop
from .timeouts import MainThreadAlarm
from .wakeup import MAX_ERROR_PAUSE, WATCH_TICK, WakeUp

__all__ = ["MAX_BATCH", "MAX_INTERRUPTIONS", "PREFETCH_BUDGET", "WATCH_TICK", "Worker"]

log = logging.getLogger(__name__)

#: Upper bound of ``lock_timeout`` and ``poll_interval`` (a year).
MAX_SECONDS = options.MAX_SECONDS

#: Finished jobs wait at most about this long (seconds), plus one renewal
#: period, to be deleted: a thread that goes on with a long job must not hold
#: them (were its worker to die, they would run again).
FLUSH_AFTER = 0.05

_ids = itertools.count(1)


def _database(config: Config) -> str:
    """The database, for the start-up line (never with its password)."""
    if config.url:
        return mask(config.url)
    return mask(f"{type(config.database).__name__}({config.database.database!r})")


def _log_started(worker: Worker, threads: int, recurring: str) -> None:
    log.info(
        "%s started: %d thread(s), queues %s; database %s, lock timeout %g s, recurring jobs: %s",
        worker.name,
        threads,
        ", ".join(worker.queues) if worker.queues else "all",
        _database(worker.config),
        worker.lock_timeout,
        recurring,
        extra={"action": "worker_start"},
    )


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
        self.queues = options.queues(queues)
        self.threads = options.threads(threads)
        self.lock_timeout = options.lock_timeout(lock_timeout)
        self.poll_interval = options.poll_interval(poll_interval)
        self.batch_size = None if batch_size is None else options.batch_size(batch_size)
        self.job_timeout = (
            None if job_timeout is None else options.seconds("job_timeout", job_timeout)
        )
        self.config = config or get_config()
        self.store = self.config.store
        self.clock = clock or self.config.clock
        self.name = name or f"host:{socket.gethostname()} pid:{os.getpid()} w{next(_ids)}"
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._started = False
        self._assemble()
        self._exit_on_complete = False
        self._active = 0
        self._active_lock = threading.Lock()
        self._finished = threading.Event()
        self._launched = False
        self._crash: BaseException | None = None
        self._listen_quit = threading.Event()

    def _assemble(self) -> None:
        """Build the parts (see the module's docstring)."""
        # The jobs this worker holds: only these leases are renewed, so a
        # reservation whose reply was lost (dropped connection) expires.
        self.leases = LeaseKeeper(self.store, self.name, self.lock_timeout, now=self._now)
        self.leases.chores.append(self._chores)
        self._wakeup = WakeUp(self.store, self.poll_interval, self._stopping)
        policy = Policy(max_attempts=self.config.max_attempts)
        self._completer = Completer(self.leases, self._stopping, policy=policy, now=self._now)
        self._executor = Executor(
            self.config,
            policy,
            now=self._now,
            job_timeout=self.job_timeout,
            owner=self,
        )
        self._recurring = RecurringRows(self.config, self.name)
        self._presence = Presence(
            self.store,
            self.name,
            queues=self.queues,
            poll_interval=self.poll_interval,
            now=self._now,
        )
        self._batches = Batches(
            self._completer,
            queues=self.queues,
            batch_size=self.batch_size,
            execute=self._executor.run,
            refresh=self._executor.refresh,
            count=self._presence.count,
            stopping=self._stopping,
            now=self._now,
            paused=self._presence.paused,
            gate=Gate(self.store, self.poll_interval),
        )
        self._pool = Pool(self.name)

    def __repr__(self) -> str:
        return f"<tinydj.Worker {self.name!r}>"

    # -- time, start-up and housekeeping -----------------------------------

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
            self._recurring.register(self._now())
            self._recurring.hint()
            self._started = True

    def _chores(self) -> None:
        """Housekeeping off the runner threads: acknowledge finished jobs that
        a busy thread holds, restore deleted ``@every`` rows."""
        self._flush(FLUSH_AFTER)
        if self._launched:
            self._presence.beat()
        try:
            self._recurring.check(self._now())
        except Exception:
            log.warning("%s could not check its recurring rows", self.name, exc_info=True)

    def _flush(self, older_than: float) -> None:
        done = self.leases.take_waiting(older_than)
        try:
            self._completer.ack(done)
        except Exception:
            self.leases.give_back(done)  # taken again at the next tick
            log.warning("%s could not acknowledge finished jobs", self.name, exc_info=True)

    # -- the loop ----------------------------------------------------------

    def work_off(self, num: int = 100) -> tuple[int, int]:
        """Run up to ``num`` due jobs in this thread; return (succeeded, failed).

        Stops early when no job is due. Jobs are run one by one in order of
        priority (lower first), then ``run_at``, then id.
        """
        self._prepare()
        self._chores()
        succeeded = failed = 0
        self.leases.acquire()
        try:
            while succeeded + failed < num and not self._stopping.is_set():
                jobs = self._batches.reserve(min(self._batches.limit(), num - succeeded - failed))
                if not jobs:
                    break
                ok, bad, unstarted = self._batches.run(jobs)
                succeeded, failed = succeeded + ok, failed + bad
                self._completer.release(unstarted)
        finally:
            try:
                self._completer.ack(self.leases.take_done())
            finally:
                self.leases.release()
                self._presence.flush()
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
        pause = 0.0
        idle = False
        try:
            while not self._stopping.is_set():
                try:
                    reserve = functools.partial(self._batches.reserve, self._batches.limit())
                    jobs, ticket = self._wakeup.look(reserve, watch=idle)
                    pause = 0.0
                    if not jobs:
                        if self._exit_on_complete:
                            return
                        if idle:
                            self._wakeup.sleep(ticket)
                        idle = True
                        continue
                    idle = False
                    _, _, unstarted = self._batches.run(jobs)
                    self._completer.release(unstarted)
                except (peewee.DatabaseError, peewee.InterfaceError, DatabaseBusy, OSError):
                    # The database went away: wait, reconnect, go on. Any other
                    # error is a bug and ends the thread (``run()`` re-raises it).
                    pause = min(max(pause * 2, 0.1), MAX_ERROR_PAUSE)
                    log.exception("%s: database error; trying again in %.1f s", self.name, pause)
                    self._stopping.wait(pause)
                    self.store.close()
        finally:
            done = self.leases.take_done()
            try:
                self._completer.ack(done)
            except Exception:
                log.exception("%s could not acknowledge %d finished jobs", self.name, len(done))
            self.store.close()

    def wake(self) -> None:
        """Make idle threads look for jobs now (called after an enqueue here)."""
        self._wakeup.ring()

    # -- background and foreground -----------------------------------------

    def start(self, *, exit_on_complete: bool = False) -> Worker:
        """Run jobs in ``threads`` background threads; return at once."""
        self._launch(self.threads, exit_on_complete)
        return self

    def _launch(self, threads: int, exit_on_complete: bool) -> None:
        """Start ``threads`` runner threads plus the lease and LISTEN helpers."""
        with self._start_lock:
            if self._pool or self._active:
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
        self._presence.announce(max(threads, 1))
        self.leases.acquire()
        self._launched = True
        listener = self.store.listener()
        listen = None
        if listener is not None:
            listen = (self._wakeup.listen, (listener, self._listen_quit, self._finished, self.name))
        self._pool.launch(self._runner, threads, listen)
        _log_started(self, max(threads, 1), self._recurring.describe())

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
        self._pool.stop(timeout)
        self.store.remove_listener(self.wake)
        launched, self._launched = self._launched, False
        if launched:
            self._flush(0.0)
            self.leases.release()
            self._presence.leave()
            try:
                self._completer.release(None)
            finally:
                self.store.close()
            log.info("%s stopped", self.name, extra={"action": "worker_stop"})
        with self._active_lock:
            self._active = 0

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the runner threads to end; True if they all have."""
        return self._pool.join(timeout)

    @property
    def running(self) -> bool:
        """True while runner threads are alive."""
        return self._pool.alive

    def _request_stop(self, shutdown_timeout: float | None) -> None:
        """The first SIGINT/SIGTERM of ``run()``: say so at once, then stop."""
        log.info(
            "stopping: waiting for %d running job(s); Ctrl-C again to exit now",
            len(self._batches.in_flight),
            extra={"action": "worker_stopping"},
        )
        self._stopping.set()
        self.wake()
        alarm = self._executor.alarm  # set while jobs run in the main thread
        if alarm is not None and shutdown_timeout is not None:
            alarm.set_shutdown_deadline(shutdown_timeout)

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

        def request_stop() -> None:
            requested.set()
            self._request_stop(shutdown_timeout)

        with on_stop(request_stop):
            if self.threads == 1 and MainThreadAlarm.usable():
                with MainThreadAlarm() as alarm:
                    self._executor.alarm = alarm
                    try:
                        self._launch(0, exit_on_complete)
                        self._runner()
                    finally:
                        self._executor.alarm = None
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
