"""Jobs of the concurrency-limit tests; importable by path, as real jobs are.

``record`` jobs append ``key start end`` (wall-clock seconds) to the file named
by ``TINYDJ_TEST_TRACE``, so that a test can see how many of one key ran at once
across processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tinydj import job

calls: list[Any] = []


def reset() -> None:
    calls.clear()


@job(concurrency=1, concurrency_key="customer")
def import_for(customer: str, n: int = 0) -> None:
    calls.append((customer, n))


@job(concurrency=2)
def two_at_a_time(n: int) -> None:
    calls.append(("two", n))


@job(concurrency=1, concurrency_key=lambda account, **_: account["id"])
def sync(account: dict[str, Any]) -> None:
    calls.append(("sync", account["id"]))


@job
def free(n: int) -> None:
    calls.append(("free", n))


@job(concurrency=2, concurrency_key="key")
def record(key: str, seconds: float) -> None:
    start = time.time()
    time.sleep(seconds)  # the work being limited
    end = time.time()
    with open(os.environ["TINYDJ_TEST_TRACE"], "a") as trace:
        trace.write(f"{key} {start:.6f} {end:.6f} {os.getpid()}\n")


@job(concurrency=1, max_attempts=1)
def breaks() -> None:
    raise ValueError("boom")


@job(concurrency=1)
def fine(n: int) -> None:
    calls.append(("fine", n))
