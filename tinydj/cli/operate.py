"""Operating the workers: workers, pause, resume, dashboard."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from .. import admin, control
from ..config import Config
from .base import EXIT_OK, SECONDS, Fail, now_of, print_json, queue_type

# -- workers ------------------------------------------------------------------------


def declare_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lock-timeout",
        type=SECONDS["lock_timeout"],
        default=admin.DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="a worker silent for longer than this is dead (default 30)",
    )


def workers(args: argparse.Namespace, config: Config) -> int:
    now = now_of(config)
    found = control.list_workers(now=now, lock_timeout=args.lock_timeout, store=config.store)
    if args.json:
        print_json(
            [
                {
                    **asdict(w),
                    "queues": list(w.queues),
                    "started_at": w.started_at.isoformat() + "Z",
                    "heartbeat_at": w.heartbeat_at.isoformat() + "Z",
                }
                for w in found
            ]
        )
    elif not found:
        print("no workers have registered (they do when `tinydj work` starts)")
    else:
        print("\n".join(control.format_workers(found, now)))
    return EXIT_OK


# -- pause, resume ------------------------------------------------------------------


def declare_queue(p: argparse.ArgumentParser) -> None:
    p.add_argument("queue", type=queue_type, metavar="QUEUE")


def pause(args: argparse.Namespace, config: Config) -> int:
    if control.pause(args.queue, now=now_of(config), store=config.store):
        print(f"paused queue {args.queue}: workers take none of its jobs until `tinydj resume`")
    else:
        print(f"queue {args.queue} was already paused")
    return EXIT_OK


def resume(args: argparse.Namespace, config: Config) -> int:
    if not control.resume(args.queue, store=config.store):
        raise Fail(f"queue {args.queue} is not paused")
    print(f"resumed queue {args.queue}")
    return EXIT_OK


# -- dashboard ----------------------------------------------------------------------


def declare_dashboard(p: argparse.ArgumentParser) -> None:
    from ..dashboard import DEFAULT_HOST, DEFAULT_PORT

    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--read-only", action="store_true", help="show no actions, refuse changes")
    p.add_argument("--token", help="require this token (default: $TINYDJ_DASHBOARD_TOKEN, if set)")


def dashboard(args: argparse.Namespace, config: Config) -> int:
    from ..dashboard import serve

    try:
        serve(config, args.host, args.port, read_only=args.read_only, token=args.token)
    except OSError as exc:
        raise Fail(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK
