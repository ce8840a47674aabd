"""An ``--app`` module for test_distributed: one ``@every`` job, and a start line.

Worker processes import it with ``--app pg_recurring_app``. When
$TINYDJ_TEST_PG_RECURRING_GO names a file, the import first appends
``ready <pid>`` to $TINYDJ_TEST_PG_RECURRING_OUT and then blocks until that file
exists: the test releases every process at the same moment, so that all of
them reach the upsert of the ``@every`` row together (the CLI creates the table
before it imports ``--app`` modules, the worker upserts right after).

Each run of ``tick`` appends ``tick <pid>`` to the same file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tinydj import every

ENV_OUT = "TINYDJ_TEST_PG_RECURRING_OUT"
ENV_GO = "TINYDJ_TEST_PG_RECURRING_GO"


def _append(text: str) -> None:
    fd = os.open(os.environ[ENV_OUT], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{text} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _wait_for_go() -> None:
    go = os.environ.get(ENV_GO)
    if not go:
        return
    _append("ready")
    deadline = time.monotonic() + 30
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.002)


_wait_for_go()


@every("1h")
def tick() -> None:
    _append("tick")
