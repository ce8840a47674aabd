"""Jobs and a realistic table for the dashboard tests (importable by path)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

# Imported here, at collection, so that its @every task is registered before
# conftest's isolated_registry saves and clears the registry: it then stays
# out of these tables.
import sample_jobs  # noqa: F401

import tinydj
from tinydj import control
from tinydj.tasks import Task, upsert_recurring

XSS = "<script>alert(1)</script>"
WORKER = "host:web-1 pid:4242 w1"


@tinydj.job(queue="mail")
def send_welcome(to: str, template: str = "welcome") -> None:
    """Delivers an email."""


@tinydj.job(queue="images", priority=5)
def resize(path: str, width: int = 640) -> None:
    """Resizes an image."""


@tinydj.job(max_attempts=1, queue="billing")
def charge(account: str, cents: int) -> None:
    raise RuntimeError(f"card declined for {account}: insufficient funds ({cents} cents)")


@tinydj.job(max_attempts=1)
def echo(text: str) -> None:
    raise ValueError(text)


def _every(fn: Any, spec: str) -> Task[Any, Any]:
    return tinydj.every(spec)(fn)  # type: ignore[no-any-return]


def cleanup_sessions() -> None:
    """Deletes expired sessions."""


def nightly_report() -> None:
    """Mails the nightly report."""


def drop_control_tables(config: tinydj.Config) -> None:
    """Start without tinydj's control tables (server databases keep them
    between tests; conftest drops only delayed_jobs)."""
    for table in ("tinydj_workers", "tinydj_queues", "tinydj_stats"):
        config.database.execute_sql(f"DROP TABLE IF EXISTS {table}")
    control._ready.discard(config.store)


def populate(config: tinydj.Config, clock: Any) -> dict[str, Any]:
    """Fill the table with every kind of row; return some of their ids.

    Failed jobs fail for real (a worker runs them); a running job is reserved
    by a registered worker; outcomes are recorded for the chart.
    """
    now = clock()
    made: dict[str, Any] = {}
    for i in range(6):
        send_welcome.send_later(f"user{i}@example.com")
    for i in range(4):
        resize.send_in(timedelta(minutes=10 + i), f"/uploads/cat-{i}.png", width=300)
    failed = [charge.send_later(f"acct-{i:03d}", 1999 + i).id for i in range(3)]
    xss = echo.send_later(XSS).id
    tinydj.Worker(config=config, queues=["billing", "default"]).work_off()
    made["failed"] = failed
    made["xss"] = xss
    # A job a live worker holds right now.
    running = send_welcome.with_options(queue="reports").send_later("boss@example.com")
    config.store.reserve(WORKER, now, now - timedelta(seconds=30), ["reports"], 1)
    made["running"] = running.id
    tasks = [
        _every(cleanup_sessions, "15m"),
        _every(nightly_report, "1d"),
    ]
    made["recurring"] = [upsert_recurring(config, t, now).id for t in tasks]
    control.register_worker(
        WORKER, host="web-1", pid=4242, threads=4, queues=None, now=now, store=config.store
    )
    control.register_worker(
        "host:web-2 pid:99 w1",
        host="web-2",
        pid=99,
        threads=2,
        queues=["mail"],
        now=now - timedelta(minutes=30),
        store=config.store,
    )
    outcomes = {
        (now - timedelta(minutes=m), "mail"): (5 + (m * 7) % 13, 1 if m % 9 == 0 else 0)
        for m in range(60)
    }
    control.record_outcomes(outcomes, store=config.store)
    return made
