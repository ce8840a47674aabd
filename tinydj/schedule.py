"""Pure time arithmetic: interval specs, retry back-off and recurrence.

Nothing here reads the clock on its own; every function that needs "now" takes
it as a parameter, so that tests can drive time (see ``tinydj.testing.FakeClock``).
All datetimes handled by tinydj are naive UTC; ``to_naive_utc`` converts.
"""

from __future__ import annotations

import random
import re
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = [
    "MAX_BACKOFF",
    "Clock",
    "NaiveDatetimeWarning",
    "backoff",
    "format_interval",
    "next_run_after",
    "parse_delay",
    "parse_every",
    "to_naive_utc",
    "utcnow",
    "warn_if_naive",
]

#: A clock returns the current time, naive UTC or aware.
Clock = Callable[[], datetime]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")

#: Base of the retry delay: the first retry waits about this many seconds.
BACKOFF_BASE = 3.0
#: No retry waits longer than this (one day), however many attempts failed.
MAX_BACKOFF = 86400.0
#: Up to this fraction of the delay is added at random, so that jobs that
#: failed together do not all retry in the same instant.
BACKOFF_JITTER = 0.25


def utcnow() -> datetime:
    """The current time as a naive UTC datetime (tinydj's storage format)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Convert an aware datetime to naive UTC; a naive one is taken as UTC."""
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


class NaiveDatetimeWarning(UserWarning):
    """A naive datetime was taken as UTC while the local time zone is not UTC."""


_warned_naive = False


def _local_zone_is_utc() -> bool:
    return time.timezone == 0 and (not time.daylight or time.altzone == 0)


def warn_if_naive(value: datetime, stacklevel: int = 2) -> None:
    """Warn (once per process) that a naive ``value`` is taken as UTC, if the
    local time zone is not UTC: ``datetime.now()`` then means another time."""
    global _warned_naive
    if value.tzinfo is not None or _warned_naive or _local_zone_is_utc():
        return
    _warned_naive = True
    warnings.warn(
        f"tinydj takes the naive datetime {value.isoformat(' ')} as UTC, but the local time "
        f"zone is {time.tzname[0]}, not UTC: pass an aware datetime "
        "(datetime.now(timezone.utc) + ...) or use send_in(); "
        "this warning is shown once per process",
        NaiveDatetimeWarning,
        stacklevel=stacklevel + 1,
    )


def parse_every(spec: object) -> timedelta:
    """Parse an interval: ``"30s"``, ``"1h30m"``, ``90``, ``timedelta(hours=3)``.

    Units are s, m, h, d and w; case and spaces do not matter. Raises
    ``ValueError`` naming the text for an empty, unknown, zero or negative
    interval, and ``TypeError`` for a value of another type.

    >>> parse_every("1h 30M")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(spec, bool):
        raise TypeError(f"interval must be a string, number or timedelta, not {spec!r}")
    if isinstance(spec, timedelta):
        interval = spec
    elif isinstance(spec, int | float):
        if spec != spec or spec in (float("inf"), float("-inf")):
            raise ValueError(f"invalid interval {spec!r}: not a finite number of seconds")
        interval = timedelta(seconds=spec)
    elif isinstance(spec, str):
        text = "".join(spec.split()).lower()
        if not text:
            raise ValueError(f"invalid interval {spec!r}: it is empty")
        parts = _PART.findall(text)
        if "".join(n + u for n, u in parts) != text:
            raise ValueError(
                f"invalid interval {spec!r}: use numbers with units s, m, h, d, w, "
                "like '30s', '15m', '1h30m'"
            )
        interval = timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    else:
        raise TypeError(
            f"interval must be a string, number or timedelta, not {type(spec).__name__}"
        )
    if interval <= timedelta(0):
        raise ValueError(f"invalid interval {spec!r}: it must be longer than zero")
    return interval


def parse_delay(delay: object) -> timedelta:
    """Parse a delay for ``send_in``: a timedelta, seconds or a spec like "10m".

    Unlike ``parse_every`` a delay of zero is allowed (run as soon as possible).
    """
    if isinstance(delay, int | float) and not isinstance(delay, bool) and delay == 0:
        return timedelta(0)
    if isinstance(delay, timedelta) and delay == timedelta(0):
        return delay
    return parse_every(delay)


def format_interval(interval: timedelta) -> str:
    """Render an interval the way ``parse_every`` reads it: ``"1h30m"``."""
    total = interval.total_seconds()
    whole = int(total)
    out = []
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if whole >= size:
            out.append(f"{whole // size}{unit}")
            whole %= size
    seconds = whole + (total - int(total))
    if seconds or not out:
        out.append(f"{seconds:g}s" if seconds != int(seconds) else f"{int(seconds)}s")
    return "".join(out)


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """Delay before the retry that follows the ``attempts``-th failure.

    ``min(3 * 2**(attempts - 1), 86400)`` seconds, plus up to 25% jitter:
    about 3 s, 6 s, 12 s, 24 s, ... 6.8 h after the 14th failure, then one day.
    With the default 25 attempts a job keeps trying for about 11 days.
    """
    exponent = min(max(attempts, 1) - 1, 32)
    base = min(BACKOFF_BASE * 2.0**exponent, MAX_BACKOFF)
    return timedelta(seconds=base * (1.0 + BACKOFF_JITTER * rng()))


def next_run_after(planned: datetime, interval: timedelta, now: datetime) -> datetime:
    """The first ``planned + k * interval`` (k >= 1) that is later than ``now``.

    Periods missed while no worker ran are skipped, not replayed one by one,
    and the schedule does not drift with the time a run starts or takes.
    """
    step = interval.total_seconds()
    behind = (now - planned).total_seconds()
    k = max(1, int(behind // step) + 1)
    candidate = planned + k * interval
    while candidate <= now:  # guard against float rounding
        candidate += interval
    return candidate
