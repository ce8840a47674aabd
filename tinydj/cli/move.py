"""``tinydj move --to URL``: move every job into another database."""

from __future__ import annotations

import argparse

from .. import admin, options
from ..config import Config, open_database
from ..move import DEFAULT_BATCH, format_report, move_jobs
from ..redact import mask
from ..store import Store
from .base import EXIT_OK, SECONDS, checked

batch_type = checked(lambda v: options.whole("batch", v), int)


def declare_move(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--to", required=True, metavar="URL", help="the database the jobs go to (postgresql://...)"
    )
    p.add_argument(
        "--batch",
        type=batch_type,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"jobs per transaction (default {DEFAULT_BATCH})",
    )
    p.add_argument(
        "--until-empty",
        action="store_true",
        help="repeat until the source is empty (waits for running jobs; "
        "moves jobs enqueued meanwhile)",
    )
    p.add_argument(
        "--lock-timeout",
        type=SECONDS["lock_timeout"],
        default=admin.DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="a job whose worker's lease is older than this is moved "
        f"(default {admin.DEFAULT_LOCK_TIMEOUT:g}, as for workers)",
    )
    p.add_argument(
        "--poll-interval",
        type=SECONDS["poll_interval"],
        default=1.0,
        metavar="SECONDS",
        help="with --until-empty: how often to look again while jobs run (default 1)",
    )


def move(args: argparse.Namespace, config: Config) -> int:
    source_url = config.url or "the configured database"
    print(mask(f"moving jobs from {source_url} to {args.to}"), flush=True)
    target_db = open_database(args.to)
    target = Store(target_db)
    try:
        report = move_jobs(
            config.store,
            target,
            batch=args.batch,
            lock_timeout=args.lock_timeout,
            until_empty=args.until_empty,
            poll_interval=args.poll_interval,
            clock=config.clock,
            source_name=config.url,
        )
    finally:
        target.close()
    for line in format_report(report):
        print(mask(line))
    return EXIT_OK
