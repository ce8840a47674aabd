"""The command line in this process (``tinydj.cli.main``), output pinned exactly.

Each test starts with the same five jobs, one per state, on every database
(see ``five_states``); time is a ``FakeClock`` at ``START`` (2030-01-01 12:00
UTC), passed to ``main(clock=...)``. Item numbers refer to issue 9.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sample_jobs
from conftest import START

import tinydj
from tinydj.cli import main
from tinydj.tasks import upsert_recurring
from tinydj.testing import FakeClock

WORKER = "host:web1 pid:42 w1"
#: A last_error longer than the list's column: cut at a word, with "...".
LONG_ERROR = (
    "ValueError: failure number 3: the upstream service answered 503 Service Unavailable "
    'three times\nTraceback (most recent call last):\n  File "jobs.py", line 9, in pay\n'
    "ValueError: failure number 3"
)


@dataclass
class Result:
    status: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def cli(
    config: tinydj.Config, db_url: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    """``tinydj ARGS --database URL`` in this process; tinydj is pointed back
    at the test's configuration afterwards."""

    def run(*args: str, database: bool = True) -> Result:
        capsys.readouterr()
        status = main([*args, *(["--database", db_url] if database else [])], clock=clock)
        out, err = capsys.readouterr()
        tinydj.configure(config.database, clock=clock)
        return Result(status, out, err)

    yield run


def update(cfg: tinydj.Config, job_id: int, **columns: Any) -> None:
    """Change a row behind tinydj's back (any database)."""
    model = tinydj.get_config().store.model
    model.update(**columns).where(model.id == job_id).execute()


@pytest.fixture
def five_states(config: tinydj.Config, clock: FakeClock) -> dict[str, int]:
    """Jobs 1-5: ready, scheduled (in 1 h), failed, running (queue mail), recurring."""
    ids = {
        "ready": sample_jobs.record.send_later("ready").id,
        "scheduled": sample_jobs.record.send_in("1h", "later").id,
        "failed": sample_jobs.always_fails.send_later(3).id,
        "running": sample_jobs.send_mail.send_later("a@example.com").id,
        "recurring": upsert_recurring(config, sample_jobs.hourly, START).id,
    }
    update(
        config,
        ids["failed"],
        attempts=2,
        failed_at=START - timedelta(minutes=5),
        last_error=LONG_ERROR,
    )
    update(config, ids["running"], locked_at=START, locked_by=WORKER)
    assert list(ids.values()) == [1, 2, 3, 4, 5]
    return ids


# -- item 12: list, show, stats -----------------------------------------------

LIST = """\
ID  STATE      QUEUE    PRI  ATTEMPTS  WHEN (UTC)           JOB                       LAST ERROR
 1  ready      default    0         0  2030-01-01 12:00:00  sample_jobs:record
 2  scheduled  default    0         0  2030-01-01 13:00:00  sample_jobs:record
 3  failed     default    0         2  2030-01-01 11:55:00  sample_jobs:always_fails  ValueError: failure number 3: the upstream service...
 4  running    mail       5         0  2030-01-01 12:00:00  sample_jobs:send_mail
 5  recurring  default    0         0  2030-01-01 12:00:00  sample_jobs:hourly
"""  # noqa: E501


def test_list_has_a_header_states_and_when_failed(cli: Run, five_states: dict[str, int]) -> None:
    result = cli("list")
    assert (result.status, result.err) == (0, "")
    assert result.out == LIST


def test_list_says_how_many_more(cli: Run, five_states: dict[str, int]) -> None:
    assert cli("list", "--limit", "2").out == (
        "ID  STATE      QUEUE    PRI  ATTEMPTS  WHEN (UTC)           JOB                 "
        "LAST ERROR\n"
        " 1  ready      default    0         0  2030-01-01 12:00:00  sample_jobs:record\n"
        " 2  scheduled  default    0         0  2030-01-01 13:00:00  sample_jobs:record\n"
        "... and 3 more (--limit N shows more)\n"
    )


def test_list_filters_by_state_and_queue(cli: Run, five_states: dict[str, int]) -> None:
    failed = cli("list", "--failed").out.splitlines()
    assert [line.split()[:3] for line in failed] == [
        ["ID", "STATE", "QUEUE"],
        ["3", "failed", "default"],
    ]
    for state, row in zip(tinydj.admin.STATES, [1, 2, 4, 3, 5], strict=True):
        listed = cli("list", "--state", state).out.splitlines()
        assert [line.split()[:2] for line in listed[1:]] == [[str(row), state]]
    assert [r.split()[0] for r in cli("list", "--queue", "mail").out.splitlines()[1:]] == ["4"]
    assert cli("list", "--queue", "nothing-here").out == "no jobs in queue nothing-here\n"
    assert cli("list", "--state", "failed", "--queue", "mail").out == (
        "no failed jobs in queue mail\n"
    )


def test_list_of_an_empty_table(cli: Run, config: tinydj.Config) -> None:
    tinydj.create_tables()
    assert cli("list").out == "no jobs\n"


def test_show_prints_every_column_the_call_and_the_whole_error(
    cli: Run, five_states: dict[str, int]
) -> None:
    result = cli("show", "3")
    assert (result.status, result.err) == (0, "")
    assert result.out == (
        "id               3\n"
        "state            failed\n"
        "job              sample_jobs:always_fails\n"
        "queue            default\n"
        "priority         0\n"
        "attempts         2\n"
        "interruptions    0\n"
        "run_at           2030-01-01 12:00:00 UTC\n"
        "failed_at        2030-01-01 11:55:00 UTC\n"
        "locked_at        -\n"
        "locked_by        -\n"
        "reoccur_in       -\n"
        "last_run_at      -\n"
        "key              -\n"
        "concurrency_key  -\n"
        "created_at       2030-01-01 12:00:00 UTC\n"
        "updated_at       2030-01-01 12:00:00 UTC\n"
        "handler:\n"
        "    tinydj: 1\n"
        "    function: sample_jobs:always_fails\n"
        "    args: [3]\n"
        "    max_attempts: 2\n"
        "last_error:\n"
        "    ValueError: failure number 3: the upstream service answered 503 Service "
        "Unavailable three times\n"
        "    Traceback (most recent call last):\n"
        '      File "jobs.py", line 9, in pay\n'
        "    ValueError: failure number 3\n"
    )


def test_show_of_a_running_job_names_its_worker(cli: Run, five_states: dict[str, int]) -> None:
    out = cli("show", "4").out.splitlines()
    assert "state            running" in out
    assert f"locked_by        {WORKER}" in out
    assert out[-2:] == ["last_error:", "    -"]


def test_show_of_a_missing_job(cli: Run, five_states: dict[str, int]) -> None:
    result = cli("show", "99")
    assert (result.status, result.out, result.err) == (1, "", "tinydj: no such job: 99\n")


STATS = """\
QUEUE    READY  SCHEDULED  RUNNING  FAILED  RECURRING  LAG
default      1          1        0       1          1  1m30s
mail         0          0        1       0          0  -
total        1          1        1       1          1  1m30s
"""


def test_stats_per_queue_with_the_lag(
    cli: Run, five_states: dict[str, int], clock: FakeClock
) -> None:
    clock.advance(90)  # the ready job has waited 90 s
    result = cli("stats")
    assert (result.status, result.err) == (0, "")
    assert result.out == STATS


def test_json_of_list_show_and_stats(
    cli: Run, five_states: dict[str, int], clock: FakeClock
) -> None:
    clock.advance(90)
    listed = json.loads(cli("list", "--json", "--limit", "4").out)
    assert listed["total"] == 5
    assert [j["state"] for j in listed["jobs"]] == ["ready", "scheduled", "failed", "running"]
    failed = listed["jobs"][2]
    assert failed["failed_at"] == "2030-01-01T11:55:00+00:00"
    assert failed["last_error"] == LONG_ERROR  # whole, for scripts
    assert failed["job"] == "sample_jobs:always_fails"

    shown = json.loads(cli("--json", "show", "4").out)  # --json before the command too
    assert shown["locked_by"] == WORKER and shown["state"] == "running"
    assert shown["handler"].startswith("tinydj: 1\n")

    stats = json.loads(cli("stats", "--json").out)
    assert stats["queues"]["default"] == {
        "ready": 1,
        "scheduled": 1,
        "running": 0,
        "failed": 1,
        "recurring": 1,
        "lag_seconds": 90.0,
    }
    assert stats["queues"]["mail"]["lag_seconds"] is None
    assert stats["total"]["running"] == 1 and stats["total"]["lag_seconds"] == 90.0


def test_json_is_refused_where_it_does_not_apply(
    cli: Run, five_states: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli("--json", "clear")
    assert result.status == 2
    assert result.err.splitlines()[0].startswith("usage: tinydj clear")
    assert result.err.splitlines()[-1] == "tinydj clear: error: --json does not apply to clear"
    assert len(tinydj.list_jobs()) == 5


# -- item 5: retry ---------------------------------------------------------------


def test_retry_of_a_running_job_is_refused(cli: Run, five_states: dict[str, int]) -> None:
    before = tinydj.get_job(4)
    result = cli("retry", "4")
    assert (result.status, result.out) == (1, "")
    assert result.err == (
        f"tinydj: job 4 is running on worker {WORKER}; retry it when it has failed\n"
    )
    assert tinydj.get_job(4) == before  # untouched


def test_retry_of_a_dead_workers_job(
    cli: Run, five_states: dict[str, int], clock: FakeClock
) -> None:
    clock.advance(31)  # the lease is older than the default 30 s lock timeout
    result = cli("retry", "4")
    assert (result.status, result.err) == (0, "")
    assert result.out == (
        f"retried job 4 (sample_jobs:send_mail): its worker {WORKER} is gone; ready now\n"
    )
    job = tinydj.get_job(4)
    assert job is not None and not job.locked and job.run_at == START + timedelta(seconds=31)


def test_retry_lock_timeout_option(cli: Run, five_states: dict[str, int], clock: FakeClock) -> None:
    clock.advance(10)
    assert cli("retry", "4", "--lock-timeout", "60").status == 1
    assert cli("retry", "4", "--lock-timeout", "5").status == 0
    bad = cli("retry", "4", "--lock-timeout", "0")
    assert bad.status == 2
    assert bad.err.splitlines()[-1] == (
        "tinydj retry: error: argument --lock-timeout: "
        "lock_timeout must be a number of seconds > 0 and <= 31536000, not 0.0"
    )


def test_retry_of_a_failed_job_says_what_it_did(
    cli: Run, five_states: dict[str, int], clock: FakeClock
) -> None:
    clock.advance(60)
    result = cli("retry", "3")
    assert (result.status, result.err) == (0, "")
    assert result.out == (
        "retried job 3 (sample_jobs:always_fails): it had failed after 2 attempt(s); ready now\n"
    )
    job = tinydj.get_job(3)
    assert job is not None
    assert (job.failed, job.attempts, job.run_at) == (False, 0, START + timedelta(seconds=60))
    assert job.last_error == LONG_ERROR  # kept until the next run


def test_retry_of_a_scheduled_job_needs_now(cli: Run, five_states: dict[str, int]) -> None:
    refused = cli("retry", "2")
    assert (refused.status, refused.out) == (1, "")
    assert refused.err == (
        "tinydj: job 2 (sample_jobs:record) is scheduled, due 2030-01-01 13:00:00 UTC; "
        "use --now to run it now\n"
    )
    job = tinydj.get_job(2)
    assert job is not None and job.run_at == START + timedelta(hours=1)

    done = cli("retry", "2", "--now")
    assert done.out == (
        "retried job 2 (sample_jobs:record): it was due 2030-01-01 13:00:00 UTC; ready now\n"
    )
    job = tinydj.get_job(2)
    assert job is not None and job.run_at == START


def test_retry_of_ready_and_missing_jobs(cli: Run, five_states: dict[str, int]) -> None:
    result = cli("retry", "1", "99", "3")
    assert result.status == 1  # one of them failed; the others were done
    assert result.out == (
        "job 1 (sample_jobs:record) is ready already: nothing to do\n"
        "retried job 3 (sample_jobs:always_fails): it had failed after 2 attempt(s); ready now\n"
    )
    assert result.err == "tinydj: no such job: 99\n"


def test_python_retry_job_never_makes_a_running_job_run_twice(
    config: tinydj.Config, clock: FakeClock
) -> None:
    job = sample_jobs.record.send_later("once")
    (held,) = config.store.reserve("holder", START, START - timedelta(seconds=30))
    assert held.id == job.id
    with pytest.raises(tinydj.JobRunning, match="job 1 is running on worker holder"):
        tinydj.retry_job(job.id)
    assert tinydj.Worker(config=config, name="other").work_off() == (0, 0)
    assert sample_jobs.calls == []
    clock.advance(31)  # the holder died: its lease expired
    assert tinydj.retry_job(job.id)
    assert tinydj.Worker(config=config, name="other").work_off() == (1, 0)
    assert sample_jobs.calls == [(("once",), {})]
    assert not tinydj.retry_job(job.id)  # done jobs are gone


# -- items 6 and 7: clear and delete ---------------------------------------------------


def test_clear_says_what_it_deleted_by_state(cli: Run, five_states: dict[str, int]) -> None:
    assert cli("clear", "--failed").out == "deleted 1 failed job\n"
    assert cli("clear", "--queue", "mail").out == "deleted 1 job from queue mail: 1 running\n"
    assert cli("clear", "--queue", "mail").out == "deleted 0 jobs from queue mail\n"
    sample_jobs.always_fails.send_later(1)
    assert cli("clear", "--failed", "--queue", "default").out == (
        "deleted 0 failed jobs from queue default\n"
    )
    assert cli("clear").out == "deleted 4 jobs: 2 ready, 1 scheduled, 1 recurring\n"
    assert cli("clear").out == "deleted 0 jobs\n"


def test_delete_by_id(cli: Run, five_states: dict[str, int]) -> None:
    result = cli("delete", "5", "99", "4")
    assert result.status == 1
    assert result.out == (
        "deleted job 5 (sample_jobs:hourly, recurring)\n"
        f"deleted job 4 (sample_jobs:send_mail, running); worker {WORKER} finishes its "
        "current run\n"
    )
    assert result.err == "tinydj: no such job: 99\n"
    assert [j.id for j in tinydj.list_jobs()] == [1, 2, 3]


# -- items 8 and 9: masked passwords, options anywhere ------------------------------------


# PyMySQL warns about the "passwd" keyword that peewee's URL parser passes.
@pytest.mark.filterwarnings("ignore:'passwd' is deprecated:DeprecationWarning")
def test_password_is_masked_in_the_error_line(cli: Run) -> None:
    result = cli("stats", "--database", "mysql://root:wrong@127.0.0.1:1/db", database=False)
    assert result.status == 1 and result.out == ""
    assert result.err.startswith("tinydj: cannot use database mysql://root:***@127.0.0.1:1/db: ")
    assert len(result.err.splitlines()) == 1
    assert "wrong" not in result.err


def test_password_is_masked_in_usage_errors(cli: Run) -> None:
    result = cli("list", "postgresql://app:s3cret@db/app", database=False)
    assert result.status == 2
    assert result.err.splitlines()[-1] == (
        "tinydj list: error: unrecognized arguments: postgresql://app:***@db/app"
    )


def test_password_is_masked_in_worker_logs(cli: Run, config: tinydj.Config) -> None:
    import cli_jobs

    cli_jobs.fail_with.send_later("cannot reach postgresql://app:s3cret@db/app")
    result = cli("work", "--exit-on-complete")
    assert result.status == 0
    assert "postgresql://app:***@db/app" in result.err
    assert "s3cret" not in result.err
    job = tinydj.get_job(1)
    assert job is not None and "s3cret" in (job.last_error or "")  # the row keeps the truth


@pytest.mark.parametrize(
    "args",
    [
        ["--database", "{url}", "list"],
        ["list", "--database", "{url}"],
        ["-v", "list", "--database", "{url}"],
        ["--log-level", "debug", "--database", "{url}", "list", "-v"],
    ],
)
def test_common_options_before_and_after_the_command(
    cli: Run, five_states: dict[str, int], db_url: str, args: list[str]
) -> None:
    result = cli(*(a.format(url=db_url) for a in args), database=False)
    assert (result.status, result.out, result.err) == (0, LIST, "")


def test_unknown_option_shows_the_usage_of_its_command(cli: Run) -> None:
    result = cli("work", "--bogus", database=False)
    assert result.status == 2
    lines = result.err.splitlines()
    assert lines[0].startswith("usage: tinydj work [-h] [--database URL]")
    assert lines[-1] == "tinydj work: error: unrecognized arguments: --bogus"


def test_bad_log_level(cli: Run) -> None:
    result = cli("work", "--log-level", "loud")
    assert result.status == 2
    assert result.err.splitlines()[-1] == (
        "tinydj work: error: argument --log-level: "
        "not one of DEBUG, INFO, WARNING, ERROR, CRITICAL: 'loud'"
    )


def test_log_level_of_work(cli: Run, config: tinydj.Config) -> None:
    sample_jobs.record.send_later(1)
    default = cli("work", "--exit-on-complete")
    assert " INFO tinydj.worker: Job sample_jobs:record (id=1) COMPLETED" in default.err
    sample_jobs.record.send_later(2)
    quiet = cli("--log-level", "WARNING", "work", "--exit-on-complete")
    assert quiet.status == 0 and quiet.err == ""
    assert sample_jobs.calls == [((1,), {}), ((2,), {})]


# -- item 10: --app modules that fail to import ---------------------------------------------


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            "raise RuntimeError('DJANGO_SETTINGS_MODULE is not set')\n",
            "RuntimeError: DJANGO_SETTINGS_MODULE is not set",
        ),
        ("def broken(:\n", "SyntaxError: invalid syntax ({name}.py, line 1)"),
        (
            "import no_such_dependency_here\n",
            "ModuleNotFoundError: No module named 'no_such_dependency_here'",
        ),
        ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    ],
    ids=["RuntimeError", "SyntaxError", "missing-dependency", "SystemExit"],
)
def test_app_that_raises_at_import_is_one_line(
    cli: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    source: str,
    error: str,
) -> None:
    name = f"cli_app_{request.node.callspec.id.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    line = (
        f"tinydj: cannot import --app module {name!r}: {error.format(name=name)} "
        "(--traceback shows where)\n"
    )
    result = cli("work", "--app", name, "--exit-on-complete")
    assert (result.status, result.out, result.err) == (2, "", line)

    for flag in ("--traceback", "-v"):
        sys.modules.pop(name, None)
        detailed = cli("work", "--app", name, "--exit-on-complete", flag)
        assert detailed.status == 2
        assert detailed.err.startswith("Traceback (most recent call last):\n")
        assert f"{name}.py" in detailed.err
        assert detailed.err.endswith(line)


def test_missing_app_module_is_one_line(cli: Run) -> None:
    result = cli("work", "--app", "no_such_app_module", "--exit-on-complete")
    assert result.err == (
        "tinydj: cannot import --app module 'no_such_app_module': "
        "No module named 'no_such_app_module'\n"
    )


# -- item 12: no database file, no new database -----------------------------------------------


@pytest.mark.parametrize(
    "args", [["list"], ["stats"], ["show", "1"], ["retry", "1"], ["delete", "1"], ["clear"]]
)
def test_missing_sqlite_file_is_not_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TINYDJ_DATABASE_URL", raising=False)
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"tinydj: no database here: {tmp_path / 'tinydj.sqlite3'} does not exist "
        "(use --database URL or $TINYDJ_DATABASE_URL, or start `tinydj work` first)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_work_creates_the_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TINYDJ_DATABASE_URL", raising=False)
    assert main(["work", "--exit-on-complete", "-q"]) == 0
    assert (tmp_path / "tinydj.sqlite3").exists()
    assert main(["list"]) == 0
    assert capsys.readouterr().out == "no jobs\n"
    tinydj.get_config().database.close()
