"""Jobs used by the tests; importable by path, as real jobs are."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import tinydj
from tinydj import every, job

calls: list[Any] = []


def reset() -> None:
    calls.clear()
    Hooked.events.clear()


@job
def record(*args: Any, **kwargs: Any) -> None:
    calls.append((args, kwargs))


@job(queue="mail", priority=5, max_attempts=3)
def send_mail(to: str, body: str = "") -> str:
    calls.append(("mail", to, body))
    return to


@job(max_attempts=2)
def always_fails(n: int) -> None:
    calls.append(("fail", n))
    raise ValueError(f"failure number {n}")


@job
def flaky(key: str, failures: int) -> None:
    """Fails ``failures`` times (counted in ``calls``), then succeeds."""
    seen = sum(1 for c in calls if c == ("flaky", key))
    calls.append(("flaky", key))
    if seen < failures:
        raise RuntimeError(f"flaky {key} attempt {seen + 1}")


@job
async def async_record(value: Any) -> None:
    await asyncio.sleep(0)
    calls.append(("async", value))


@job
def takes_when(when: Any, delay: Any = None) -> None:
    calls.append(("when", when, delay))


@every("1h")
def hourly() -> None:
    calls.append("hourly")


@job
def append_line(path: str, text: str) -> None:
    """Append a line to a file (O_APPEND: safe across processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


@job
def slow_append(path: str, text: str, seconds: float) -> None:
    """Write 'start', sleep, then 'done' lines: shows a job's progress to a test."""
    append_line(path, f"start {text}")
    time.sleep(seconds)
    append_line(path, f"done {text}")


@job
def wait_for_file(path: str, marker: str, timeout: float = 60.0) -> None:
    """Record start, then block until ``marker`` exists (a test's go signal)."""
    append_line(path, "start")
    deadline = time.monotonic() + timeout
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    append_line(path, "done")


class Report:
    """A plain object: stored as !tinydj/object."""

    def __init__(self, title: str, pages: int = 1) -> None:
        self.title = title
        self.pages = pages

    def perform(self) -> None:
        calls.append(("report", self.title, self.pages))

    def render(self, fmt: str) -> str:
        calls.append(("render", self.title, fmt))
        return fmt


class Hooked:
    """An object job with every Delayed::Job hook."""

    events: ClassVar[list[Any]] = []
    max_attempts = 2

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def before(self, job: tinydj.Job) -> None:
        Hooked.events.append("before")

    def perform(self) -> None:
        Hooked.events.append("perform")
        if self.fail:
            raise KeyError("hooked failure")

    def success(self, job: tinydj.Job) -> None:
        Hooked.events.append("success")

    def error(self, job: tinydj.Job, exc: BaseException) -> None:
        Hooked.events.append(("error", type(exc).__name__))

    def failure(self, job: tinydj.Job) -> None:
        Hooked.events.append("failure")

    def after(self, job: tinydj.Job) -> None:
        Hooked.events.append("after")


class Rescheduled:
    def reschedule_at(self, now: Any, attempts: int) -> Any:
        from datetime import timedelta

        return now + timedelta(seconds=100 * attempts)

    def perform(self) -> None:
        raise RuntimeError("again")


@job
def append_token(path: str, token: str) -> None:
    """Append ``token pid thread`` (O_APPEND): who ran a job, for concurrency tests."""
    import threading

    append_line(path, f"{token} {os.getpid()} {threading.get_ident()}")


@job(timeout=0.3)
def sleepy(seconds: float) -> None:
    """Sleeps longer than its timeout (in small steps, so SIGALRM can land)."""
    calls.append(("sleepy", "start"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    calls.append(("sleepy", "end"))


@job(timeout=0.3)
async def async_sleepy(seconds: float) -> None:
    calls.append(("async_sleepy", "start"))
    await asyncio.sleep(seconds)
    calls.append(("async_sleepy", "end"))


@job(timeout=0.3)
def blocked(marker: str) -> None:
    """Blocks until ``marker`` exists: stands for a job that cannot be stopped."""
    calls.append(("blocked", "start"))
    deadline = time.monotonic() + 30
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    calls.append(("blocked", "end"))


# -- tests/test_reliability.py ---------------------------------------------------


@job
def traced(path: str, token: str, seconds: float = 0.005) -> None:
    """Write ``start TOKEN PID TIME``, work ``seconds``, then ``done TOKEN PID TIME``
    (O_APPEND lines): shows which jobs were in flight when a worker was killed."""
    pid = os.getpid()
    append_line(path, f"start {token} {pid} {time.time():.6f}")
    time.sleep(seconds)
    append_line(path, f"done {token} {pid} {time.time():.6f}")


@job
def interrupted_then_fails(path: str, marker: str, timeout: float = 60.0) -> None:
    """Run n (1, 2, ...): write ``start N PID``, block until the file ``marker + N``
    exists, then (from the second run on) raise, so that the row survives."""
    try:
        n = len(Path(path).read_text().splitlines()) + 1
    except FileNotFoundError:
        n = 1
    append_line(path, f"start {n} {os.getpid()}")
    deadline = time.monotonic() + timeout
    while not Path(f"{marker}{n}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if n > 1:
        raise RuntimeError(f"run {n} fails on purpose")


@job
def exits(code: int = 3) -> None:
    """Calls sys.exit(): a job that raises SystemExit (a BaseException)."""
    import sys

    calls.append(("exits", code))
    sys.exit(code)


@job(priority=-1)
def kills_its_worker() -> None:
    """SIGKILLs the process that runs it: a job that crashes its worker
    (a segfault, an out-of-memory kill). Priority -1: it runs before others."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@job(max_attempts=3)
def fails_with(kind: str) -> None:
    """Raises an error whose message holds text some databases cannot store:
    a lone surrogate (a file name decoded with surrogateescape) or a NUL."""
    text = {"surrogate": b"caf\xe9.txt".decode("utf-8", "surrogateescape"), "nul": "a\x00b"}
    raise FileNotFoundError(f"no such file: {text[kind]}")


@job
def append_token_and_wait(path: str, token: str, marker: str, timeout: float = 30.0) -> None:
    """``append_token``, then block until ``marker`` exists: a gate that holds a
    worker thread until the test lets all of them go at once."""
    append_token(path, token)
    deadline = time.monotonic() + timeout
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
