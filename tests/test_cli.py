"""The command line, through real processes: ``python -m tinydj`` and ``tinydj``.

Every child process is bounded by a timeout and killed in ``finally`` (the
background workers by the ``procs`` fixture); waits for a condition poll with
a deadline. Jobs are enqueued in this process
(``tinydj.configure(url)``) and run by the child, which imports them by path
(``PYTHONPATH`` holds the tests directory, so ``sample_jobs`` imports).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import peewee
import proc_helpers
import pytest
import sample_jobs
from proc_helpers import Processes, child_env, read_lines, tinydj_command

import tinydj

T = TypeVar("T")

#: The console script installed next to this interpreter (the venv's bin).
SCRIPT = Path(sys.executable).parent / "tinydj"
#: Longest any single CLI run may take before the test fails (it is killed).
RUN_TIMEOUT = 30.0
#: Longest a test waits for a condition (job output, a log line, an exit).
DEADLINE = 20.0
#: A naive-UTC time long past, in the text form tinydj stores on SQLite.
PAST = "2000-01-01 00:00:00.000000"


# -- helpers ---------------------------------------------------------------


def command(*args: str, script: bool = False) -> list[str]:
    """``tinydj ARGS`` as ``python -m tinydj``, or through the console script."""
    return [str(SCRIPT), *args] if script else tinydj_command(*args)


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    script: bool = False,
    timeout: float = RUN_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion (killed and failed after ``timeout``)."""
    try:
        return subprocess.run(
            command(*args, script=script),
            cwd=cwd,
            env=env or child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"tinydj {' '.join(args)} still running after {timeout} s; stderr:\n"
            f"{_text(exc.stderr)[-3000:]}"
        )


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_line_error(result: subprocess.CompletedProcess[str], *, usage: bool = False) -> str:
    """Check the contract for bad input; return the error line.

    Non-zero status, no traceback, and on stderr one line (``usage`` allows
    argparse's usage block before it).
    """
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error message on stderr"
    if usage:
        assert lines[0].startswith("usage: tinydj"), result.stderr
    else:
        assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[-1].startswith("tinydj"), result.stderr
    return lines[-1]


def wait_until(
    predicate: Callable[[], T],
    what: str,
    *,
    timeout: float = DEADLINE,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> T:
    """``proc_helpers.wait_until`` with this file's defaults (``DEADLINE``,
    polls every 10 ms), failing at once if ``proc`` exits first; a failure
    shows ``log``."""

    def condition() -> T:
        value = predicate()
        if not value and proc is not None and proc.poll() is not None:
            pytest.fail(f"worker exited ({proc.returncode}) before {what}:\n{read(log)}")
        return value

    return proc_helpers.wait_until(
        condition, timeout, what, interval=0.01, details=lambda: read(log)
    )


def read(path: Path | None) -> str:
    return path.read_text() if path is not None and path.exists() else ""


def start_worker(procs: Processes, url: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``tinydj work --database URL`` (no other option) in the background as
    ``procs`` process ``"worker"``: the process, and its log (stdout and stderr)."""
    return procs.spawn("worker", "work", "--database", url), procs.log_path("worker")


def parse_stats(stdout: str) -> dict[str, int]:
    """The ``total`` row of ``tinydj stats``, by state (the LAG column left out)."""
    header, *rows = (line.split() for line in stdout.splitlines())
    assert header[0] == "QUEUE" and header[-1] == "LAG", stdout
    (total,) = (row for row in rows if row[0] == "total")
    return {name.lower(): int(count) for name, count in zip(header[1:-1], total[1:-1], strict=True)}


def sql(cfg: tinydj.Config, statement: str, *params: Any) -> None:
    """Change rows behind tinydj's back (SQLite parameter style)."""
    cfg.database.execute_sql(statement, params)


def naive_utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _configured(url: str) -> Iterator[tinydj.Config]:
    """tinydj in this process on ``url``, the table created; closed afterwards."""
    sample_jobs.reset()
    cfg = tinydj.configure(url)
    tinydj.create_tables()
    yield cfg
    cfg.store.close()
    cfg.database.close()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[tinydj.Config]:
    """tinydj in this process pointed at the SQLite file the children use."""
    yield from _configured(sqlite_url)


@pytest.fixture
def any_db(db_url: str) -> Iterator[tinydj.Config]:
    """Like ``sqlite_db``, on every database (Postgres when TINYDJ_TEST_PG_URL is set)."""
    yield from _configured(db_url)


# -- help and usage errors -------------------------------------------------


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "console-script"])
def test_help_exits_zero(tmp_path: Path, script: bool) -> None:
    result = ok(run_cli("--help", cwd=tmp_path, script=script))
    assert "usage: tinydj" in result.stdout
    for name in ("work", "clear", "stats", "list", "retry"):
        assert name in result.stdout
    assert result.stderr == ""


def test_work_help_lists_the_contract_options(tmp_path: Path) -> None:
    result = ok(run_cli("work", "--help", cwd=tmp_path))
    for option in (
        "--database",
        "--app",
        "--queue",
        "--threads",
        "--exit-on-complete",
        "--lock-timeout",
        "--poll-interval",
    ):
        assert option in result.stdout


def test_version(tmp_path: Path) -> None:
    result = ok(run_cli("--version", cwd=tmp_path))
    assert result.stdout.strip() == f"tinydj {tinydj.__version__}"


def test_unknown_option_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = run_cli("work", "--unknown-option", cwd=tmp_path)
    line = one_line_error(result, usage=True)
    assert result.returncode == 2
    assert "--unknown-option" in line
    assert not (tmp_path / "tinydj.sqlite3").exists()  # rejected before any database work


def test_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    line = one_line_error(result, usage=True)
    assert "COMMAND" in line


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--threads", "0"),
        ("--threads", "-3"),
        ("--threads", "two"),
        ("--lock-timeout", "-1"),
        ("--lock-timeout", "0"),
        ("--poll-interval", "0"),
        ("--poll-interval", "nan"),
    ],
)
def test_bad_numbers_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    result = run_cli("work", option, value, "--exit-on-complete", cwd=tmp_path)
    line = one_line_error(result, usage=True)
    assert result.returncode == 2
    assert option in line and value in line
    assert not (tmp_path / "tinydj.sqlite3").exists()


@pytest.mark.parametrize("value", ["inf", "1e12"])
def test_unusable_lock_timeout_is_rejected_or_works(tmp_path: Path, value: str) -> None:
    """BUG (see report): an infinite or absurd --lock-timeout is accepted; the
    worker then cannot compute ``now - lock_timeout`` (OverflowError), logs a
    traceback every few seconds forever and never exits, even with
    --exit-on-complete. Either a usage error or a clean run is fine."""
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    result = run_cli(
        "work",
        "--database",
        url,
        "--lock-timeout",
        value,
        "--exit-on-complete",
        cwd=tmp_path,
        timeout=5,
    )
    if result.returncode == 0:
        ok(result)
    else:
        assert "--lock-timeout" in one_line_error(result, usage=True)


# -- unreachable databases, missing modules --------------------------------


def test_unreachable_sqlite_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli(
        "work",
        "--database",
        "sqlite:////nonexistent-dir/x.db",
        "--exit-on-complete",
        cwd=tmp_path,
    )
    line = one_line_error(result)
    assert "nonexistent-dir" in line
    assert "started" not in result.stderr


@pytest.mark.parametrize("args", [["clear"], ["stats"], ["list"], ["retry", "1"]])
def test_unreachable_sqlite_for_admin_commands(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    result = run_cli(*args, "--database", url, cwd=tmp_path)
    assert "missing-dir" in one_line_error(result)
    assert not (tmp_path / "missing-dir").exists()


def test_unreachable_postgres_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli(
        "work",
        "--database",
        "postgresql://postgres@127.0.0.1:1/test",
        "--exit-on-complete",
        cwd=tmp_path,
    )
    line = one_line_error(result)
    assert result.returncode == 1
    assert "127.0.0.1" in line


def test_unsupported_database_url(tmp_path: Path) -> None:
    result = run_cli("stats", "--database", "bogus://somewhere/db", cwd=tmp_path)
    assert "bogus://somewhere/db" in one_line_error(result)


def test_missing_app_module_is_a_one_line_error(tmp_path: Path, sqlite_url: str) -> None:
    result = run_cli(
        "work",
        "--database",
        sqlite_url,
        "--app",
        "no_such_module",
        "--exit-on-complete",
        cwd=tmp_path,
    )
    line = one_line_error(result)
    assert "no_such_module" in line
    assert "started" not in result.stderr  # no worker ran


def test_relative_app_name_is_a_one_line_error(tmp_path: Path, sqlite_url: str) -> None:
    """BUG (see report): ``--app .tasks`` makes importlib raise TypeError,
    which the CLI does not catch: a traceback instead of a one-line error."""
    result = run_cli(
        "work",
        "--database",
        sqlite_url,
        "--app",
        ".tasks",
        "--exit-on-complete",
        cwd=tmp_path,
    )
    assert ".tasks" in one_line_error(result)


def test_retry_of_unknown_id_is_a_one_line_error(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config
) -> None:
    result = run_cli("retry", "987654", "--database", sqlite_url, cwd=tmp_path)
    assert "987654" in one_line_error(result)


def test_retry_id_must_be_a_number(tmp_path: Path, sqlite_url: str) -> None:
    result = run_cli("retry", "abc", "--database", sqlite_url, cwd=tmp_path)
    assert "abc" in one_line_error(result, usage=True)


# -- running jobs -----------------------------------------------------------


def test_work_exit_on_complete_runs_all_jobs(
    tmp_path: Path, db_url: str, any_db: tinydj.Config
) -> None:
    """On SQLite and (when TINYDJ_TEST_PG_URL is set) Postgres."""
    out = tmp_path / "out.txt"
    for text in ("one", "two", "three"):
        sample_jobs.append_line.send_later(str(out), text)
    sample_jobs.record.send_later(1, b=2)
    assert len(tinydj.list_jobs()) == 4

    result = ok(run_cli("work", "--database", db_url, "--exit-on-complete", cwd=tmp_path))
    assert read_lines(out) == ["one", "two", "three"]  # each once, in order
    assert tinydj.list_jobs() == []
    assert "COMPLETED" in result.stderr  # INFO logging is on by default


def test_work_threads_and_quiet(tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config) -> None:
    out = tmp_path / "out.txt"
    for i in range(8):
        sample_jobs.append_line.send_later(str(out), str(i))
    result = ok(
        run_cli(
            "work",
            "--database",
            sqlite_url,
            "--threads",
            "3",
            "--exit-on-complete",
            "-q",
            cwd=tmp_path,
        )
    )
    assert sorted(read_lines(out), key=int) == [str(i) for i in range(8)]
    assert tinydj.list_jobs() == []
    assert "COMPLETED" not in result.stderr


def test_work_only_takes_the_given_queue(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config
) -> None:
    mail = sample_jobs.send_mail.send_later("a@example.com")
    other = sample_jobs.record.send_later("stays")
    ok(
        run_cli(
            "work", "--database", sqlite_url, "--queue", "mail", "--exit-on-complete", cwd=tmp_path
        )
    )
    assert tinydj.get_job(mail.id) is None
    left = tinydj.get_job(other.id)
    assert left is not None and left.attempts == 0 and not left.locked


def test_exit_on_complete_exits_zero_when_jobs_fail(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config
) -> None:
    out = tmp_path / "out.txt"
    failing = sample_jobs.always_fails.send_later(7)  # max_attempts=2
    sample_jobs.append_line.send_later(str(out), "fine")

    # First failure: a retry is scheduled seconds later, so nothing is due.
    result = ok(run_cli("work", "--database", sqlite_url, "--exit-on-complete", cwd=tmp_path))
    assert read_lines(out) == ["fine"]
    job = tinydj.get_job(failing.id)
    assert job is not None
    assert job.attempts == 1 and not job.failed and not job.locked
    assert job.run_at - job.updated_at >= timedelta(seconds=3)  # the first backoff
    assert "failure number 7" in (job.last_error or "")
    assert "failure number 7" in result.stderr  # logged, but not a crash

    # Make the retry due: the second failure is permanent; still exit 0.
    sql(sqlite_db, "UPDATE delayed_jobs SET run_at = ? WHERE id = ?", PAST, failing.id)
    result = ok(run_cli("work", "--database", sqlite_url, "--exit-on-complete", cwd=tmp_path))
    job = tinydj.get_job(failing.id)
    assert job is not None
    assert job.failed and job.attempts == 2 and not job.locked
    assert "permanently" in result.stderr
    assert read_lines(out) == ["fine"]


def test_list_stats_retry_of_a_failed_job(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config
) -> None:
    failing = sample_jobs.always_fails.send_later(3)
    waiting = sample_jobs.record.send_in("1h", "later")
    for _ in range(2):  # two real failures (max_attempts=2), in this process
        sql(sqlite_db, "UPDATE delayed_jobs SET run_at = ? WHERE id = ?", PAST, failing.id)
        tinydj.Worker(config=sqlite_db).work_off()
    failed = tinydj.get_job(failing.id)
    assert failed is not None and failed.failed

    stats = parse_stats(ok(run_cli("stats", "--database", sqlite_url, cwd=tmp_path)).stdout)
    assert stats == {"ready": 0, "scheduled": 1, "running": 0, "failed": 1, "recurring": 0}

    header, *listed = ok(
        run_cli("list", "--database", sqlite_url, cwd=tmp_path)
    ).stdout.splitlines()
    assert header.split()[:2] == ["ID", "STATE"]
    assert len(listed) == 2
    assert listed[0].split()[:2] == [str(failing.id), "failed"]
    assert "sample_jobs:always_fails" in listed[0] and "failure number 3" in listed[0]
    assert listed[1].split()[:2] == [str(waiting.id), "scheduled"]

    only_failed = ok(run_cli("list", "--failed", "--database", sqlite_url, cwd=tmp_path))
    assert [line.split()[0] for line in only_failed.stdout.splitlines()[1:]] == [str(failing.id)]

    ok(run_cli("retry", str(failing.id), "--database", sqlite_url, cwd=tmp_path))
    retried = tinydj.get_job(failing.id)
    assert retried is not None
    assert not retried.failed and retried.attempts == 0 and retried.run_at <= naive_utcnow()
    stats = parse_stats(ok(run_cli("stats", "--database", sqlite_url, cwd=tmp_path)).stdout)
    assert stats == {"ready": 1, "scheduled": 1, "running": 0, "failed": 0, "recurring": 0}


def test_clear_deletes_every_job(tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config) -> None:
    sample_jobs.record.send_later("ready")
    sample_jobs.record.send_in("1h", "later")
    failed = sample_jobs.always_fails.send_later(1)
    locked = sample_jobs.record.send_later("locked")
    sql(
        sqlite_db,
        "UPDATE delayed_jobs SET failed_at = ?, attempts = 2 WHERE id = ?",
        PAST,
        failed.id,
    )
    sql(
        sqlite_db,
        "UPDATE delayed_jobs SET locked_at = ?, locked_by = 'elsewhere' WHERE id = ?",
        naive_utcnow().isoformat(" ", "microseconds"),
        locked.id,
    )
    assert tinydj.stats() == {"ready": 1, "scheduled": 1, "locked": 1, "failed": 1}

    result = ok(run_cli("clear", "--database", sqlite_url, cwd=tmp_path))
    assert re.search(r"\b4\b", result.stdout), result.stdout
    assert tinydj.list_jobs() == []

    again = ok(run_cli("clear", "--database", sqlite_url, cwd=tmp_path))
    assert re.search(r"\b0\b", again.stdout), again.stdout


# -- where the database comes from -----------------------------------------


def test_database_from_environment(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config
) -> None:
    out = tmp_path / "out.txt"
    sample_jobs.append_line.send_later(str(out), "from env")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = child_env({"TINYDJ_DATABASE_URL": sqlite_url})

    ok(run_cli("work", "--exit-on-complete", cwd=cwd, env=env))
    assert read_lines(out) == ["from env"]
    assert tinydj.list_jobs() == []
    assert not (cwd / "tinydj.sqlite3").exists()

    # --database wins over the environment.
    other = tmp_path / "other.sqlite3"
    other_cfg = tinydj.configure(f"sqlite:///{other}")
    sample_jobs.record.send_later("other")
    other_cfg.database.close()
    cleared = ok(run_cli("clear", "--database", f"sqlite:///{other}", cwd=cwd, env=env))
    assert cleared.stdout == "deleted 1 job: 1 ready\n"
    tinydj.configure(sqlite_url)


def test_default_database_is_tinydj_sqlite3_in_cwd(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    cfg = tinydj.configure(f"sqlite:///{tmp_path / 'tinydj.sqlite3'}")
    try:
        job = sample_jobs.append_line.send_later(str(out), "default db")
        stats = parse_stats(ok(run_cli("stats", cwd=tmp_path)).stdout)
        assert stats["ready"] == 1
        ok(run_cli("work", "--exit-on-complete", cwd=tmp_path))
        assert read_lines(out) == ["default db"]
        assert tinydj.get_job(job.id) is None
    finally:
        cfg.store.close()
        cfg.database.close()


def test_console_script_imports_app_from_cwd(tmp_path: Path) -> None:
    """The ``tinydj`` script (whose sys.path[0] is the venv's bin) imports
    ``--app`` modules from the current directory, like ``python -m``; the
    app's ``@every`` job gets its row and runs once per period."""
    ticks = tmp_path / "ticks.txt"
    (tmp_path / "cli_cwd_app.py").write_text(
        "from tinydj import every\n\n"
        "@every('1h')\n"
        "def tick():\n"
        f"    with open({str(ticks)!r}, 'a') as f:\n"
        "        f.write('tick\\n')\n"
    )
    # Neither the tests directory nor tmp_path is on PYTHONPATH here.
    env = {k: v for k, v in child_env().items() if k != "PYTHONPATH"}
    for _ in range(2):  # the second run finds the row not due yet
        result = ok(
            run_cli(
                "work",
                "--app",
                "cli_cwd_app",
                "--exit-on-complete",
                cwd=tmp_path,
                env=env,
                script=True,
            )
        )
    assert read_lines(ticks) == ["tick"]
    assert (tmp_path / "tinydj.sqlite3").exists()
    assert "started" in result.stderr

    cfg = tinydj.configure(f"sqlite:///{tmp_path / 'tinydj.sqlite3'}")
    try:
        (row,) = tinydj.list_jobs()
        assert row.key == "cli_cwd_app:tick" and row.recurring
        assert row.last_run_at is not None and row.attempts == 0 and not row.locked
        assert row.run_at > naive_utcnow() + timedelta(minutes=59)
    finally:
        cfg.store.close()
        cfg.database.close()


# -- signals ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_lets_the_running_job_finish(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config, procs: Processes, signum: int
) -> None:
    out = tmp_path / "out.txt"
    running = sample_jobs.slow_append.send_later(str(out), "a", 1.5)
    queued = sample_jobs.append_line.with_options(priority=10).send_later(str(out), "second")

    proc, log = start_worker(procs, sqlite_url)
    wait_until(lambda: "start a" in read_lines(out), "the job to start", proc=proc, log=log)
    proc.send_signal(signum)
    status = procs.wait("worker", DEADLINE)

    assert status == 0, read(log)
    assert "Traceback" not in read(log)
    assert read_lines(out) == ["start a", "done a"]  # finished, ran once, nothing new started
    assert tinydj.get_job(running.id) is None
    left = tinydj.get_job(queued.id)
    assert left is not None and not left.locked and left.attempts == 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_an_idle_worker(sqlite_url: str, procs: Processes, signum: int) -> None:
    proc, log = start_worker(procs, sqlite_url)
    wait_until(lambda: "started" in read(log), "the worker to start", proc=proc, log=log)
    proc.send_signal(signum)
    status = procs.wait("worker", DEADLINE)
    assert status == 0, read(log)
    assert "stopped" in read(log) and "Traceback" not in read(log)


@pytest.mark.slow
def test_second_sigint_exits_at_once_and_the_job_is_reclaimed_later(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config, procs: Processes
) -> None:
    out, marker = tmp_path / "out.txt", tmp_path / "go"
    job = sample_jobs.wait_for_file.send_later(str(out), str(marker), 60.0)

    proc, log = start_worker(procs, sqlite_url)
    wait_until(lambda: read_lines(out) == ["start"], "the job to start", proc=proc, log=log)
    # Ctrl-C, Ctrl-C: repeat until it exits (two signals sent back to back
    # could be merged into one before Python's handler runs).
    deadline = time.monotonic() + DEADLINE
    status = None
    while status is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            status = proc.wait(timeout=0.2)
    assert status is not None, f"worker ignored repeated SIGINTs:\n{read(log)}"

    assert status == 130, read(log)
    assert "Traceback" not in read(log)
    assert read_lines(out) == ["start"]  # the job did not finish
    held = tinydj.get_job(job.id)
    assert held is not None
    assert held.locked and held.locked_by and not held.failed and held.attempts == 0

    # Another worker takes the job once the dead worker's lease is older than
    # its --lock-timeout, and runs it again.
    marker.touch()
    assert held.locked_at is not None
    locked_at = held.locked_at
    wait_until(lambda: naive_utcnow() - locked_at > timedelta(seconds=0.5), "the lease to age")
    ok(
        run_cli(
            "work",
            "--database",
            sqlite_url,
            "--lock-timeout",
            "0.3",
            "--exit-on-complete",
            cwd=tmp_path,
        )
    )
    assert read_lines(out) == ["start", "start", "done"]
    assert tinydj.get_job(job.id) is None


# -- make sure the fixtures above really point the children at our database --


def test_cli_and_library_see_the_same_rows(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config
) -> None:
    assert isinstance(sqlite_db.database, peewee.SqliteDatabase)
    sample_jobs.record.send_later(1)
    sample_jobs.record.send_in("2h", 2)
    stats = parse_stats(ok(run_cli("stats", "--database", sqlite_url, cwd=tmp_path)).stdout)
    assert stats == {"ready": 1, "scheduled": 1, "running": 0, "failed": 0, "recurring": 0}


# -- issue 9, as a user types it (real processes) ----------------------------


def test_password_is_masked_as_typed(tmp_path: Path) -> None:
    """Item 8: the exact command of the report."""
    result = run_cli("stats", "--database", "mysql://root:wrong@host/db", cwd=tmp_path)
    line = one_line_error(result)
    assert line.startswith("tinydj: cannot use database mysql://root:***@host/db: ")
    assert "wrong" not in result.stderr + result.stdout


def test_database_before_the_command(
    tmp_path: Path, sqlite_url: str, sqlite_db: tinydj.Config
) -> None:
    """Item 9: ``tinydj --database URL list`` and ``tinydj list --database URL``."""
    sample_jobs.record.send_later("x")
    before = ok(run_cli("--database", sqlite_url, "list", cwd=tmp_path, script=True))
    after = ok(run_cli("list", "--database", sqlite_url, cwd=tmp_path, script=True))
    assert before.stdout == after.stdout
    assert before.stdout.splitlines()[1].split()[:3] == ["1", "ready", "default"]


def test_work_bogus_shows_the_usage_of_work(tmp_path: Path) -> None:
    result = run_cli("work", "--bogus", cwd=tmp_path)
    assert result.stderr.startswith("usage: tinydj work ")
    assert one_line_error(result, usage=True) == (
        "tinydj work: error: unrecognized arguments: --bogus"
    )


def test_app_raising_at_import_is_one_line(tmp_path: Path, sqlite_url: str) -> None:
    """Item 10: one line; --traceback shows the rest."""
    (tmp_path / "broken_settings.py").write_text("raise RuntimeError('SECRET_KEY is not set')\n")
    args = ("work", "--database", sqlite_url, "--app", "broken_settings", "--exit-on-complete")
    line = one_line_error(run_cli(*args, cwd=tmp_path))
    assert line == (
        "tinydj: cannot import --app module 'broken_settings': "
        "RuntimeError: SECRET_KEY is not set (--traceback shows where)"
    )
    detailed = run_cli(*args, "--traceback", cwd=tmp_path)
    assert detailed.returncode == 2
    assert 'broken_settings.py", line 1, in <module>' in detailed.stderr
    assert detailed.stderr.rstrip().splitlines()[-1] == line


def test_no_database_file_here(tmp_path: Path) -> None:
    """Item 12: list/stats/show in a directory without the database file."""
    env = {k: v for k, v in child_env().items() if k != "TINYDJ_DATABASE_URL"}
    for args in (["list"], ["stats"], ["show", "1"]):
        line = one_line_error(run_cli(*args, cwd=tmp_path, env=env))
        assert line == (
            f"tinydj: no database here: {tmp_path / 'tinydj.sqlite3'} does not exist "
            "(use --database URL or $TINYDJ_DATABASE_URL, or start `tinydj work` first)"
        )
    assert not (tmp_path / "tinydj.sqlite3").exists()
