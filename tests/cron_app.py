"""``@cron`` jobs for test_cron, and a worker process for its multi-process test.

Each run of a job appends ``NAME CLOCK PID`` to the file named by
$TINYDJ_TEST_CRON_OUT (CLOCK: the configured clock's time, ISO format, when the
run started). ``slow_nightly`` also advances a ``FakeClock`` by
$TINYDJ_TEST_CRON_TAKES seconds, like a run that takes that long.

``main(DB_URL, ROUNDS_FILE)`` (run in a child ``python``) is one worker process: for each line
``N ISO-TIME`` that appears in ROUNDS_FILE (the test appends them one at a
time), it sets its fixed clock to that time, calls ``work_off`` 20 times and
appends ``done N PID`` to the output file.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import tinydj
from tinydj import cron
from tinydj.testing import FakeClock

ENV_OUT = "TINYDJ_TEST_CRON_OUT"
ENV_TAKES = "TINYDJ_TEST_CRON_TAKES"


def record(name: str) -> None:
    now = tinydj.get_config().clock()
    fd = os.open(os.environ[ENV_OUT], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {now.isoformat()} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@cron("30 2 * * *", tz="Europe/Berlin")
def nightly() -> None:
    record("nightly")


@cron("30 2 * * *", tz="Europe/Berlin")
def slow_nightly() -> None:
    record("slow_nightly")
    clock = tinydj.get_config().clock
    if isinstance(clock, FakeClock):
        clock.advance(float(os.environ.get(ENV_TAKES, "0")))


@cron("* * * * *", queue="cron")
def minutely() -> None:
    record("minutely")


@cron("0 9 * * MON-FRI")
def weekdays() -> None:
    raise RuntimeError("the report server is down")


def main(db_url: str, rounds_file: Path) -> int:
    tinydj.tasks._recurring.clear()  # this process serves minutely only
    tinydj.tasks.register_recurring(minutely)
    clock = FakeClock(datetime(2000, 1, 1))
    config = tinydj.configure(db_url, clock=clock)
    worker = tinydj.Worker(config=config, queues=["cron"])
    done = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = rounds_file.read_text().splitlines() if rounds_file.exists() else []
        if lines and lines[-1] == "stop":
            return 0
        if len(lines) <= done:
            time.sleep(0.005)
            continue
        number, when = lines[done].split()
        clock.set(datetime.fromisoformat(when))
        for _ in range(20):
            worker.work_off()
        done += 1
        fd = os.open(os.environ[ENV_OUT], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"done {number} {os.getpid()}\n".encode())
        os.close(fd)
    return 1
