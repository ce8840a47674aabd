"""``tinydj`` / ``python -m tinydj``: run workers and manage the queue.

``main(argv) -> int`` returns the exit status, so tests call it directly.
Expected failures print one line on stderr (passwords masked) and return
non-zero; ``-v``/``--traceback`` add the traceback. This is the only place
that configures logging.

Each subcommand is one entry of ``COMMANDS``: a function that declares its
options and a function that runs it. Options common to every subcommand
(``--database``, ``-v``, ``--log-level``, ``--traceback``, and ``--json``
where it applies) are accepted before and after the subcommand's name.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import peewee

from . import __version__, admin, options
from .cli_output import job_json, list_lines, show_lines, stats_json, stats_lines
from .config import Config, configure
from .errors import JobRunning, TinyDJError
from .job import Job
from .redact import mask
from .schedule import Clock, to_naive_utc, utcnow
from .worker import Worker

__all__ = ["COMMANDS", "Command", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

#: Log levels accepted by ``--log-level`` (for the ``tinydj.*`` loggers).
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Fail(Exception):
    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse with masked error lines (a mistyped URL may hold a password)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {mask(message)}\n")


# -- option values ------------------------------------------------------------


def _checked(check: Callable[[object], Any], convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, then the ``tinydj.options`` check."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            kind = "whole number" if convert is int else "number"
            raise argparse.ArgumentTypeError(f"not a {kind}: {text!r}") from None
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _duration(name: str) -> Callable[[str], Any]:
    def check(value: object) -> float:
        return options.seconds(name, value)

    return _checked(check, float)


_seconds = {
    name: _duration(name)
    for name in ("lock_timeout", "poll_interval", "shutdown_timeout", "job_timeout")
}
_threads = _checked(options.threads, int)
_limit = _checked(lambda v: options.whole("limit", v), int)
_queue = _checked(options.queue, str)


def _level(text: str) -> str:
    if text.upper() not in LEVELS:
        raise argparse.ArgumentTypeError(f"not one of {', '.join(LEVELS)}: {text!r}")
    return text.upper()


# -- the parser ----------------------------------------------------------------

#: Values of the common options when given neither before nor after the command.
_COMMON_DEFAULTS = {
    "database": None,
    "verbose": False,
    "log_level": None,
    "traceback": False,
    "json": False,
}


def _common(json_output: bool) -> _Parser:
    """The common options. Defaults are SUPPRESS, so that a value given
    before the subcommand is not overwritten by the subcommand's default."""
    common = _Parser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--database",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="database URL (default: $TINYDJ_DATABASE_URL, else sqlite:///tinydj.sqlite3)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log DEBUG messages; show tracebacks of errors",
    )
    group.add_argument(
        "--log-level",
        type=_level,
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help=f"level of the tinydj.* loggers: {', '.join(LEVELS)}",
    )
    group.add_argument(
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error after its one-line message",
    )
    if json_output:
        group.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
        )
    return common


@dataclass(frozen=True)
class Command:
    """A subcommand: its options, what it does, and what it needs."""

    help: str
    declare: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Config], int]
    #: Accepts ``--json``.
    json: bool = False
    #: Refuses to create a missing SQLite file (only ``work`` creates one).
    existing_database: bool = True


def _parser() -> tuple[_Parser, dict[str, _Parser]]:
    parser = _Parser(
        prog="tinydj",
        description="Run tinydj workers and manage the delayed_jobs table.",
        parents=[_common(json_output=True)],
    )
    parser.add_argument("--version", action="version", version=f"tinydj {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers = {}
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.help, parents=[_common(command.json)], description=command.help
        )
        command.declare(sub)
        subparsers[name] = sub
    return parser, subparsers


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser, subparsers = _parser()
    args, extra = parser.parse_known_args(argv)
    for key, value in _COMMON_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    sub = subparsers[args.command]
    if extra:  # reported with the usage of the subcommand, not the top level
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.json and not COMMANDS[args.command].json:
        sub.error(f"--json does not apply to {args.command}")
    return args


# -- shared steps ----------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_database_exists(config: Config) -> None:
    """Refuse a missing SQLite file instead of creating an empty database."""
    db = config.database
    if isinstance(db, peewee.SqliteDatabase) and db.database != ":memory:":
        if not os.path.exists(db.database):
            raise _Fail(
                f"no database here: {db.database} does not exist "
                "(use --database URL or $TINYDJ_DATABASE_URL, or start `tinydj work` first)"
            )


def _open(args: argparse.Namespace, clock: Clock) -> Config:
    config = configure(args.database, clock=clock)
    if COMMANDS[args.command].existing_database:
        _check_database_exists(config)
    try:
        config.store.ensure_schema()
    except peewee.DatabaseError as exc:
        where = config.url or "the configured database"
        raise _Fail(f"cannot use database {where}: {_one_line(exc)}") from None
    return config


def _now(config: Config) -> Any:
    return to_naive_utc(config.clock())


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _get(job_id: int) -> Job:
    job = admin.get_job(job_id)
    if job is None:
        raise _Fail(f"no such job: {job_id}")
    return job


# -- work --------------------------------------------------------------------------


def _declare_work(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--app",
        metavar="MODULE",
        action="append",
        default=[],
        help="import MODULE first (modules that define @every jobs); repeatable",
    )
    p.add_argument(
        "--queue",
        metavar="NAME",
        action="append",
        type=_queue,
        default=[],
        help="only take jobs from this queue; repeatable (default: all)",
    )
    p.add_argument(
        "--threads", type=_threads, default=1, metavar="N", help="jobs run at once (default 1)"
    )
    p.add_argument("--exit-on-complete", action="store_true", help="exit once no job is due")
    p.add_argument(
        "--lock-timeout",
        type=_seconds["lock_timeout"],
        default=admin.DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="a dead worker's jobs are retried after this long (default 30)",
    )
    p.add_argument(
        "--poll-interval",
        type=_seconds["poll_interval"],
        default=1.0,
        metavar="SECONDS",
        help="longest wait between looks at the table when idle (default 1)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_seconds["shutdown_timeout"],
        default=None,
        metavar="SECONDS",
        help="on Ctrl-C/SIGTERM, give running jobs this long, then release "
        "them to run again elsewhere (default: wait for them)",
    )
    p.add_argument(
        "--job-timeout",
        type=_seconds["job_timeout"],
        default=None,
        metavar="SECONDS",
        help="default time limit of a job run (a job's own timeout wins)",
    )
    p.add_argument("--name", help="worker name stored in locked_by")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def _import_apps(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # whatever the module raises
            if isinstance(exc, ImportError) and exc.name == name:
                error = _one_line(exc)  # the module itself is missing
            else:
                error = f"{type(exc).__name__}: {_one_line(exc)} (--traceback shows where)"
            raise _Fail(f"cannot import --app module {name!r}: {error}", EXIT_USAGE) from exc


def _work(args: argparse.Namespace, config: Config) -> int:
    _import_apps(args.app)
    worker = Worker(
        queues=args.queue or None,
        threads=args.threads,
        lock_timeout=args.lock_timeout,
        poll_interval=args.poll_interval,
        name=args.name,
        config=config,
        job_timeout=args.job_timeout,
    )
    worker.run(exit_on_complete=args.exit_on_complete, shutdown_timeout=args.shutdown_timeout)
    return EXIT_OK


# -- list, show, stats ---------------------------------------------------------------


def _declare_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", choices=admin.STATES, help="only jobs in this state")
    p.add_argument("--failed", action="store_true", help="only failed jobs (--state failed)")
    p.add_argument("--queue", metavar="NAME", type=_queue, help="only jobs of this queue")
    p.add_argument(
        "--limit", type=_limit, default=50, metavar="N", help="show at most N jobs (default 50)"
    )


def _list(args: argparse.Namespace, config: Config) -> int:
    state = "failed" if args.failed else args.state
    jobs, total = admin.find_jobs(state=state, queue=args.queue, limit=args.limit)
    now = _now(config)
    if args.json:
        _print_json({"jobs": [job_json(j, now) for j in jobs], "total": total})
        return EXIT_OK
    what = " ".join(filter(None, [state, "jobs"]))
    if args.queue:
        what += f" in queue {args.queue}"
    print("\n".join(list_lines(jobs, total, now, what)))
    return EXIT_OK


def _declare_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int, metavar="ID")


def _show(args: argparse.Namespace, config: Config) -> int:
    job = _get(args.id)
    now = _now(config)
    if args.json:
        _print_json(job_json(job, now))
    else:
        print("\n".join(show_lines(job, now)))
    return EXIT_OK


def _stats(args: argparse.Namespace, config: Config) -> int:
    stats = admin.queue_stats()
    if args.json:
        _print_json(stats_json(stats))
    else:
        print("\n".join(stats_lines(stats)))
    return EXIT_OK


# -- retry, delete, clear --------------------------------------------------------------


def _declare_retry(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.add_argument("--now", action="store_true", help="also run scheduled jobs now")
    p.add_argument(
        "--lock-timeout",
        type=_seconds["lock_timeout"],
        default=admin.DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="a lock younger than this is a live worker's: its job is not retried (default 30)",
    )


def _retry_one(job_id: int, args: argparse.Namespace, config: Config) -> str:
    """Retry one job; return what was done, raise _Fail if it was refused."""
    job = _get(job_id)
    now = _now(config)
    state = admin.state_of(job, now)
    label = f"job {job.id} ({job.name})"
    if state == "ready":
        return f"{label} is ready already: nothing to do"
    if state in ("scheduled", "recurring") and not args.now:
        raise _Fail(
            f"{label} is {state}, due {job.run_at:%Y-%m-%d %H:%M:%S} UTC; use --now to run it now"
        )
    try:
        if not admin.retry_job(job_id, lock_timeout=args.lock_timeout):
            raise _Fail(f"no such job: {job_id}")
    except JobRunning as exc:
        raise _Fail(str(exc)) from None
    if state == "failed":
        return f"retried {label}: it had failed after {job.attempts} attempt(s); ready now"
    if state == "running":  # its worker stopped renewing the lease
        return f"retried {label}: its worker {job.locked_by} is gone; ready now"
    return f"retried {label}: it was due {job.run_at:%Y-%m-%d %H:%M:%S} UTC; ready now"


def _each(ids: Sequence[int], step: Callable[[int], str]) -> int:
    """Run ``step`` for each id; print what it did or why not; 1 if any failed."""
    status = EXIT_OK
    for job_id in ids:
        try:
            print(step(job_id))
        except _Fail as exc:
            print(f"tinydj: {mask(str(exc))}", file=sys.stderr)
            status = exc.status
    return status


def _retry(args: argparse.Namespace, config: Config) -> int:
    return _each(args.ids, lambda job_id: _retry_one(job_id, args, config))


def _declare_delete(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", type=int, nargs="+", metavar="ID")


def _delete_one(job_id: int, config: Config) -> str:
    job = _get(job_id)
    state = admin.state_of(job, _now(config))
    if not admin.delete_job(job_id):
        raise _Fail(f"no such job: {job_id}")
    note = f"; worker {job.locked_by} finishes its current run" if state == "running" else ""
    return f"deleted job {job.id} ({job.name}, {state}){note}"


def _delete(args: argparse.Namespace, config: Config) -> int:
    return _each(args.ids, lambda job_id: _delete_one(job_id, config))


def _declare_clear(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", metavar="NAME", type=_queue, help="only jobs of this queue")
    p.add_argument("--failed", action="store_true", help="only failed jobs")


def _clear(args: argparse.Namespace, config: Config) -> int:
    deleted = admin.clear_jobs(queue=args.queue, states=["failed"] if args.failed else None)
    total = sum(deleted.values())
    where = f" from queue {args.queue}" if args.queue else ""
    what = "failed job" if args.failed else "job"
    line = f"deleted {total} {what}{'' if total == 1 else 's'}{where}"
    parts = [f"{n} {state}" for state, n in deleted.items() if n]
    if parts and not args.failed:
        line += ": " + ", ".join(parts)
    print(line)
    return EXIT_OK


#: Every subcommand, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {
    "work": Command(
        "run a worker in the foreground", _declare_work, _work, existing_database=False
    ),
    "list": Command("list jobs, oldest first", _declare_list, _list, json=True),
    "show": Command(
        "show one job: every column, its call, its whole error", _declare_show, _show, json=True
    ),
    "stats": Command(
        "count the jobs of each queue by state; the lag of each queue",
        lambda p: None,
        _stats,
        json=True,
    ),
    "retry": Command("run failed jobs again now", _declare_retry, _retry),
    "delete": Command("delete jobs by id", _declare_delete, _delete),
    "clear": Command(
        "delete all jobs (or those of a queue, or failed ones)", _declare_clear, _clear
    ),
}


# -- logging and main ----------------------------------------------------------------


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Log the ``tinydj.*`` loggers to stderr while the command runs."""
    default = "INFO" if args.command == "work" else "WARNING"
    if getattr(args, "quiet", False):
        default = "WARNING"
    level = args.log_level or ("DEBUG" if args.verbose else default)
    logger = logging.getLogger("tinydj")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # printed once, here, even if the app logs too
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _report(exc: BaseException, message: str, args: argparse.Namespace | None) -> None:
    if args is not None and (args.verbose or args.traceback):
        text = "".join(traceback.format_exception(exc.__cause__ or exc))
        print(mask(text.rstrip()), file=sys.stderr)
    print(f"tinydj: {mask(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    """Run the command line; return the exit status. ``clock``: for tests."""
    # Jobs are imported by path: make the current directory importable, as
    # ``python -m tinydj`` does, also for the ``tinydj`` console script.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    args: argparse.Namespace | None = None
    try:
        args = _parse(argv)
        with _logging(args):
            config = _open(args, clock or utcnow)
            try:
                return COMMANDS[args.command].run(args, config)
            finally:
                config.store.close()
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except _Fail as exc:
        _report(exc, str(exc), args)
        return exc.status
    except (TinyDJError, peewee.DatabaseError, ValueError, OSError) as exc:
        _report(exc, _one_line(exc), args)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tinydj: interrupted", file=sys.stderr)
        return 130
