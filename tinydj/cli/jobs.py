"""The operator's subcommands: list, show, stats, retry, delete, clear."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import peewee

from .. import admin, results
from ..config import Config
from ..errors import JobRunning
from ..redact import mask
from .base import (
    EXIT_OK,
    SECONDS,
    Fail,
    get_job_or_fail,
    limit_type,
    now_of,
    print_json,
    queue_type,
)
from .output import (
    job_json,
    list_lines,
    result_json,
    result_lines,
    show_lines,
    stats_json,
    stats_lines,
)

# -- list, show, stats ---------------------------------------------------------------


def declare_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", choices=admin.STATES, help="only jobs in this state")
    p.add_argument("--failed", action="store_true", help="only failed jobs (--state failed)")
    p.add_argument("--queue", metavar="NAME", type=queue_type, help="only jobs of this queue")
    p.add_argument(
        "--limit", type=limit_type, default=50, metavar="N", help="show at most N jobs (default 50)"
    )


def list_(args: argparse.Namespace, config: Config) -> int:
    state = "failed" if args.failed else args.state
    jobs, total = admin.find_jobs(state=state, queue=args.queue, limit=args.limit)
    now = now_of(config)
    if args.json:
        print_json({"jobs": [job_json(j, now) for j in jobs], "total": total})
        return EXIT_OK
    what = " ".join(filter(None, [state, "jobs"]))
    if args.queue:
        what += f" in queue {args.queue}"
    print("\n".join(list_lines(jobs, total, now, what)))
    return EXIT_OK


def declare_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int, metavar="ID")


def show(args: argparse.Namespace, config: Config) -> int:
    kept = _kept_result(args.id, config)
    job = admin.get_job(args.id)
    if job is None and kept is None:
        raise Fail(f"no such job: {args.id}")
    now = now_of(config)
    if args.json:
        data = job_json(job, now) if job is not None else {"id": args.id, "state": "done"}
        if kept is not None:
            data["result"] = result_json(kept)
        print_json(data)
        return EXIT_OK
    lines = show_lines(job, now) if job is not None else [f"job {args.id} is done (row deleted)"]
    if kept is not None:
        lines += result_lines(kept)
    print("\n".join(lines))
    return EXIT_OK


def _kept_result(job_id: int, config: Config) -> results.Result | None:
    """The job's kept result (``tinydj.results``), if its task keeps them."""
    try:
        return results.get(job_id, config=config)
    except peewee.DatabaseError:  # no results table yet, or it cannot be read
        return None


def stats(args: argparse.Namespace, config: Config) -> int:
    stats = admin.queue_stats()
    if args.json:
        print_json(stats_json(stats))
    else:
        print("\n".join(stats_lines(stats)))
    return EXIT_OK


# -- retry, delete, clear --------------------------------------------------------------


def declare_retry(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.add_argument("--now", action="store_true", help="also run scheduled jobs now")
    p.add_argument(
        "--lock-timeout",
        type=SECONDS["lock_timeout"],
        default=admin.DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="a lock younger than this is a live worker's: its job is not retried (default 30)",
    )


def _retry_one(job_id: int, args: argparse.Namespace, config: Config) -> str:
    """Retry one job; return what was done, raise Fail if it was refused."""
    job = get_job_or_fail(job_id)
    now = now_of(config)
    state = admin.state_of(job, now)
    label = f"job {job.id} ({job.name})"
    if state == "ready":
        return f"{label} is ready already: nothing to do"
    if state in ("scheduled", "recurring") and not args.now:
        raise Fail(
            f"{label} is {state}, due {job.run_at:%Y-%m-%d %H:%M:%S} UTC; use --now to run it now"
        )
    try:
        if not admin.retry_job(job_id, lock_timeout=args.lock_timeout):
            raise Fail(f"no such job: {job_id}")
    except JobRunning as exc:
        raise Fail(str(exc)) from None
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
        except Fail as exc:
            print(f"tinydj: {mask(str(exc))}", file=sys.stderr)
            status = exc.status
    return status


def retry(args: argparse.Namespace, config: Config) -> int:
    return _each(args.ids, lambda job_id: _retry_one(job_id, args, config))


def declare_delete(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", type=int, nargs="+", metavar="ID")


def _delete_one(job_id: int, config: Config) -> str:
    job = get_job_or_fail(job_id)
    state = admin.state_of(job, now_of(config))
    if not admin.delete_job(job_id):
        raise Fail(f"no such job: {job_id}")
    note = f"; worker {job.locked_by} finishes its current run" if state == "running" else ""
    return f"deleted job {job.id} ({job.name}, {state}){note}"


def delete(args: argparse.Namespace, config: Config) -> int:
    return _each(args.ids, lambda job_id: _delete_one(job_id, config))


def declare_clear(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", metavar="NAME", type=queue_type, help="only jobs of this queue")
    p.add_argument("--failed", action="store_true", help="only failed jobs")


def clear(args: argparse.Namespace, config: Config) -> int:
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
