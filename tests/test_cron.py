"""@cron and schedule(cron=...): validation at decoration, and workers driven by a
FakeClock across DST changes on every database; several processes, once per fire.

Europe/Berlin 2026: clocks spring forward on 29 March at 02:00 CET (01:00 UTC)
and fall back on 25 October at 03:00 CEST (01:00 UTC), so that 02:30 does not
exist on the first day and exists twice on the second.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cron_app
import pytest
import sample_jobs  # noqa: F401 - its @every registers at import: before the registry is saved
from proc_helpers import child_env, read_lines, wait_until

import tinydj
from tinydj import tasks
from tinydj.testing import FakeClock

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.txt"
    monkeypatch.setenv(cron_app.ENV_OUT, str(path))
    return path


def runs(path: Path, name: str) -> list[datetime]:
    """The clock times at which job ``name`` started, from the trace file."""
    return [
        datetime.fromisoformat(line.split()[1])
        for line in read_lines(path)
        if line.split()[0] == name
    ]


def local_days(times: list[datetime]) -> Counter[date]:
    return Counter(t.replace(tzinfo=UTC).astimezone(BERLIN).date() for t in times)


# -- the decorator ------------------------------------------------------------


def test_cron_makes_a_recurring_job_that_still_runs_inline() -> None:
    @tinydj.cron("0 9 * * mon-fri", tz="Europe/Berlin", queue="reports", priority=5)
    def report(day: str = "today") -> str:
        return f"report for {day}"

    assert report("monday") == "report for monday"
    assert report.recurrence is not None
    assert report.recurrence.text == "0 9 * * MON-FRI Europe/Berlin"
    assert report.every is None
    assert (report.options.queue, report.options.priority) == ("reports", 5)
    assert report in tasks.recurring_tasks()


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("0 9 * *", None, "invalid cron expression '0 9 * *': it needs 5 fields"),
        ("0 25 * * *", None, "invalid cron expression '0 25 * * *': bad hour field"),
        ("0 9 * * MONDAY", None, "invalid cron expression '0 9 * * MONDAY': bad day-of-week"),
        ("0 9 * * *", "Europe/Berlinn", "unknown time zone 'Europe/Berlinn'"),
    ],
)
def test_bad_specs_fail_at_decoration_naming_the_text(
    expr: str, tz: str | None, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        tinydj.cron(expr, tz=tz)
    assert str(caught.value).startswith(message), caught.value
    assert tasks.recurring_tasks() == []


def test_bad_job_options_fail_at_decoration() -> None:
    with pytest.raises(TypeError, match="priority must be an int"):
        tinydj.cron("* * * * *", priority="high")  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="queue must be a non-empty string"):
        tinydj.cron("* * * * *", queue="")
    with pytest.raises(TypeError, match="unexpected keyword argument 'every'"):
        tinydj.cron("* * * * *", every="1h")  # type: ignore[call-arg]
    assert tasks.recurring_tasks() == []


# -- a worker with a FakeClock, on every database --------------------------------


def drive(
    worker: tinydj.Worker, clock: FakeClock, until: datetime, step: timedelta
) -> tuple[int, int]:
    """Advance the clock by ``step`` up to ``until``, with a ``work_off`` at each step."""
    ok = failed = 0
    while clock() < until:
        clock.advance(step)
        s, f = worker.work_off()
        ok, failed = ok + s, failed + f
    return ok, failed


def test_a_new_cron_row_waits_for_its_first_fire_and_shows_it(
    config: tinydj.Config, clock: FakeClock, worker: tinydj.Worker, out: Path
) -> None:
    clock.set(datetime(2026, 3, 28, 12))
    tasks.register_recurring(cron_app.nightly)
    assert worker.work_off() == (0, 0)
    [row] = tinydj.list_jobs()
    assert row.key == "cron_app:nightly"
    assert row.reoccur_in == "30 2 * * * Europe/Berlin"
    # 02:30 does not exist on 29 March: it runs at 03:00 CEST, 01:00 UTC.
    assert row.run_at == datetime(2026, 3, 29, 1, 0)
    assert runs(out, "nightly") == []


@pytest.mark.parametrize(
    ("start", "change_day"),
    [
        (datetime(2026, 3, 27, 12), date(2026, 3, 29)),
        (datetime(2026, 10, 23, 12), date(2026, 10, 25)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_a_nightly_job_runs_once_a_day_across_dst(
    config: tinydj.Config,
    clock: FakeClock,
    worker: tinydj.Worker,
    out: Path,
    start: datetime,
    change_day: date,
) -> None:
    clock.set(start)
    tasks.register_recurring(cron_app.nightly)
    worker.work_off()
    # Four days in 10-minute steps: every step of the repeated hour is visited.
    assert drive(worker, clock, start + timedelta(days=4), timedelta(minutes=10)) == (4, 0)
    times = runs(out, "nightly")
    days = local_days(times)
    assert sorted(days) == [change_day + timedelta(days=d) for d in (-1, 0, 1, 2)], times
    assert set(days.values()) == {1}, times
    [row] = tinydj.list_jobs()
    assert row.run_at > clock() and row.attempts == 0 and row.locked_by is None
    local = row.run_at.replace(tzinfo=UTC).astimezone(BERLIN)
    assert (local.hour, local.minute) == (2, 30)


def test_a_run_that_ends_inside_the_repeated_hour_does_not_run_again(
    config: tinydj.Config,
    clock: FakeClock,
    worker: tinydj.Worker,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It starts at 02:30 CEST and takes 40 minutes: it ends at 02:10 CET,
    # before the second 02:30 of the night.
    monkeypatch.setenv(cron_app.ENV_TAKES, str(40 * 60))
    clock.set(datetime(2026, 10, 24, 12))
    tasks.register_recurring(cron_app.slow_nightly)
    worker.work_off()
    drive(worker, clock, datetime(2026, 10, 25, 12), timedelta(minutes=5))
    assert runs(out, "slow_nightly") == [datetime(2026, 10, 25, 0, 30)]
    [row] = tinydj.list_jobs()
    assert row.run_at == datetime(2026, 10, 26, 1, 30)  # 02:30 CET the next night
    assert row.last_run_at == datetime(2026, 10, 25, 1, 10)


def test_a_worker_down_for_days_runs_one_catch_up(
    config: tinydj.Config, clock: FakeClock, worker: tinydj.Worker, out: Path
) -> None:
    clock.set(datetime(2026, 1, 5, 8))
    tasks.register_recurring(cron_app.nightly)
    worker.work_off()
    drive(worker, clock, datetime(2026, 1, 6, 8), timedelta(minutes=15))
    assert runs(out, "nightly") == [datetime(2026, 1, 6, 1, 30)]
    clock.set(datetime(2026, 1, 9, 20, 7))  # three fires missed
    assert worker.work_off() == (1, 0)
    assert worker.work_off() == (0, 0)
    assert runs(out, "nightly")[1:] == [datetime(2026, 1, 9, 20, 7)]
    [row] = tinydj.list_jobs()
    assert row.run_at == datetime(2026, 1, 10, 1, 30)


def test_a_failing_cron_job_keeps_its_schedule(
    config: tinydj.Config, clock: FakeClock, worker: tinydj.Worker
) -> None:
    clock.set(datetime(2026, 1, 2, 8, 59))  # a Friday
    tasks.register_recurring(cron_app.weekdays)
    worker.work_off()
    clock.advance(60)
    assert worker.work_off() == (0, 1)
    [row] = tinydj.list_jobs()
    assert row.run_at == datetime(2026, 1, 5, 9)  # Monday
    assert row.attempts == 1 and row.failed_at is None
    assert row.last_error is not None and "the report server is down" in row.last_error


# -- schedule(obj, cron=...) ----------------------------------------------------


class Backup:
    def __init__(self, target: str) -> None:
        self.target = target

    def perform(self) -> None:
        cron_app.record(f"backup-{self.target}")


def test_schedule_with_cron(
    config: tinydj.Config, clock: FakeClock, worker: tinydj.Worker, out: Path
) -> None:
    clock.set(datetime(2026, 1, 2, 8))
    row = tinydj.schedule(Backup("db"), cron="0 */6 * * *", tz="Europe/Berlin", key="backup")
    assert row.reoccur_in == "0 */6 * * * Europe/Berlin"
    assert row.run_at == datetime(2026, 1, 2, 11)  # 12:00 CET
    drive(worker, clock, datetime(2026, 1, 3, 8), timedelta(minutes=30))
    assert runs(out, "backup-db") == [
        datetime(2026, 1, 2, 11),
        datetime(2026, 1, 2, 17),
        datetime(2026, 1, 2, 23),
        datetime(2026, 1, 3, 5),
    ]


def test_a_changed_cron_spec_moves_the_row_to_its_own_first_fire(
    config: tinydj.Config, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 1, 2, 8))
    first = tinydj.schedule(Backup("db"), cron="0 9 * * *", key="backup")
    assert first.run_at == datetime(2026, 1, 2, 9)
    again = tinydj.schedule(Backup("db"), cron="0 9 * * *", key="backup")
    assert again.id == first.id and again.run_at == first.run_at
    # Later than the old run_at: the old 09:00 must not run once more.
    later = tinydj.schedule(Backup("db"), cron="0 10 * * *", key="backup")
    assert later.id == first.id and later.run_at == datetime(2026, 1, 2, 10)
    assert later.reoccur_in == "0 10 * * *"
    # From cron back to an interval: due no later than one interval from now.
    interval = tinydj.schedule(Backup("db"), every="15m", key="backup")
    assert interval.run_at == datetime(2026, 1, 2, 8, 15) and interval.reoccur_in == "15m"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cron": "0 9 * * *", "every": "1h"}, ValueError, "either every= or cron=, not both"),
        ({"tz": "Europe/Berlin"}, ValueError, "tz= needs cron="),
        ({"cron": "0 9 * * * *"}, ValueError, r"invalid cron expression '0 9 \* \* \* \*'"),
        ({"cron": "0 9 * * *", "tz": "Nowhere"}, ValueError, "unknown time zone 'Nowhere'"),
    ],
)
def test_schedule_refuses_bad_arguments_and_writes_nothing(
    config: tinydj.Config, kwargs: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        tinydj.schedule(Backup("db"), **kwargs)  # type: ignore[arg-type]
    assert tinydj.list_jobs() == []


# -- several processes, one fixed clock: once per fire ---------------------------

PROCESSES = 4


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_processes_at_the_same_instant_run_each_fire_once(
    db_url: str, tmp_path: Path, out: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    """4 worker processes, each with a fixed clock set to the same value, call
    ``work_off`` 20 times per round; the ``* * * * *`` job runs once per fire
    time, and a round with no new fire runs nothing."""
    config = tinydj.configure(db_url)
    config.store.ensure_schema()
    rounds = tmp_path / "rounds.txt"
    rounds.touch()
    code = (
        "import sys, pathlib, cron_app; "
        "sys.exit(cron_app.main(sys.argv[1], pathlib.Path(sys.argv[2])))"
    )
    env = child_env({cron_app.ENV_OUT: str(out)})
    for i in range(PROCESSES):
        log = open(tmp_path / f"p{i}.log", "wb")  # the child keeps its own copy
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", code, db_url, str(rounds)],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    t0 = datetime(2026, 1, 2, 12, 0)
    clocks = [
        t0,  # a fresh row: the fire at 12:00 is due
        t0 + timedelta(seconds=30),  # no new fire
        t0 + timedelta(minutes=1),
        t0 + timedelta(minutes=1, seconds=59),  # no new fire
        t0 + timedelta(minutes=7),  # 12:02 ... 12:07 missed: one catch-up
        t0 + timedelta(minutes=7, seconds=1),  # no new fire
        t0 + timedelta(minutes=8),
    ]

    def details() -> str:
        return "\n".join((tmp_path / f"p{i}.log").read_text() for i in range(PROCESSES))

    for number, when in enumerate(clocks):
        with rounds.open("a") as f:
            f.write(f"{number} {when.isoformat()}\n")
        wait_until(
            lambda n=number: (
                sum(line.startswith(f"done {n} ") for line in read_lines(out)) == PROCESSES
            ),
            60,
            f"round {number} in {PROCESSES} processes",
            details=details,
        )
    with rounds.open("a") as f:
        f.write("stop\n")
    for proc in children:
        assert proc.wait(30) == 0, details()

    times = runs(out, "minutely")
    assert times == [
        t0,
        t0 + timedelta(minutes=1),
        t0 + timedelta(minutes=7),
        t0 + timedelta(minutes=8),
    ], read_lines(out)
    [row] = tinydj.list_jobs()
    assert row.reoccur_in == "* * * * *" and row.run_at == t0 + timedelta(minutes=9)
    assert row.locked_by is None and row.attempts == 0
    config.store.close()
    config.database.close()
