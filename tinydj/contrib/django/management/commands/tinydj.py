"""``manage.py tinydj <subcommand>``: tinydj's command line with Django set up.

The subcommands and options are those of ``tinydj`` (``work``, ``clear``,
``stats``, ``list``, ``retry``...), on the database of the task backend
(``--backend NAME``, default ``default``). ``work`` first imports the
``tasks`` module of every installed app, so that their ``@task`` and
``@every`` functions are registered without ``--app``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.tasks import task_backends
from django.utils.module_loading import autodiscover_modules

from tinydj import cli
from tinydj.config import ENV_DATABASE_URL
from tinydj.contrib.django.backend import TaskBackend
from tinydj.contrib.django.connection import database_url


def _pop_backend(argv: list[str]) -> tuple[str, list[str]]:
    alias, rest = "default", []
    items = iter(argv)
    for item in items:
        if item == "--backend":
            alias = next(items, "")
        elif item.startswith("--backend="):
            alias = item.split("=", 1)[1]
        else:
            rest.append(item)
    return alias, rest


class Command(BaseCommand):
    help = (
        "tinydj's command line (work, clear, stats, list, retry...) on the task backend's database"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default=None, help="task backend alias (default: default)")
        parser.add_argument(
            "arguments", nargs=argparse.REMAINDER, help="a tinydj subcommand and its options"
        )

    def run_from_argv(self, argv: list[str]) -> None:
        # tinydj parses its own options (Django's parser would refuse them);
        # Django's --settings/--pythonpath were applied by manage.py already.
        rest = [
            a
            for a in argv[2:]
            if not a.startswith(("--settings=", "--pythonpath=")) and a != "--traceback"
        ]
        sys.exit(self.tinydj(rest))

    def handle(self, *args: Any, **options: Any) -> None:
        argv = list(options.get("arguments") or args)
        if options.get("backend"):
            argv = ["--backend", options["backend"], *argv]
        code = self.tinydj(argv)
        if code:
            raise CommandError(f"tinydj exited with status {code}", returncode=code)

    def tinydj(self, argv: Sequence[str]) -> int:
        alias, rest = _pop_backend(list(argv))
        try:
            backend = task_backends[alias]
        except Exception as exc:
            self.stderr.write(f"tinydj: no task backend {alias!r}: {exc}")
            return 2
        if not isinstance(backend, TaskBackend):
            self.stderr.write(f"tinydj: task backend {alias!r} is not tinydj's TaskBackend")
            return 2
        if rest and rest[0] == "work":
            autodiscover_modules("tasks")
            if backend.lock_timeout is not None and not any(
                a.startswith("--lock-timeout") for a in rest
            ):
                rest += ["--lock-timeout", str(backend.lock_timeout)]
        # The URL (and any password in it) goes through the environment, not argv.
        os.environ[ENV_DATABASE_URL] = database_url(backend.database)
        return cli.main(rest)
