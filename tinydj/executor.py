"""Running one reserved job: load its handler, call its hooks, keep its
deadline, and report an ``Outcome`` (nothing is written here).

Delayed::Job's hooks apply to object jobs (``perform()``): ``before``,
``success`` / ``error``, ``after``, and ``failure`` when it fails for good
(that one runs after the decision, see ``hooks.call_hook_guarded``). A hook that
raises after the work is done is logged; it does not make the job run again.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import current, serialize
from .config import Config
from .errors import HandlerError
from .hooks import call_hook, call_hook_guarded
from .job import Job
from .outcome import Kind, Outcome, Policy
from .schedule import to_naive_utc
from .tasks import Task
from .timeouts import MainThreadAlarm, complete, run_with_timeout

__all__ = ["Executor", "cancelled"]

log = logging.getLogger("tinydj.worker")
_DEBUG, _INFO = logging.DEBUG, logging.INFO
#: The outcome of every common job that succeeds while no INFO line is logged.
_UNTIMED = Outcome.success(0.0)
_clock = time.perf_counter
_enter, _leave = current.enter, current.leave


def _unloadable(exc: Exception, handler: str) -> Outcome:
    """The outcome of a handler that does not load."""
    if not isinstance(exc, HandlerError):  # a loader bug must not leave the job held
        exc = HandlerError(f"{type(exc).__name__}: {exc}")
    return Outcome.unloadable(exc, handler)


#: The outcomes a cancel request overrides (the job ran to an end of its own).
_ENDED = (Kind.SUCCEEDED, Kind.FAILED)


def cancelled(outcome: Outcome | None) -> Outcome:
    """The outcome of a job cancelled while it ran (``outcome``: how its run
    ended; None: it never started). It fails at once, without retries (a
    recurring row keeps its schedule); ``last_error`` starts ``Cancelled:``."""
    error = (
        "Cancelled: tinydj.cancel was requested while the job ran; it is not retried "
        "(tinydj retry ID runs it again)"
    )
    if outcome is None:
        error = "Cancelled: tinydj.cancel was requested before the job started; it did not run"
    elif (
        outcome.kind is Kind.FAILED
        and outcome.error
        and not outcome.error.startswith("JobCancelled")
    ):
        error += "\nIt ended with: " + outcome.error
    return Outcome(
        Kind.GAVE_UP,
        outcome.seconds if outcome else 0.0,
        error=error,
        summary=error.split("\n", 1)[0],
        hooks=outcome.hooks if outcome else None,
    )


class Executor:
    """Runs one loaded job at a time for a worker.

    ``now``: the worker's clock (for ``reschedule_at``).
    """

    def __init__(
        self,
        config: Config,
        policy: Policy,
        *,
        now: Callable[[], datetime],
        job_timeout: float | None = None,
        owner: object | None = None,
    ) -> None:
        self.config = config
        #: The worker, as results trackers (``tinydj.results``) see it.
        self.owner = owner
        self.policy = policy
        self.job_timeout = job_timeout
        self._now = now
        #: The main thread's timer while jobs run there (a deadline can then
        #: stop them; set by ``Worker.run``), else None.
        self.alarm: MainThreadAlarm | None = None
        self._worker = str(getattr(owner, "name", ""))
        self._running = current.running(self._worker)
        self.refresh()

    def refresh(self) -> None:
        """Read again what applies to the next jobs (is DEBUG logged? is a
        success's duration logged?): the runner calls it once per batch."""
        self._debug = log.isEnabledFor(_DEBUG)
        self._timed = log.isEnabledFor(_INFO)

    def run(self, job: Job) -> Outcome:
        """Run ``job``; ``ShutdownInterrupt`` and ``KeyboardInterrupt`` pass through.

        While it runs, ``tinydj.current_job()`` returns it. A job whose cancel
        request (``tinydj.cancel``) reached the worker before it ended fails
        at once, without retries, with a ``Cancelled:`` error (see ``cancelled``).
        """
        started = _clock()
        if self._debug:
            log.debug("Job %s (id=%s) RUNNING", job.name, job.id, extra={"action": "start_job"})
        requests = self._running.cancelled  # empty unless someone cancelled
        if requests or job.interruptions or self.job_timeout is not None or self.alarm is not None:
            return self._run_guarded(job, started)
        try:
            plain = serialize.plain_call(job.handler, self.config.allowed_modules)
        except Exception as exc:
            return _unloadable(exc, job.handler)
        if plain is None or getattr(plain[0], "tinydj_outcome", None) is not None:
            return self._run_guarded(job, started)
        # The common case: a function without options, results or deadline,
        # called here as ``current_job()`` (a Task's function directly).
        fn, args, kwargs = plain
        try:
            token = _enter((job, self._running))
            try:
                if type(fn) is Task:
                    fn = fn.fn
                value = fn(*args, **kwargs) if kwargs else fn(*args)
            finally:
                _leave(token)
            if value is not None:
                complete(self._watched(value, job))
            # Its duration is only logged (completer, INFO): read if it will be.
            outcome = Outcome.success(_clock() - started) if self._timed else _UNTIMED
        except (Exception, SystemExit) as exc:  # sys.exit() in a job fails it
            outcome = self._failure(job, None, None, exc, _clock() - started)
        if requests and job.id in requests:  # arrived while it ran
            return cancelled(outcome)
        return outcome

    def _run_guarded(self, job: Job, started: float) -> Outcome:
        """``run`` of any job: a cancel request, interruptions, any handler."""
        requests = self._running.cancelled
        if requests and job.id in requests:  # asked before it started: not run at all
            return cancelled(None)
        if job.interruptions >= self.policy.max_interruptions:
            return Outcome.gave_up(job.interruptions)
        outcome = self._run_full(job, started)
        if requests and job.id in requests and outcome.kind in _ENDED:
            return cancelled(outcome)
        return outcome

    def _run_full(self, job: Job, started: float) -> Outcome:
        """Load and run any handler: hooks, results tracker, deadline."""
        try:
            call = serialize.load(
                job.handler,
                allow_pickle=self.config.allow_pickle,
                allowed_modules=self.config.allowed_modules,
            )
        except Exception as exc:
            return _unloadable(exc, job.handler)
        # Delayed::Job hooks apply to the object of an object job.
        hooks = call.target
        if hooks is not None and getattr(call.fn, "__name__", None) != "perform":
            hooks = None
        # A task that keeps results (tinydj.results.keep) is told what happens.
        tracker = getattr(call.fn, "tinydj_outcome", None)
        if tracker is not None:
            self._track(tracker.started, job, call)
        try:
            if hooks is not None:
                call_hook(hooks, "before", job)
            value = self._call(call, hooks, job)
        except (Exception, SystemExit) as exc:  # sys.exit() in a job fails it
            if hooks is not None:
                call_hook_guarded(hooks, "error", job, exc)
                call_hook_guarded(hooks, "after", job)
            outcome = self._failure(job, call.max_attempts, hooks, exc, _clock() - started)
            if tracker is not None:
                limit = outcome.max_attempts or self.policy.max_attempts
                final = job.recurring or job.attempts + 1 >= limit
                self._track(tracker.failed, job, call, exc, outcome.error, final)
            return outcome
        if hooks is not None:
            call_hook_guarded(hooks, "success", job)
            call_hook_guarded(hooks, "after", job)
        if tracker is not None:
            self._track(tracker.succeeded, job, call, value)
        return Outcome.success(_clock() - started)

    def _track(self, method: Callable[..., object], job: Job, *args: Any) -> None:
        # A result that cannot be written is logged, not retried: the job's
        # own outcome (its row) is what must not be lost.
        try:
            method(self.owner, job, *args)
        except Exception:
            log.exception("could not record the result of job %s", job.id)

    def _call(self, call: serialize.Call, hooks: object | None, job: Job) -> Any:
        timeout = self._timeout_for(call, hooks)
        alarm = self.alarm
        if timeout is None and alarm is None:
            result = self._invoke(call, job)
            return result if result is None else complete(result)
        return run_with_timeout(
            lambda: self._invoke(call, job),
            timeout,
            alarm,
            is_async=inspect.iscoroutinefunction(getattr(call.fn, "fn", call.fn)),
        )

    def _invoke(self, call: serialize.Call, job: Job) -> Any:
        """Call the job's function in this thread, as ``current_job()``."""
        token = _enter((job, self._running))
        try:
            result = call.fn(*call.args, **call.kwargs)
        finally:
            _leave(token)
        return self._watched(result, job)

    def _watched(self, result: Any, job: Job) -> Any:
        """A coroutine result, wrapped so that ``tinydj.cancel`` can cancel it."""
        if result is not None and inspect.iscoroutine(result):
            return current.watch(result, job, self._running)
        return result

    def _timeout_for(self, call: serialize.Call, hooks: object | None) -> float | None:
        for value in (call.timeout, getattr(hooks, "max_run_time", None), self.job_timeout):
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    def _failure(
        self, job: Job, limit: int | None, hooks: object | None, exc: BaseException, took: float
    ) -> Outcome:
        """The outcome of a run that raised; ``limit``: the handler's ``max_attempts``."""
        limit = limit or getattr(hooks, "max_attempts", None)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            limit = self.policy.max_attempts
        retry_at = None
        if not job.recurring and job.attempts + 1 < limit:
            retry_at = self._reschedule_at(job, hooks)
        return Outcome.failure(exc, took, max_attempts=limit, retry_at=retry_at, hooks=hooks)

    def _reschedule_at(self, job: Job, hooks: object | None) -> datetime | None:
        """The retry time a ``reschedule_at(now, attempts)`` hook asks for."""
        reschedule_at = getattr(hooks, "reschedule_at", None)
        if not callable(reschedule_at):
            return None
        try:
            return to_naive_utc(reschedule_at(self._now(), job.attempts + 1))
        except Exception:
            log.exception("reschedule_at of job %s raised; using the default delay", job.id)
            return None
