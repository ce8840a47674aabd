"""One validator per option, used wherever that option enters tinydj.

Decorators (``@job``, ``@every``), ``with_options``, ``Worker``, ``configure``,
the command line and the handler loader all check an option with the same
function here, so that a value accepted in one place is never refused in
another (``@job(timeout=10**9)`` used to pass the decorator and then fail every
load). Each validator returns the normalized value or raises ``ValueError`` /
``TypeError`` with a message that names the option and quotes the value.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "MAX_SECONDS",
    "batch_size",
    "lock_timeout",
    "max_attempts",
    "poll_interval",
    "priority",
    "queue",
    "queues",
    "seconds",
    "threads",
    "timeout",
]

#: Upper bound of every duration option (a year): larger values overflow
#: datetime arithmetic and are certainly typos.
MAX_SECONDS = 365 * 86400.0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds(name: str, value: object) -> float:
    """A duration in seconds: a number > 0 and <= ``MAX_SECONDS``."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    assert isinstance(value, int | float)
    if not 0 < value <= MAX_SECONDS:  # also refuses NaN
        raise ValueError(
            f"{name} must be a number of seconds > 0 and <= {MAX_SECONDS:.0f}, not {value!r}"
        )
    return float(value)


def whole(name: str, value: object, minimum: int = 1) -> int:
    """A whole number >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    return value


def queue(value: object) -> str:
    """A queue name: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"queue must be a non-empty string, not {value!r}")
    return value


def queues(value: object) -> list[str] | None:
    """Queue names a worker takes jobs from: None (all), one name, or a list."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(q, str) and q for q in value):
        raise ValueError(f"queues must be non-empty strings, not {value!r}")
    return list(value) or None


def priority(value: object) -> int:
    """A priority: any int (lower numbers run first)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"priority must be an int, not {value!r}")
    return value


def max_attempts(value: object) -> int:
    """Failures before a job gets ``failed_at``: an int >= 1."""
    try:
        return whole("max_attempts", value)
    except TypeError:
        raise ValueError(f"max_attempts must be a positive int, not {value!r}") from None


def timeout(value: object) -> float:
    """Seconds a job run may take."""
    return seconds("timeout", value)


def lock_timeout(value: object) -> float:
    """Seconds after which a job whose worker stopped renewing is taken over."""
    return seconds("lock_timeout", value)


def poll_interval(value: object) -> float:
    """Longest wait of an idle worker between looks at the table."""
    return seconds("poll_interval", value)


def threads(value: object) -> int:
    """Jobs a worker runs at once."""
    return whole("threads", value)


def batch_size(value: object) -> int:
    """Most jobs one worker thread reserves at once."""
    return whole("batch_size", value)
