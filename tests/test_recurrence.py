"""recurrence.py: the next run of a recurring row, for intervals and cron specs.

Pure functions with fixed datetimes (naive UTC in and out): no clock, no
database. The DST cases use the 2026 changes: Europe/Berlin springs forward on
29 March (02:00 CET -> 03:00 CEST) and falls back on 25 October (03:00 CEST ->
02:00 CET); America/New_York on 8 March and 1 November.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tinydj import recurrence
from tinydj.recurrence import MAX_TEXT, Cron, Interval, first_run, next_run, parse

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args)  # type: ignore[arg-type]


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    """A local wall time as naive UTC (the way tinydj stores times)."""
    aware = datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]
    return aware.astimezone(UTC).replace(tzinfo=None)


# -- reading reoccur_in ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3h", Interval(timedelta(hours=3))),
        ("1h30m", Interval(timedelta(minutes=90))),
        ("45s", Interval(timedelta(seconds=45))),
        ("1h 30m", Interval(timedelta(minutes=90))),  # parse_every ignores spaces
        ("*/15 * * * *", Cron("*/15 * * * *", "UTC")),
        ("0 9 * * MON Europe/Berlin", Cron("0 9 * * MON", "Europe/Berlin")),
        ("  0   9 * *   mon  ", Cron("0 9 * * MON", "UTC")),
        (
            "30 2 * * * America/Argentina/Buenos_Aires",
            Cron("30 2 * * *", "America/Argentina/Buenos_Aires"),
        ),
    ],
)
def test_parse_reads_both_forms(text: str, expected: recurrence.Recurrence) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (Interval(timedelta(hours=3)), "3h"),
        (Cron.parse("*/15 * * * *"), "*/15 * * * *"),
        (Cron.parse("*/15 * * * *", "UTC"), "*/15 * * * *"),
        (Cron.parse("0 9 * * mon-fri", "Europe/Berlin"), "0 9 * * MON-FRI Europe/Berlin"),
        (Cron.parse("0 9 * * MON", BERLIN), "0 9 * * MON Europe/Berlin"),
    ],
)
def test_text_round_trips_through_parse(spec: recurrence.Recurrence, text: str) -> None:
    assert spec.text == text
    assert parse(spec.text) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0s", "invalid interval '0s'"),
        ("soon", "invalid interval 'soon'"),
        ("0 9 * * * Europe/Berlin extra", "a cron spec is 5 fields and an optional time zone"),
        ("0 9 * * * Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("61 9 * * *", "invalid cron expression '61 9 * * *': bad minute field"),
    ],
)
def test_parse_refuses_bad_text_naming_it(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(text)


# -- validating a cron expression -----------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "it needs 5 fields (minute hour day-of-month month day-of-week), not 4"),
        ("0 0 * * * *", "it needs 5 fields (minute hour day-of-month month day-of-week), not 6"),
        ("", "it needs 5 fields"),
        ("@daily", "it needs 5 fields"),
        ("60 * * * *", "bad minute field"),
        ("* 24 * * *", "bad hour field"),
        ("* * 0 * *", "bad day-of-month field"),
        ("* * 32 * *", "bad day-of-month field"),
        ("* * * 13 *", "bad month field"),
        ("* * * FOO *", "bad month field"),
        ("* * * * 8", "bad day-of-week field"),
        ("* * * * FUNDAY", "bad day-of-week field"),
        ("5-2 * * * *", "bad minute field"),
        ("*/0 * * * *", "bad minute field"),
        ("1-70/5 * * * *", "bad minute field"),
        ("x * * * *", "bad minute field"),
        ("0 0 30 2 *", "bad day-of-month field"),  # 30 February never comes
        ("0 0 31 4,6,9,11 *", "bad day-of-month field"),
    ],
)
def test_invalid_cron_expressions_name_the_text(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Cron.parse(expr)
    assert str(caught.value).startswith(f"invalid cron expression {expr!r}: "), caught.value
    assert message in str(caught.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/Berln", "", "../etc/passwd", "utc+1"])
def test_unknown_zone_is_a_value_error_naming_it(zone: str) -> None:
    with pytest.raises(
        ValueError, match=f"^unknown time zone {re.escape(repr(zone))}: use an IANA"
    ):
        Cron.parse("0 9 * * *", zone)


@pytest.mark.parametrize(("expr", "tz"), [(None, None), (5, None), ("0 9 * * *", 1)])
def test_wrong_types_are_type_errors(expr: object, tz: object) -> None:
    with pytest.raises(TypeError):
        Cron.parse(expr, tz)


def test_a_spec_too_long_for_the_column_is_refused_at_once() -> None:
    expr = "0,5,10,15,20,25,30,35,40,45,50,55 1,3,5,7,9,11,13 * * *"
    assert len(expr) <= MAX_TEXT  # fits alone, not with the zone
    with pytest.raises(ValueError, match="the reoccur_in column holds 64"):
        Cron.parse(expr, "America/Argentina/Buenos_Aires")
    assert len(Cron.parse(expr).text) <= MAX_TEXT


def test_the_longest_zone_names_fit_with_a_common_expression() -> None:
    import zoneinfo

    longest = max(zoneinfo.available_timezones(), key=len)
    assert len(Cron.parse("*/15 8-18 * * MON-FRI", longest).text) <= MAX_TEXT


# -- fire times in UTC: names, ranges, steps, lists -------------------------------

# 2026-01-02 is a Friday.
FRI_NOON = utc(2026, 1, 2, 12, 0)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("* * * * *", FRI_NOON, [utc(2026, 1, 2, 12, 1), utc(2026, 1, 2, 12, 2)]),
        (
            "*/15 * * * *",
            utc(2026, 1, 2, 12, 7, 30),
            [utc(2026, 1, 2, 12, 15), utc(2026, 1, 2, 12, 30)],
        ),
        ("0 9 * * MON", FRI_NOON, [utc(2026, 1, 5, 9), utc(2026, 1, 12, 9)]),
        ("0 9 * * mon", FRI_NOON, [utc(2026, 1, 5, 9), utc(2026, 1, 12, 9)]),
        ("0 9 * * MON-FRI", FRI_NOON, [utc(2026, 1, 5, 9), utc(2026, 1, 6, 9)]),
        ("0 9 * * 1-5", FRI_NOON, [utc(2026, 1, 5, 9), utc(2026, 1, 6, 9)]),
        ("0 9 * * SAT,SUN", FRI_NOON, [utc(2026, 1, 3, 9), utc(2026, 1, 4, 9)]),
        ("0 9 * * 0", FRI_NOON, [utc(2026, 1, 4, 9), utc(2026, 1, 11, 9)]),
        ("0 9 * * 7", FRI_NOON, [utc(2026, 1, 4, 9), utc(2026, 1, 11, 9)]),  # 7 is Sunday too
        ("0 0 1 JAN,JUL *", FRI_NOON, [utc(2026, 7, 1), utc(2027, 1, 1)]),
        ("0 0 1 jan-mar *", FRI_NOON, [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("0 0 1 */3 *", FRI_NOON, [utc(2026, 4, 1), utc(2026, 7, 1)]),
        ("30 8-10/2 * * *", FRI_NOON, [utc(2026, 1, 3, 8, 30), utc(2026, 1, 3, 10, 30)]),
        ("0 12 * * *", FRI_NOON, [utc(2026, 1, 3, 12), utc(2026, 1, 4, 12)]),  # strictly after
        ("0 0 29 2 *", FRI_NOON, [utc(2028, 2, 29), utc(2032, 2, 29)]),
        # Day of month and day of week both restricted: either matches (cron's OR).
        ("0 0 13 * FRI", FRI_NOON, [utc(2026, 1, 9), utc(2026, 1, 13)]),
    ],
)
def test_fire_times_in_utc(expr: str, after: datetime, expected: list[datetime]) -> None:
    spec = Cron.parse(expr)
    first = spec.fire_after(after)
    assert [first, spec.fire_after(first)] == expected


def test_microseconds_do_not_skip_or_repeat_a_fire() -> None:
    spec = Cron.parse("* * * * *")
    assert spec.fire_after(utc(2026, 1, 2, 12, 0, 59, 999999)) == utc(2026, 1, 2, 12, 1)
    assert spec.fire_after(utc(2026, 1, 2, 12, 1)) == utc(2026, 1, 2, 12, 2)


def test_a_zone_shifts_the_fire_times() -> None:
    spec = Cron.parse("0 9 * * *", "Europe/Berlin")
    assert spec.fire_after(utc(2026, 1, 2, 0)) == utc(2026, 1, 2, 8)  # CET = UTC+1
    assert spec.fire_after(utc(2026, 7, 2, 0)) == utc(2026, 7, 2, 7)  # CEST = UTC+2


# -- first run, next run and catch-up --------------------------------------------


def test_a_new_interval_row_is_due_at_once_and_a_cron_row_waits_for_its_fire() -> None:
    now = FRI_NOON
    assert first_run("1h", now) == now
    assert first_run("0 9 * * MON", now) == utc(2026, 1, 5, 9)
    assert first_run("0 12 * * *", now) == now  # a fire time that is now counts


@pytest.mark.parametrize(
    ("text", "planned", "now", "expected"),
    [
        # on time
        ("1h", utc(2026, 1, 2, 12), utc(2026, 1, 2, 12, 0, 5), utc(2026, 1, 2, 13)),
        ("0 * * * *", utc(2026, 1, 2, 12), utc(2026, 1, 2, 12, 0, 5), utc(2026, 1, 2, 13)),
        # a run longer than the period skips the fires it overlapped
        ("*/5 * * * *", utc(2026, 1, 2, 12), utc(2026, 1, 2, 12, 12), utc(2026, 1, 2, 12, 15)),
        # catch-up: down for two days, one run now, then the next fire after now
        ("0 9 * * *", utc(2026, 1, 1, 9), utc(2026, 1, 3, 12), utc(2026, 1, 4, 9)),
        ("1h", utc(2026, 1, 1, 9), utc(2026, 1, 3, 12, 30), utc(2026, 1, 3, 13)),
        ("0 9 * * MON Europe/Berlin", utc(2025, 12, 1, 8), FRI_NOON, utc(2026, 1, 5, 8)),
        # a worker whose clock is behind never runs the same fire again
        ("0 9 * * *", utc(2026, 1, 2, 9), utc(2026, 1, 2, 8, 59), utc(2026, 1, 3, 9)),
        ("1h", utc(2026, 1, 2, 9), utc(2026, 1, 2, 8, 59), utc(2026, 1, 2, 10)),
    ],
)
def test_next_run(text: str, planned: datetime, now: datetime, expected: datetime) -> None:
    assert next_run(text, planned, now) == expected
    assert next_run(text, planned, now) > max(planned, now)


def test_soonest_for_a_changed_schedule() -> None:
    assert Interval(timedelta(hours=1)).soonest(FRI_NOON) == FRI_NOON + timedelta(hours=1)
    assert Cron.parse("0 9 * * MON").soonest(FRI_NOON) == utc(2026, 1, 5, 9)


def simulate(
    text: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    down: tuple[datetime, datetime] | None = None,
) -> list[datetime]:
    """Drive one recurring row the way a worker does: whenever the clock
    reaches ``run_at``, run (record ``now``) and move ``run_at`` on. While
    ``now`` is within ``down`` no worker runs."""
    runs: list[datetime] = []
    run_at = first_run(text, start)
    now = start
    while now < end:
        if run_at <= now and not (down and down[0] <= now < down[1]):
            runs.append(now)
            run_at = next_run(text, run_at, now)
        now += step
    return runs


def per_local_day(runs: list[datetime], zone: ZoneInfo) -> Counter[date]:
    return Counter(r.replace(tzinfo=UTC).astimezone(zone).date() for r in runs)


@pytest.mark.parametrize("text", ["*/10 * * * *", "10m"])
def test_a_worker_down_for_hours_catches_up_once(text: str) -> None:
    # No worker from 08:05 until 14:03: 35 fire times are missed.
    down = (utc(2026, 1, 2, 8, 5), utc(2026, 1, 2, 14, 3))
    runs = simulate(text, utc(2026, 1, 2, 8), utc(2026, 1, 2, 14, 30), timedelta(minutes=1), down)
    assert runs == [
        utc(2026, 1, 2, 8, 0),
        # 08:10 ... 14:00 missed: one catch-up run when a worker is back
        utc(2026, 1, 2, 14, 3),
        # then the schedule goes on from the next fire, none replayed
        utc(2026, 1, 2, 14, 10),
        utc(2026, 1, 2, 14, 20),
    ]


# -- DST: Debian cron's behaviour -------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        (BERLIN, date(2026, 3, 29)),  # spring forward
        (BERLIN, date(2026, 10, 25)),  # fall back
        (NEW_YORK, date(2026, 3, 8)),
        (NEW_YORK, date(2026, 11, 1)),
    ],
)
@pytest.mark.parametrize("step", [timedelta(minutes=1), timedelta(minutes=7), timedelta(hours=1)])
def test_a_daily_job_in_the_changing_hour_runs_once_on_dst_days(
    zone: ZoneInfo, day: date, step: timedelta
) -> None:
    # New York changes at 02:00 local, Berlin at 02:00 (spring) / 03:00 (fall).
    text = f"30 {1 if zone is NEW_YORK and day.month == 11 else 2} * * * {zone.key}"
    before = day - timedelta(days=2)
    start = local(zone, before.year, before.month, before.day, 12)
    runs = simulate(text, start, start + timedelta(days=4), step)
    counts = per_local_day(runs, zone)
    assert counts[day] == 1, runs
    assert [counts[day + timedelta(days=d)] for d in (-1, 0, 1)] == [1, 1, 1], runs


def test_spring_forward_runs_the_skipped_time_right_after_the_change() -> None:
    spec = Cron.parse("30 2 * * *", "Europe/Berlin")
    fire = spec.fire_after(utc(2026, 3, 28, 12))
    assert fire == local(BERLIN, 2026, 3, 29, 3, 0) == utc(2026, 3, 29, 1, 0)
    assert spec.fire_after(fire) == local(BERLIN, 2026, 3, 30, 2, 30)


def test_fall_back_runs_the_first_of_the_repeated_times_only() -> None:
    spec = Cron.parse("30 2 * * *", "Europe/Berlin")
    first = local(BERLIN, 2026, 10, 25, 2, 30, fold=0)  # 02:30 CEST = 00:30 UTC
    second = local(BERLIN, 2026, 10, 25, 2, 30, fold=1)  # 02:30 CET = 01:30 UTC
    assert (first, second) == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))
    assert spec.fire_after(utc(2026, 10, 24, 12)) == first
    tomorrow = local(BERLIN, 2026, 10, 26, 2, 30)
    assert spec.fire_after(first) == tomorrow
    # A run that ends inside the repeated hour (02:00-02:59 CET) must not
    # find 02:30 again: cronsim answers 02:30 CEST, which is already past.
    for minutes in (0, 29, 30, 31, 59):
        now = utc(2026, 10, 25, 1, minutes)
        assert spec.next_run(first, now) == tomorrow, now


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 6, 1), 24)],
)
def test_an_hourly_job_runs_in_every_real_hour(day: date, hours: int) -> None:
    start = local(BERLIN, day.year, day.month, day.day, 0, 0)
    end = start + timedelta(days=1, hours=-1 if hours == 23 else (1 if hours == 25 else 0))
    runs = simulate("15 * * * * Europe/Berlin", start, end, timedelta(minutes=1))
    assert len(runs) == hours
    assert len(set(runs)) == hours
    gaps = {b - a for a, b in itertools.pairwise(runs)}
    assert gaps == {timedelta(hours=1)}, gaps


def test_weekly_job_keeps_its_local_time_across_dst() -> None:
    runs = simulate(
        "0 9 * * MON Europe/Berlin", utc(2026, 3, 20), utc(2026, 4, 10), timedelta(minutes=30)
    )
    assert runs == [utc(2026, 3, 23, 8), utc(2026, 3, 30, 7), utc(2026, 4, 6, 7)]
