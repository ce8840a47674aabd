"""An ``--app`` module with one ``@every`` job, for the concurrency tests.

Each run appends ``tick <pid>`` to the file named by $TINYDJ_TEST_RECURRING_OUT.
"""

from __future__ import annotations

import os

from tinydj import every

ENV_OUT = "TINYDJ_TEST_RECURRING_OUT"


@every("1h")
def tick() -> None:
    fd = os.open(os.environ[ENV_OUT], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"tick {os.getpid()}\n".encode())
    finally:
        os.close(fd)
