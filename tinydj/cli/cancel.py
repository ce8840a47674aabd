"""``tinydj cancel ID...``: delete waiting jobs, ask workers to stop running ones."""

from __future__ import annotations

import argparse
import sys

from ..admin import DEFAULT_LOCK_TIMEOUT
from ..cancel import cancel as cancel_job
from ..config import Config
from .base import EXIT_ERROR, EXIT_OK, SECONDS

__all__ = ["cancel", "declare"]

_SAID = {
    "deleted": "job {} cancelled: deleted (no worker had started it)",
    "requested": (
        "job {} is running: cancel requested; its worker stops it within a lease renewal "
        "and marks it failed (Cancelled)"
    ),
    "failed": "job {} had already failed; nothing to cancel (tinydj delete {} removes it)",
    "unknown": "no such job: {}",
}


def declare(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.add_argument(
        "--lock-timeout",
        type=SECONDS["lock_timeout"],
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="a lock older than this belongs to a dead worker: its job is deleted (default 30)",
    )


def cancel(args: argparse.Namespace, config: Config) -> int:
    status = EXIT_OK
    for job_id in args.ids:
        result = cancel_job(job_id, lock_timeout=args.lock_timeout)
        if result == "unknown":  # as ``delete`` says it, on stderr
            print(f"tinydj: {_SAID[result].format(job_id)}", file=sys.stderr)
            status = EXIT_ERROR
        else:
            print(_SAID[result].format(job_id, job_id))
    return status
