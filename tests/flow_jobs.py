"""Jobs of the unique-job and cancel tests; importable by path, as real jobs are."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import tinydj
from tinydj import job

calls: list[Any] = []
#: Set by the tests to let a running job go on (or see that it started).
started = threading.Event()


def reset() -> None:
    calls.clear()
    started.clear()


@job(unique=True)
def refresh(customer: int, full: bool = False) -> None:
    calls.append(("refresh", customer, full))


@job(unique="running")
def rebuild(name: str) -> None:
    calls.append(("rebuild", name))


@job(unique_for="1h")
def digest(user: str) -> None:
    calls.append(("digest", user))


@job(unique="running", max_attempts=1)
def breaks(name: str) -> None:
    raise ValueError(f"broken {name}")


@job
def notify(to: str) -> None:
    calls.append(("notify", to))


@job
def polls_cancel(limit: float = 60.0) -> str:
    """Runs until it is asked to stop (a sync job polling its flag)."""
    current = tinydj.current_job()
    assert current is not None
    started.set()
    deadline = time.monotonic() + limit
    while not current.cancel_requested:
        if time.monotonic() > deadline:
            raise TimeoutError("no cancel request arrived")
        time.sleep(0.01)
    calls.append(("stopped", current.id))
    return "stopped"


@job
async def waits_async(limit: float = 60.0) -> None:
    started.set()
    await asyncio.sleep(limit)
    calls.append("async finished")  # only if never cancelled


@job
def who_am_i() -> None:
    current = tinydj.current_job()
    calls.append(None if current is None else (current.id, current.cancel_requested))


@job
async def async_who_am_i() -> None:
    await asyncio.sleep(0)
    current = tinydj.current_job()
    calls.append(None if current is None else current.id)


@job(timeout=30)
def who_am_i_with_deadline() -> None:
    current = tinydj.current_job()
    calls.append(None if current is None else current.id)
