"""Helpers for the tests that run real processes and wait on what they do.

One copy of what the process tests (concurrency, distributed, reliability,
timeouts, cli) share:

- ``wait_until``: poll a condition with a deadline, never a bare ``sleep``;
- ``read_lines``: the lines a job appended to a trace file (none yet: ``[]``);
- ``child_env``: the environment of a child ``python``: this checkout's tinydj
  and the tests' modules (``sample_jobs``, ``recurring_app`` ...) importable,
  no ``TINYDJ_DATABASE_URL`` leaking in, unbuffered output;
- ``tinydj_command``: the argv of ``python -m tinydj ARGS`` with this interpreter;
- ``Processes``: the ``tinydj`` subprocesses of one test, each with a log
  file, and whatever is left of them killed at the end (the ``procs`` fixture
  in ``conftest.py`` gives each test one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

#: How much of the end of a worker's log a failure message shows.
LOG_TAIL = 3000

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.02,
    *,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` every ``interval`` s until it returns something truthy;
    return that value.

    ``condition`` is called at least once, and once more after the deadline
    before giving up. After ``timeout`` s it raises ``AssertionError("timed out
    after TIMEOUT s waiting for WHAT")``; ``details``, if given, is called then
    and its text (a worker's log, say) is added after a colon and a newline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout} s waiting for {what}"
            if details is not None:
                message += f":\n{details()}"
            raise AssertionError(message)
        time.sleep(interval)


def read_lines(path: Path) -> list[str]:
    """The lines of the text file ``path``; ``[]`` while it does not exist."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python process of a test.

    A copy of ``os.environ`` without ``TINYDJ_DATABASE_URL`` (a child uses the
    database the test names, unless ``extra`` sets it); ``PYTHONPATH`` starts
    with the tests directory (so ``sample_jobs``, ``recurring_app`` ... import
    by name) and the repository root (so this checkout's tinydj is the one
    used), then whatever it held before; ``PYTHONUNBUFFERED=1`` so that logs
    reach their file at once. ``extra`` is applied last.
    """
    env = {k: v for k, v in os.environ.items() if k != "TINYDJ_DATABASE_URL"}
    paths = [str(TESTS), str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def tinydj_command(*args: str) -> list[str]:
    """``python -m tinydj ARGS``, run by the interpreter running the tests."""
    return [sys.executable, "-m", "tinydj", *args]


class Processes:
    """The ``tinydj`` subprocesses of one test, by name.

    Each runs in ``tmp_path`` with ``child_env()``, stdin closed, stdout and
    stderr together in ``tmp_path / f"{name}.log"``. ``cleanup()`` kills
    whatever still runs and closes the logs; call it in a ``finally`` or use
    the ``procs`` fixture, which does.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def spawn(
        self, name: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m tinydj ARGS`` as ``name``; ``env`` is added to ``child_env()``."""
        log = self.logs[name] = open(self.log_path(name), "wb")
        proc = subprocess.Popen(
            tinydj_command(*args),
            cwd=self.tmp_path,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def work(
        self, name: str, db_url: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m tinydj work --database DB_URL --name NAME ARGS...``."""
        return self.spawn(name, "work", "--database", db_url, "--name", name, *args, env=env)

    def output(self, name: str, tail: int | None = None) -> str:
        """What ``name`` has written so far (its last ``tail`` characters if given)."""
        log = self.logs[name]
        if not log.closed:
            log.flush()
        text = self.log_path(name).read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def alive(self) -> list[str]:
        """The names of the processes still running."""
        return [name for name, proc in self.procs.items() if proc.poll() is None]

    def wait(self, name: str, timeout: float) -> int:
        """The exit status of ``name``; fails (showing its log) if it runs longer."""
        try:
            return self.procs[name].wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {name} still running after {timeout} s; "
                f"log:\n{self.output(name, LOG_TAIL)}"
            ) from None

    def assert_exit(self, name: str, expected: int, timeout: float) -> None:
        """``name`` exits with status ``expected`` within ``timeout`` s."""
        status = self.wait(name, timeout)
        assert status == expected, (
            f"worker {name} exited {status}, expected {expected}; "
            f"log:\n{self.output(name, LOG_TAIL)}"
        )

    def assert_alive(self, name: str) -> None:
        """``name`` is still running."""
        status = self.procs[name].poll()
        assert status is None, (
            f"worker {name} exited ({status}) although nobody stopped it; "
            f"log:\n{self.output(name, LOG_TAIL)}"
        )

    def cleanup(self) -> None:
        """Kill every process still running, reap them all, close the logs."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot help
                pass
        for log in self.logs.values():
            log.close()


def run_exactly_once(
    db_url: str,
    procs: Processes,
    tmp_path: Path,
    *,
    processes: int,
    threads: int,
    jobs: int,
    queues: tuple[str, ...] = (),
) -> None:
    """Drain ``jobs`` jobs with ``processes`` x ``threads`` ``tinydj work``
    workers and check that each job ran exactly once, shared between them.

    One gate job per worker thread (priority -1: taken first, one per thread)
    holds every thread of every process until all of them are running; then
    they all go at the jobs together, so the test cannot pass because one
    process happened to start first and drain everything alone. ``queues``:
    the jobs (and gates) go round these queues, and the workers are workers
    of all of them (``--queue`` each).
    """
    import sample_jobs

    import tinydj

    out = tmp_path / "ran.txt"
    marker = tmp_path / "go"
    gates = [f"gate{i}" for i in range(processes * threads)]
    tokens = [f"t{i}" for i in range(jobs)]
    enqueued = []
    for k, queue in enumerate(queues or (None,)):
        each = len(queues) or 1
        gate = sample_jobs.append_token_and_wait.with_options(priority=-1, queue=queue)
        gate.send_later_many([(str(out), g, str(marker)) for g in gates[k::each]])
        task = sample_jobs.append_token.with_options(queue=queue)
        enqueued += task.send_later_many([(str(out), t) for t in tokens[k::each]])
    assert len({j.id for j in enqueued}) == jobs
    assert tinydj.stats()["ready"] == jobs + len(gates)

    names = [f"w{i}" for i in range(processes)]
    listed = [arg for q in queues for arg in ("--queue", q)]
    for name in names:
        procs.work(
            name, db_url, "--threads", str(threads), "--exit-on-complete", "--quiet", *listed
        )
    wait_until(
        lambda: len(read_lines(out)) >= len(gates), 60, "every worker thread to hold a gate job"
    )
    gate_lines = read_lines(out)
    marker.touch()
    for name in names:
        procs.assert_exit(name, 0, timeout=90)

    # Each thread of each process held one gate, at the same time.
    assert sorted(line.split()[0] for line in gate_lines) == sorted(gates), gate_lines
    held_by = {tuple(line.split()[1:]) for line in gate_lines}
    assert len(held_by) == processes * threads, gate_lines
    assert len({pid for pid, _ in held_by}) == processes, gate_lines

    lines = [line for line in read_lines(out) if not line.startswith("gate")]
    ran = Counter(line.split()[0] for line in lines)
    twice = sorted(t for t, n in ran.items() if n > 1)
    never = sorted(set(tokens) - set(ran))
    assert not twice, f"{len(twice)} job(s) ran more than once, e.g. {twice[:10]}"
    assert not never, f"{len(never)} job(s) never ran, e.g. {never[:10]}"
    assert len(lines) == jobs and set(ran) == set(tokens)
    assert len(read_lines(out)) == jobs + len(gates)
    assert tinydj.list_jobs() == [], "finished jobs must be deleted"
    # The jobs were really shared out (all threads were live and competing).
    pids = Counter(line.split()[1] for line in lines)
    assert len(pids) >= 2, f"one process ran everything: {pids}"
