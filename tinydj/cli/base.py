"""Pieces every subcommand uses: exit codes, option types, ``Command``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from .. import admin, options
from ..config import Config
from ..job import Job
from ..redact import mask
from ..schedule import to_naive_utc

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

#: Log levels accepted by ``--log-level`` (for the ``tinydj.*`` loggers).
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Fail(Exception):
    """An expected failure: ``main`` prints its message as one line."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse with masked error lines (a mistyped URL may hold a password)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {mask(message)}\n")


# -- option values ------------------------------------------------------------


def checked(check: Callable[[object], Any], convert: Callable[[str], Any]) -> Callable[[str], Any]:
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


def duration_type(name: str) -> Callable[[str], Any]:
    """An argparse type for a duration option (``options.seconds``)."""

    def check(value: object) -> float:
        return options.seconds(name, value)

    return checked(check, float)


SECONDS = {
    name: duration_type(name)
    for name in ("lock_timeout", "poll_interval", "shutdown_timeout", "job_timeout")
}
threads_type = checked(options.threads, int)
limit_type = checked(lambda v: options.whole("limit", v), int)
queue_type = checked(options.queue, str)


def level_type(text: str) -> str:
    """An argparse type for ``--log-level``: a level name, any case."""
    if text.upper() not in LEVELS:
        raise argparse.ArgumentTypeError(f"not one of {', '.join(LEVELS)}: {text!r}")
    return text.upper()


# -- options every subcommand has ---------------------------------------------

#: Values of the common options when given neither before nor after the command.
COMMON_DEFAULTS = {
    "database": None,
    "verbose": False,
    "log_level": None,
    "traceback": False,
    "json": False,
}


def common_options(json_output: bool) -> Parser:
    """The common options. Defaults are SUPPRESS, so that a value given
    before the subcommand is not overwritten by the subcommand's default."""
    common = Parser(add_help=False)
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
        type=level_type,
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


# -- shared steps ---------------------------------------------------------------


def no_options(parser: argparse.ArgumentParser) -> None:
    """``Command.declare`` of a subcommand with only the common options."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its class name if it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def now_of(config: Config) -> datetime:
    """Now, as naive UTC (the table's time), from the configuration's clock."""
    return to_naive_utc(config.clock())


def print_json(data: object) -> None:
    """``--json`` output: indented, non-ASCII kept."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def get_job_or_fail(job_id: int) -> Job:
    """The job with this id; ``Fail`` ("no such job") if it is gone."""
    job = admin.get_job(job_id)
    if job is None:
        raise Fail(f"no such job: {job_id}")
    return job
