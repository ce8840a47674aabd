"""``tinydj work``: run a worker in the foreground."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from .. import admin
from ..config import Config
from ..worker import Worker
from .base import EXIT_OK, EXIT_USAGE, SECONDS, Fail, one_line, queue_type, threads_type

# -- work --------------------------------------------------------------------------


def declare_work(p: argparse.ArgumentParser) -> None:
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
        type=queue_type,
        default=[],
        help="only take jobs from this queue; repeatable (default: all)",
    )
    p.add_argument(
        "--threads", type=threads_type, default=1, metavar="N", help="jobs run at once (default 1)"
    )
    p.add_argument("--exit-on-complete", action="store_true", help="exit once no job is due")
    p.add_argument(
        "--lock-timeout",
        type=SECONDS["lock_timeout"],
        default=admin.DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="a dead worker's jobs are retried after this long (default 30)",
    )
    p.add_argument(
        "--poll-interval",
        type=SECONDS["poll_interval"],
        default=1.0,
        metavar="SECONDS",
        help="longest wait between looks at the table when idle (default 1)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=SECONDS["shutdown_timeout"],
        default=None,
        metavar="SECONDS",
        help="on Ctrl-C/SIGTERM, give running jobs this long, then release "
        "them to run again elsewhere (default: wait for them)",
    )
    p.add_argument(
        "--job-timeout",
        type=SECONDS["job_timeout"],
        default=None,
        metavar="SECONDS",
        help="default time limit of a job run (a job's own timeout wins)",
    )
    p.add_argument("--name", help="worker name stored in locked_by")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def import_apps(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # whatever the module raises
            if isinstance(exc, ImportError) and exc.name == name:
                error = one_line(exc)  # the module itself is missing
            else:
                error = f"{type(exc).__name__}: {one_line(exc)} (--traceback shows where)"
            raise Fail(f"cannot import --app module {name!r}: {error}", EXIT_USAGE) from exc


def work(args: argparse.Namespace, config: Config) -> int:
    import_apps(args.app)
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
