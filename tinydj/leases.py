"""The leases a worker holds, and when it has lost them.

A worker locks the jobs it reserves (``locked_by``, ``locked_at``) and keeps
refreshing ``locked_at`` from a thread of its own (every ``lock_timeout / 4``
seconds), so that a long job is never taken from a live worker. Another
worker takes a job over once its ``locked_at`` is ``lock_timeout`` seconds
old: its holder is presumed dead.

A holder that was only frozen (SIGSTOP, ``docker pause``, a suspended VM, a
long pause holding the GIL) comes back believing it still holds the jobs it
had reserved but not started. ``LeaseKeeper`` knows better, in two ways:

- by its own monotonic clock: a lease not confirmed (by the reservation or a
  renewal) for ``LOST_AFTER * lock_timeout`` seconds may have been taken
  over; before such a job starts, the keeper renews every such lease at once
  (a slow database is not a lost lease);
- by the renewal itself: an UPDATE that touches fewer rows than the worker
  holds means some were taken over (or finished meanwhile); the keeper looks
  up which.

The runner asks ``begin(job_id)`` before it starts each reserved job; a job
whose lease is lost is not started (the runner releases it: the release only
touches rows the worker still holds, so it is harmless if the lease was in
fact still held). Each loss is logged once, in one warning naming the ids.

After each renewal round the keeper also asks which held jobs have a cancel
request (``tinydj.cancel``: one small SELECT of the held ids) and
hands them to ``tinydj.current``, which flags (and for ``async def`` jobs
cancels) the running ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from . import current
from .store import Store

__all__ = ["LOST_AFTER", "LeaseKeeper"]

log = logging.getLogger(__name__)

#: A lease not confirmed for this fraction of ``lock_timeout`` is treated as
#: lost: a little before another worker may take it, so that clocks that
#: disagree slightly or a slow statement do not make two workers start it.
LOST_AFTER = 0.9


class LeaseKeeper:
    """Holds, renews and drops the leases of one worker.

    ``now``: the worker's clock (what ``locked_at`` is set to);
    ``monotonic``: the clock that measures how old a confirmation is.
    Thread-safe: runner threads call ``hold``/``begin``/``drop``, the renewal
    thread ``renew``.
    """

    def __init__(
        self,
        store: Store,
        worker: str,
        lock_timeout: float,
        *,
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.worker = worker
        self.lock_timeout = lock_timeout
        self._now = now
        self._monotonic = monotonic
        self._limit = LOST_AFTER * lock_timeout
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one renewal or check at a time
        # id -> monotonic time of the last confirmation (reservation or renewal)
        self._confirmed: dict[int, float] = {}
        self._started: set[int] = set()
        self._lost: set[int] = set()
        # runner thread -> ids it finished, to be deleted (acknowledged) with
        # its next reservation; and since when the oldest has waited.
        self._done: dict[int, list[int]] = {}
        self._done_since: dict[int, float] = {}
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Housekeeping that must stay off the runner threads: called after
        #: each renewal round, from the renewal thread (errors are logged).
        self.chores: list[Callable[[], None]] = []

    # -- what the runner threads call ----------------------------------------

    def clock(self) -> float:
        """The monotonic time to pass as ``hold(since=...)``: read it before
        the statement that reserves."""
        return self._monotonic()

    def hold(self, ids: Iterable[int], *, since: float) -> None:
        """``ids`` were just reserved by a statement sent at ``since``."""
        held = dict.fromkeys(ids, since)
        with self._lock:
            self._confirmed.update(held)
            if self._started:
                self._started.difference_update(held)
            if self._lost:
                self._lost.difference_update(held)

    def begin(self, job_id: int) -> bool:
        """True if the job may start now (its lease is held); False if it is
        lost (the caller must not run it, and should release it)."""
        with self._lock:
            confirmed = self._confirmed.get(job_id)
            if confirmed is None or job_id in self._lost:
                return False
            if self._monotonic() - confirmed <= self._limit:
                self._started.add(job_id)
                return True
        # Not confirmed for too long (the worker was frozen, or the database
        # slow): renew every such lease now, which also tells which are lost.
        # One check at a time, each on what is still unchecked: one warning
        # names all the jobs a pause cost.
        with self._checking:
            with self._lock:
                stale = self._stale()
            self._verify(stale)
        with self._lock:
            if job_id in self._lost or job_id not in self._confirmed:
                return False
            self._started.add(job_id)
            return True

    def finishing(self) -> list[int]:
        """The list to which the calling thread appends the ids of the jobs
        it finishes (their rows await deletion): a runner asks once per batch,
        then ``append`` is all a finished job costs. Until the thread calls
        ``take_done`` the lease thread may take them (``take_waiting``), so a
        long job later in the batch does not hold them."""
        me = threading.get_ident()
        with self._lock:
            done = self._done.get(me)
            if done is None:
                done = self._done[me] = []
            self._done_since.setdefault(me, self._monotonic())
            return done

    def take_done(self) -> list[int]:
        """The ids the calling thread finished, to acknowledge now."""
        me = threading.get_ident()
        with self._lock:
            self._done_since.pop(me, None)
            return self._done.pop(me, [])

    def give_back(self, ids: list[int]) -> None:
        """``ids`` taken with ``take_done`` could not be acknowledged."""
        if not ids:
            return
        me = threading.get_ident()
        with self._lock:
            self._done_since.setdefault(me, self._monotonic())
            self._done.setdefault(me, [])[:0] = ids

    def take_waiting(self, older_than: float) -> list[int]:
        """Finished ids of any thread that have waited ``older_than`` seconds
        (a thread busy with a long job must not keep them: if its worker
        died, they would run again)."""
        now = self._monotonic()
        taken: list[int] = []
        with self._lock:
            for thread, since in list(self._done_since.items()):
                done = self._done.get(thread)
                if now - since >= older_than and done:
                    # Its runner may append meanwhile (without the lock): at the end.
                    ids = done[:]
                    del done[: len(ids)]
                    taken += ids
                    self._done_since[thread] = now
        return taken

    def drop(self, ids: Iterable[int]) -> None:
        """The worker no longer holds ``ids`` (finished, released)."""
        ids = tuple(ids)
        with self._lock:
            confirmed = self._confirmed
            for job_id in ids:
                confirmed.pop(job_id, None)
            self._started.difference_update(ids)
            if self._lost:
                self._lost.difference_update(ids)
        current.forget(self.worker, ids)

    def held(self) -> list[int]:
        """The ids this worker holds, in order."""
        with self._lock:
            return sorted(self._confirmed)

    # -- renewal -------------------------------------------------------------

    def renew(self) -> None:
        """One renewal round: refresh every held lease, find the lost ones."""
        with self._checking:
            with self._lock:
                snapshot = dict(self._confirmed)
            self._verify(snapshot)
            if snapshot:
                self._cancel_requests(sorted(snapshot))

    def _cancel_requests(self, ids: list[int]) -> None:
        """Tell the held jobs with a ``tinydj.cancel`` request (``tinydj.current``)."""
        requested = self.store.cancel_requests(self.worker, ids)
        if requested:
            # Under the lock: a job dropped meanwhile is not flagged (``drop``
            # forgets the requests of what it drops, after this).
            with self._lock:
                current.request(self.worker, requested.intersection(self._confirmed))

    def _verify(self, snapshot: dict[int, float]) -> None:
        """Renew the leases of ``snapshot`` (id -> confirmation when taken);
        confirm those still held, mark the others (not started) lost."""
        if not snapshot:
            return
        sent = self._monotonic()
        ids = sorted(snapshot)
        renewed = self.store.renew(self.worker, self._now(), ids)
        still = set(ids) if renewed >= len(ids) else self._still_held(ids)
        newly_lost: list[int] = []
        with self._lock:
            for job_id in ids:
                if self._confirmed.get(job_id) != snapshot[job_id]:
                    continue  # finished, or reserved again, meanwhile
                if job_id in still:
                    self._confirmed[job_id] = sent
                elif job_id not in self._started and job_id not in self._lost:
                    self._lost.add(job_id)
                    newly_lost.append(job_id)
        self._report(newly_lost)

    def _still_held(self, ids: Iterable[int]) -> set[int]:
        """Which of ``ids`` this worker still holds (after a short renewal)."""
        held: set[int] = set()
        for job_id in ids:
            job = self.store.get(job_id)
            if job is not None and job.locked_by == self.worker:
                held.add(job_id)
        return held

    def _stale(self) -> dict[int, float]:
        """Reserved, not started jobs whose lease is too old (lock held)."""
        now = self._monotonic()
        return {
            job_id: confirmed
            for job_id, confirmed in self._confirmed.items()
            if now - confirmed > self._limit
            and job_id not in self._started
            and job_id not in self._lost
        }

    def _report(self, ids: list[int]) -> None:
        if ids:
            log.warning(
                "%s lost the leases of %d reserved job(s) (%s): another worker took them "
                "over (this worker was paused or cut off for longer than the lock timeout) "
                "and may have run them; they are dropped without running here",
                self.worker,
                len(ids),
                ", ".join(map(str, sorted(ids))),
                extra={"action": "lease_lost"},
            )

    # -- the renewal thread --------------------------------------------------

    def acquire(self) -> None:
        """Start the renewal thread unless it runs (counted: see ``release``)."""
        with self._lock:
            self._users += 1
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._renew_loop, name=f"tinydj-lease {self.worker}", daemon=True
            )
            self._thread.start()

    def release(self) -> None:
        """Stop the renewal thread once its last user is done."""
        with self._lock:
            self._users -= 1
            thread = self._thread if self._users == 0 else None
            if thread is not None:
                self._thread = None
                self._stop.set()
        if thread is not None:
            thread.join()

    def _renew_loop(self) -> None:
        period = self.lock_timeout / 4
        try:
            while not self._stop.wait(period):
                try:
                    self.renew()
                except Exception:
                    log.warning("%s could not renew its leases", self.worker, exc_info=True)
                    self.store.close()  # reconnect next time (the connection may be dead)
                for chore in self.chores:
                    chore()
        finally:
            self.store.close()
