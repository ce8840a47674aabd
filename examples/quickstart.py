"""tinydj in one page: enqueue jobs into SQLite and work them off.

    python examples/quickstart.py

Uses the default database, ``tinydj.sqlite3`` in the current directory
(or $TINYDJ_DATABASE_URL).
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

from shop import NewsletterJob, charge_card, resize, send_receipt

import tinydj

logging.basicConfig(
    level=logging.WARNING, format="  [%(levelname)s] %(message)s", stream=sys.stdout
)
tinydj.configure()
tinydj.clear()

resize.send_later("photos/cat.png", width=300)
send_receipt.send_later("ann@example.com", total=42.5)
charge_card.send_later("4111 1111")
charge_card.send_later("0000 0000")  # fails: retried later, then marked failed
resize.send_in("10m", "photos/later.png")  # not due yet
tinydj.enqueue(NewsletterJob("Spring sale", ["a@example.com", "b@example.com"]))

job = send_receipt.send_later("bob@example.com", total=9.99)
print("A job is a row; its handler is YAML:\n")
print("\n".join("    " + line for line in job.handler.splitlines()), "\n")

print("Working off the due jobs (the @every hourly_report is due at once):")
succeeded, failed = tinydj.Worker().work_off()
print(f"\nsucceeded={succeeded} failed={failed}")


def state(row: tinydj.Job, now: datetime) -> str:
    """The CLI's vocabulary: recurring, failed, running, scheduled, ready."""
    if row.recurring:
        return "recurring"
    if row.failed:
        return "failed"
    if row.locked:
        return "running"
    return "scheduled" if row.run_at > now else "ready"


print("\nStill in the table:")
now = datetime.now(UTC).replace(tzinfo=None)  # the table holds naive UTC
for row in tinydj.list_jobs():
    error = (row.last_error or "").split("\n", 1)[0]
    print(
        f"  #{row.id} {row.name:<28} {state(row, now):<9} attempts={row.attempts} "
        f"run_at={row.run_at:%H:%M:%S} {error}"
    )
print("\nstats:", tinydj.stats())

print("\nA worker in background threads picks up new jobs at once:")
worker = tinydj.Worker(threads=2).start()
started = time.perf_counter()
late = resize.send_later("photos/dog.png", width=64)
while tinydj.get_job(late.id) is not None and time.perf_counter() - started < 5:
    time.sleep(0.001)
print(f"  done {1000 * (time.perf_counter() - started):.1f} ms after send_later")
worker.stop()
