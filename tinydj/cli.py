"""``tinydj`` / ``python -m tinydj``: run workers and manage the queue.

``main(argv) -> int`` returns the exit status, so tests call it directly.
Expected failures print one line on stderr and return non-zero; this is the
only place that configures logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import peewee

from . import __version__
from .admin import clear, list_jobs, retry_job, stats
from .config import configure
from .errors import TinyDJError
from .worker import MAX_SECONDS, Worker

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class _Fail(Exception):
    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    if not value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SECONDS:.0f} seconds: {text!r}")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinydj", description="Run tinydj workers and manage the delayed_jobs table."
    )
    parser.add_argument("--version", action="version", version=f"tinydj {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_database(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--database",
            metavar="URL",
            help="database URL (default: $TINYDJ_DATABASE_URL, else sqlite:///tinydj.sqlite3)",
        )
        return p

    work = with_database(commands.add_parser("work", help="run a worker in the foreground"))
    work.add_argument(
        "--app",
        metavar="MODULE",
        action="append",
        default=[],
        help="import MODULE first (modules that define @every jobs); repeatable",
    )
    work.add_argument(
        "--queue",
        metavar="NAME",
        action="append",
        default=[],
        help="only take jobs from this queue; repeatable (default: all)",
    )
    work.add_argument(
        "--threads", type=_threads, default=1, metavar="N", help="jobs run at once (default 1)"
    )
    work.add_argument("--exit-on-complete", action="store_true", help="exit once no job is due")
    work.add_argument(
        "--lock-timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="a dead worker's jobs are retried after this long (default 30)",
    )
    work.add_argument(
        "--poll-interval",
        type=_positive,
        default=1.0,
        metavar="SECONDS",
        help="longest wait between looks at the table when idle (default 1)",
    )
    work.add_argument(
        "--shutdown-timeout",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="on Ctrl-C/SIGTERM, give running jobs this long, then release "
        "them to run again elsewhere (default: wait for them)",
    )
    work.add_argument(
        "--job-timeout",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="default time limit of a job run (a job's own timeout wins)",
    )
    work.add_argument("--name", help="worker name stored in locked_by")
    work.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")

    with_database(commands.add_parser("clear", help="delete all jobs"))
    with_database(commands.add_parser("stats", help="count ready, scheduled, locked, failed jobs"))
    lister = with_database(commands.add_parser("list", help="list jobs"))
    lister.add_argument("--failed", action="store_true", help="only failed jobs")
    lister.add_argument("--limit", type=int, default=50)
    retry = with_database(commands.add_parser("retry", help="run failed jobs again now"))
    retry.add_argument("ids", type=int, nargs="+", metavar="ID")
    return parser


def _import_apps(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except (ImportError, TypeError, ValueError) as exc:
            raise _Fail(f"cannot import --app module {name!r}: {exc}", EXIT_USAGE) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _run(args: argparse.Namespace) -> int:
    config = configure(args.database) if args.database else configure()
    where = config.url or "the configured database"
    try:
        config.store.ensure_schema()
    except peewee.DatabaseError as exc:
        raise _Fail(f"cannot use database {where}: {_one_line(exc)}") from None

    if args.command == "clear":
        print(f"deleted {clear()} job(s)")
    elif args.command == "stats":
        for name, count in stats().items():
            print(f"{name:<10} {count}")
    elif args.command == "list":
        for job in list_jobs(failed=True if args.failed else None, limit=args.limit):
            state = "failed" if job.failed else "locked" if job.locked else "waiting"
            error = (job.last_error or "").split("\n", 1)[0][:80]
            print(
                f"{job.id:>8} {state:<8} {job.queue:<10} p{job.priority:<4} "
                f"attempts={job.attempts:<3} run_at={job.run_at:%Y-%m-%d %H:%M:%S} "
                f"{job.name} {error}"
            )
    elif args.command == "retry":
        missing = [i for i in args.ids if not retry_job(i)]
        if missing:
            raise _Fail(f"no such job: {', '.join(map(str, missing))}")
    else:
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO,
            format="%(asctime)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    # Jobs are imported by path: make the current directory importable, as
    # ``python -m tinydj`` does, also for the ``tinydj`` console script.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _run(args)
    except _Fail as exc:
        print(f"tinydj: {exc}", file=sys.stderr)
        return exc.status
    except (TinyDJError, peewee.DatabaseError, ValueError, OSError) as exc:
        print(f"tinydj: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tinydj: interrupted", file=sys.stderr)
        return 130
