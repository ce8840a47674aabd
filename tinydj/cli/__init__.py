"""``tinydj`` / ``python -m tinydj``: run workers and manage the queue.

``main(argv) -> int`` returns the exit status, so tests call it directly.
Expected failures print one line on stderr (passwords masked) and return
non-zero; ``-v``/``--traceback`` add the traceback. This is the only place
that configures logging.

Each subcommand is one entry of ``COMMANDS``: a function that declares its
options and a function that runs it (``work.py`` for the worker, ``jobs.py``
for the operator's commands, ``output.py`` for what they print). Options
common to every subcommand (``--database``, ``-v``, ``--log-level``,
``--traceback``, and ``--json`` where it applies) are accepted before and
after the subcommand's name.

Logging: the ``tinydj`` logger and its children (``tinydj.worker``,
``tinydj.store``, ``tinydj.signals``) go to stderr, INFO for ``work`` and
WARNING for the others unless ``-v`` (DEBUG) or ``--log-level`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

import peewee

from .. import __version__
from ..config import Config, configure
from ..errors import TinyDJError
from ..redact import mask
from ..schedule import Clock, utcnow
from . import cancel, jobs, move, operate, work
from .base import (
    COMMON_DEFAULTS,
    EXIT_ERROR,
    EXIT_USAGE,
    Command,
    Fail,
    Parser,
    common_options,
    no_options,
    one_line,
)

__all__ = ["COMMANDS", "Command", "main"]

#: Every subcommand, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {
    "work": Command(
        "run a worker in the foreground", work.declare_work, work.work, existing_database=False
    ),
    "list": Command("list jobs, oldest first", jobs.declare_list, jobs.list_, json=True),
    "show": Command(
        "show one job: every column, its call, its whole error",
        jobs.declare_show,
        jobs.show,
        json=True,
    ),
    "stats": Command(
        "count the jobs of each queue by state; the lag of each queue",
        no_options,
        jobs.stats,
        json=True,
    ),
    "retry": Command("run failed jobs again now", jobs.declare_retry, jobs.retry),
    "delete": Command("delete jobs by id", jobs.declare_delete, jobs.delete),
    "clear": Command(
        "delete all jobs (or those of a queue, or failed ones)", jobs.declare_clear, jobs.clear
    ),
    "workers": Command(
        "list the workers, live and dead", operate.declare_workers, operate.workers, json=True
    ),
    "pause": Command("stop workers taking jobs of a queue", operate.declare_queue, operate.pause),
    "resume": Command(
        "let workers take jobs of a paused queue", operate.declare_queue, operate.resume
    ),
    "cancel": Command(
        "cancel jobs: delete waiting ones, ask workers to stop running ones",
        cancel.declare,
        cancel.cancel,
    ),
    "dashboard": Command("serve the web dashboard", operate.declare_dashboard, operate.dashboard),
    "move": Command(
        "move every job into another database (--to URL), safe to interrupt",
        move.declare_move,
        move.move,
    ),
}


def _parser() -> tuple[Parser, dict[str, Parser]]:
    parser = Parser(
        prog="tinydj",
        description="Run tinydj workers and manage the delayed_jobs table.",
        parents=[common_options(json_output=True)],
    )
    parser.add_argument("--version", action="version", version=f"tinydj {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers = {}
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.help,
            parents=[common_options(command.json)],
            description=command.help,
        )
        command.declare(sub)
        subparsers[name] = sub
    return parser, subparsers


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser, subparsers = _parser()
    args, extra = parser.parse_known_args(argv)
    for key, value in COMMON_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    sub = subparsers[args.command]
    if extra:  # reported with the usage of the subcommand, not the top level
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.json and not COMMANDS[args.command].json:
        sub.error(f"--json does not apply to {args.command}")
    return args


def _check_database_exists(config: Config) -> None:
    """Refuse a missing SQLite file instead of creating an empty database."""
    db = config.database
    if isinstance(db, peewee.SqliteDatabase) and db.database != ":memory:":
        if not os.path.exists(db.database):
            raise Fail(
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
        raise Fail(f"cannot use database {where}: {one_line(exc)}") from None
    return config


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
    except Fail as exc:
        _report(exc, str(exc), args)
        return exc.status
    except (TinyDJError, peewee.DatabaseError, ValueError, OSError) as exc:
        _report(exc, one_line(exc), args)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tinydj: interrupted", file=sys.stderr)
        return 130
