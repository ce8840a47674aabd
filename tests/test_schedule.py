from __future__ import annotations

import importlib
import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sample_jobs

import tinydj
from tinydj.schedule import (
    backoff,
    format_interval,
    next_run_after,
    parse_delay,
    parse_every,
    to_naive_utc,
)


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("3h", 10800),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        (" 1H 30M ", 5400),
        ("2d12h", 216000),
        ("0.5s", 0.5),
        (90, 90),
        (1.5, 1.5),
        (timedelta(hours=3), 10800),
    ],
)
def test_parse_every(spec: object, seconds: float) -> None:
    assert parse_every(spec) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "spec", ["", "  ", "3x", "h", "1h-30m", "0s", "0", 0, -5, "-1h", "3 hours"]
)
def test_parse_every_rejects_bad_specs_naming_them(spec: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_every(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize("spec", [None, [1], b"1h", True])
def test_parse_every_rejects_other_types(spec: object) -> None:
    with pytest.raises(TypeError):
        parse_every(spec)


def test_parse_every_rejects_zero_timedelta() -> None:
    with pytest.raises(ValueError):
        parse_every(timedelta(0))


def test_parse_delay_allows_zero() -> None:
    assert parse_delay(0) == timedelta(0)
    assert parse_delay("10m") == timedelta(minutes=10)


@pytest.mark.parametrize("spec", ["30s", "1h30m", "1w2d", "1d", "0.5s", "2h5s"])
def test_format_interval_round_trips(spec: str) -> None:
    interval = parse_every(spec)
    assert parse_every(format_interval(interval)) == interval


def test_format_interval_is_readable() -> None:
    assert format_interval(timedelta(hours=3)) == "3h"
    assert format_interval(timedelta(minutes=90)) == "1h30m"


def test_backoff_grows_exponentially_and_is_capped() -> None:
    no_jitter = [backoff(n, rng=lambda: 0.0).total_seconds() for n in range(1, 30)]
    assert no_jitter[:4] == [3.0, 6.0, 12.0, 24.0]
    assert all(b >= a for a, b in itertools.pairwise(no_jitter))
    assert max(no_jitter) == 86400.0


def test_backoff_jitter_adds_at_most_a_quarter() -> None:
    assert backoff(3, rng=lambda: 0.999999).total_seconds() == pytest.approx(15.0, rel=1e-3)
    assert backoff(3, rng=lambda: 0.0).total_seconds() == 12.0


def test_next_run_after_skips_missed_periods() -> None:
    planned = datetime(2030, 1, 1, 0, 0)
    hour = timedelta(hours=1)
    assert next_run_after(planned, hour, planned) == planned + hour
    assert next_run_after(planned, hour, planned + timedelta(minutes=5)) == planned + hour
    # workers were down for 5.5 hours: the next run is the next boundary, once
    late = planned + timedelta(hours=5, minutes=30)
    assert next_run_after(planned, hour, late) == planned + 6 * hour
    # exactly on a boundary: the following one (strictly in the future)
    assert next_run_after(planned, hour, planned + 2 * hour) == planned + 3 * hour


def test_to_naive_utc() -> None:
    aware = datetime(2030, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert to_naive_utc(aware) == datetime(2030, 1, 1, 12, 0)
    naive = datetime(2030, 1, 1, 12, 0)
    assert to_naive_utc(naive) is naive


# The module: ``tinydj.schedule`` is the function of that name.
schedule = importlib.import_module("tinydj.schedule")


@pytest.fixture
def local_zone() -> Iterator[Callable[[str], None]]:
    """Set TZ for this process (time.tzset) and restore it afterwards."""
    saved = os.environ.get("TZ")

    def set_zone(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_zone
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_naive_datetime_warns_once_when_local_zone_is_not_utc(
    config: tinydj.Config, local_zone: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule, "_warned_naive", False)
    local_zone("America/New_York")
    naive = datetime(2031, 5, 1, 12, 0)
    with pytest.warns(
        schedule.NaiveDatetimeWarning, match="naive datetime 2031-05-01 12:00:00 as UTC"
    ) as seen:
        job_ = sample_jobs.record.send_at(naive, 1)
    assert seen[0].filename == __file__  # points at the caller's line
    assert job_.run_at == naive  # still taken as UTC, as the contract says
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        sample_jobs.record.send_at(naive, 2)
        tinydj.enqueue(sample_jobs.Report("r"), run_at=naive)
        tinydj.schedule(sample_jobs.Report("s"), every="1h", run_at=naive)


@pytest.mark.parametrize("call", ["send_at", "enqueue", "schedule"])
def test_each_entry_point_warns_about_naive_datetimes(
    config: tinydj.Config,
    local_zone: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    call: str,
) -> None:
    monkeypatch.setattr(schedule, "_warned_naive", False)
    local_zone("Europe/Berlin")
    naive = datetime(2031, 5, 1, 12, 0)
    with pytest.warns(schedule.NaiveDatetimeWarning, match="local time zone is CET"):
        if call == "send_at":
            sample_jobs.record.send_at(naive)
        elif call == "enqueue":
            tinydj.enqueue(sample_jobs.Report("r"), run_at=naive)
        else:
            tinydj.schedule(sample_jobs.Report("s"), every="1h", run_at=naive)


@pytest.mark.parametrize("zone", ["UTC", "Etc/UTC"])
def test_no_warning_in_utc_or_for_aware_datetimes(
    config: tinydj.Config,
    local_zone: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    zone: str,
) -> None:
    monkeypatch.setattr(schedule, "_warned_naive", False)
    local_zone(zone)
    sample_jobs.record.send_at(datetime(2031, 5, 1, 12, 0))  # filterwarnings=error
    local_zone("America/New_York")
    sample_jobs.record.send_at(datetime(2031, 5, 1, 12, 0, tzinfo=UTC))
    sample_jobs.record.send_in(60)
    assert not schedule._warned_naive
