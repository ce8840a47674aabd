"""Unique jobs: at most one row per function and arguments (or explicit key).

A unique job's row carries a key in the ``key`` column, whose unique index
makes the database itself refuse a second row, across threads, processes and
hosts: the enqueue is one INSERT ... ON CONFLICT (``Store.insert_unique``),
and the caller gets the row that holds the key. Keys start with ``~`` and a
letter that says how long the row holds its key; recurring rows' keys are
import paths (``module:qualname``), which never start with ``~``:

- ``~w:`` (``unique=True``): while the job waits. The statement that reserves
  a job clears such a key, so a new call may be added once a worker runs it.
- ``~r:`` (``unique="running"``): while it waits or runs, retries included.
  The row is deleted when the job succeeds; a job that fails for good (or is
  cancelled) clears its key.
- ``unique_for="1h"``: the key also holds the number of the period (fixed
  windows counted from the Unix epoch) in which the job was enqueued: a second
  call in the same window returns the first job as long as its row exists
  (waiting or running, retries included, unless ``unique=True`` too: then only
  while it waits). A call in the next window adds a new row.

The key is ``~w:module:qualname#<digest of the stored call>``; with
``with_options(key="...")`` it is ``~w:module:qualname=<key>`` (keys are per
function). Keywords are sorted first, so ``f(a=1, b=2)`` and ``f(b=2, a=1)``
are the same call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from .schedule import parse_every
from .sql import UNIQUE_PREFIX, WAITING_PREFIX

__all__ = ["MAX_KEY", "UNIQUE_PREFIX", "Uniqueness", "explicit_key", "uniqueness"]

#: Longest value of the ``key`` column.
MAX_KEY = 255
_EPOCH = datetime(1970, 1, 1)
_RUNNING_PREFIX = UNIQUE_PREFIX + "r:"


@dataclass(frozen=True, slots=True)
class Uniqueness:
    """How a task's calls are kept unique: ``while_running`` (else only while
    waiting) and ``period`` (fixed windows), from ``@job(unique=..., unique_for=...)``."""

    while_running: bool = False
    period: timedelta | None = None

    def key(self, path: str, call: str, now: datetime, explicit: str | None = None) -> str:
        """The ``key`` of a call: ``call`` is its handler text (``explicit``
        replaces it); ``now`` picks the period window."""
        prefix = _RUNNING_PREFIX if self.while_running else WAITING_PREFIX
        window = ""
        if self.period is not None:
            window = f"@{(now - _EPOCH) // self.period}"
        if explicit is not None:
            readable = f"{prefix}{path}={explicit}{window}"
            if len(readable) <= MAX_KEY:
                return readable
        digest = hashlib.sha256(f"{path}\n{explicit}\n{call}{window}".encode()).hexdigest()[:24]
        key = f"{prefix}{path}#{digest}"
        return key if len(key) <= MAX_KEY else f"{prefix}#{digest}"


def uniqueness(unique: object, unique_for: object) -> Uniqueness | None:
    """Check ``@job``'s ``unique`` and ``unique_for``; None when neither is set.

    ``unique``: ``False`` (default), ``True`` or ``"waiting"`` (unique while
    it waits), ``"running"`` (while it waits or runs). ``unique_for``: a
    period ("1h", seconds, timedelta). Raises ``ValueError``/``TypeError``
    quoting a bad value.
    """
    if not isinstance(unique, bool) and unique not in ("waiting", "running"):
        raise ValueError(f"unique must be True, False, 'waiting' or 'running', not {unique!r}")
    period = None if unique_for is None else parse_every(unique_for)
    if unique is False and period is None:
        return None
    # unique_for alone holds the key as long as the row exists.
    while_running = unique == "running" or (unique is False and period is not None)
    return Uniqueness(while_running, period)


def explicit_key(value: object) -> str:
    """Check ``with_options(key=...)``: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"key must be a non-empty string, not {value!r}")
    return value
