"""When a recurring row runs next: intervals ("3h") and cron specs, in one place.

A recurring row stores its schedule as text in ``reoccur_in`` (varchar(64)):

- an interval, one token as ``format_interval`` writes it: ``"3h"``, ``"1h30m"``;
- a cron spec, the five fields and, unless it is UTC, the IANA zone as a sixth
  word: ``"*/15 * * * *"``, ``"0 9 * * MON Europe/Berlin"``.

``parse(text)`` turns that text into an ``Interval`` or a ``Cron``, each with
``first_run(now)`` (the ``run_at`` of a new row), ``soonest(now)`` (the run a
changed schedule may bring forward) and ``next_run(planned, now)`` (the
``run_at`` after a run). All are pure: time is a parameter, naive UTC in and out.

Missed runs are never replayed: a row that was due hours ago runs once (the
catch-up run), then moves to the first run later than ``now``.

Cron follows Debian cron through cronsim: a job at a fixed local time runs once
on the day clocks go forward (a time in the skipped hour runs right after the
change) and once on the day they go back (the first of the repeated times), while
a job whose hour field is ``*`` runs in every real hour.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .schedule import format_interval, next_run_after, parse_every

__all__ = [
    "MAX_TEXT",
    "Cron",
    "Interval",
    "Recurrence",
    "first_run",
    "next_run",
    "parse",
]

#: Length of the ``reoccur_in`` column (varchar(64) on PostgreSQL and MariaDB).
MAX_TEXT = 64
#: Zone of a cron spec that names none.
DEFAULT_ZONE = "UTC"

_FIELDS = "minute hour day-of-month month day-of-week"
_ONE = timedelta(microseconds=1)


@dataclass(frozen=True)
class Interval:
    """Every ``every``, counted from the planned time (no drift, no replay)."""

    every: timedelta

    @property
    def text(self) -> str:
        """The ``reoccur_in`` text: ``"1h30m"``."""
        return format_interval(self.every)

    def first_run(self, now: datetime) -> datetime:
        """A new interval row is due at once."""
        return now

    def soonest(self, now: datetime) -> datetime:
        """A changed interval runs no later than one new interval from now."""
        return now + self.every

    def next_run(self, planned: datetime, now: datetime) -> datetime:
        """The first ``planned + k * every`` later than ``now``."""
        return next_run_after(planned, self.every, now)


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression read in the time zone ``zone``.

    Build it with ``Cron.parse``, which validates; the fields are stored
    upper-cased with single spaces (``"0 9 * * MON"``).
    """

    expr: str
    zone: str = DEFAULT_ZONE

    @classmethod
    def parse(cls, expr: object, tz: object = None) -> Cron:
        """Validate a cron expression and a zone name; raise ``ValueError`` naming them.

        >>> Cron.parse("0 9 * * mon", "Europe/Berlin").text
        '0 9 * * MON Europe/Berlin'
        """
        if not isinstance(expr, str):
            raise TypeError(f"cron expression must be a string, not {type(expr).__name__}")
        fields = expr.upper().split()
        if len(fields) != 5:
            raise ValueError(
                f"invalid cron expression {expr!r}: it needs 5 fields ({_FIELDS}), "
                f"not {len(fields)}"
            )
        spec = cls(" ".join(fields), _zone_name(tz))
        try:
            CronSim(spec.expr, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            reason = str(exc)  # cronsim names the field: "Bad minute"
            if reason.startswith("Bad "):
                reason = f"bad {reason[4:]} field"
            raise ValueError(f"invalid cron expression {expr!r}: {reason}") from None
        try:
            spec.fire_after(datetime(2000, 1, 1))
        except ValueError:
            raise ValueError(f"invalid cron expression {expr!r}: it never fires") from None
        if len(spec.text) > MAX_TEXT:
            raise ValueError(
                f"cron spec {spec.text!r} is {len(spec.text)} characters: the reoccur_in "
                f"column holds {MAX_TEXT}; use ranges (1-5) or steps (*/10) instead of lists"
            )
        return spec

    @property
    def text(self) -> str:
        """The ``reoccur_in`` text: the fields, then the zone unless it is UTC."""
        return self.expr if self.zone == DEFAULT_ZONE else f"{self.expr} {self.zone}"

    @property
    def tzinfo(self) -> tzinfo:
        return ZoneInfo(self.zone)

    def fire_after(self, after: datetime) -> datetime:
        """The first fire time strictly later than ``after`` (naive UTC both)."""
        local = after.replace(tzinfo=UTC).astimezone(self.tzinfo)
        it = CronSim(self.expr, local)
        for _ in range(1000):
            try:
                fire = next(it)
            except StopIteration:
                break
            # On the day clocks go back, cronsim may return the first of the
            # repeated local times although ``after`` is already past it in UTC:
            # skip it, so that the repeated hour does not fire twice.
            utc = fire.astimezone(UTC).replace(tzinfo=None)
            if utc > after:
                return utc
        raise ValueError(f"cron spec {self.text!r} does not fire after {after:%Y-%m-%d %H:%M}")

    def first_run(self, now: datetime) -> datetime:
        """A new cron row waits for its first fire time (``now`` itself counts)."""
        return self.fire_after(now - _ONE)

    def soonest(self, now: datetime) -> datetime:
        """A changed cron spec runs at its own first fire time."""
        return self.first_run(now)

    def next_run(self, planned: datetime, now: datetime) -> datetime:
        """The first fire time later than both ``planned`` and ``now``.

        Later than ``planned``: a fire time never runs twice, even on a worker
        whose clock is behind. Later than ``now``: after a catch-up run the fire
        times missed meanwhile are skipped.
        """
        return self.fire_after(max(planned, now))


Recurrence = Interval | Cron


def _zone_name(tz: object) -> str:
    if tz is None:
        return DEFAULT_ZONE
    if isinstance(tz, ZoneInfo):
        tz = tz.key
    if not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA zone name, not {type(tz).__name__}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz!r}: use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None
    return tz


@functools.lru_cache(maxsize=512)
def parse(text: str) -> Recurrence:
    """Read a ``reoccur_in`` text; raise ``ValueError`` naming it if it is neither form.

    >>> parse("1h30m")
    Interval(every=datetime.timedelta(seconds=5400))
    >>> parse("30 2 * * * Europe/Berlin")
    Cron(expr='30 2 * * *', zone='Europe/Berlin')
    """
    words = text.split()
    if len(words) < 5:
        return Interval(parse_every(text))
    if len(words) > 6:
        raise ValueError(
            f"invalid schedule {text!r}: a cron spec is 5 fields and an optional time zone"
        )
    return Cron.parse(" ".join(words[:5]), words[5] if len(words) == 6 else None)


def first_run(text: str, now: datetime) -> datetime:
    """The ``run_at`` of a new row with this schedule."""
    return parse(text).first_run(now)


def next_run(text: str, planned: datetime, now: datetime) -> datetime:
    """The ``run_at`` after a run that was planned for ``planned`` and ended at ``now``.

    >>> next_run("0 9 * * *", datetime(2026, 1, 1, 9), datetime(2026, 1, 3, 12))
    datetime.datetime(2026, 1, 4, 9, 0)
    """
    return parse(text).next_run(planned, now)
