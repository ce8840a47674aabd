"""Jobs of a tiny shop: imported by path when a worker runs them."""

from __future__ import annotations

import tinydj
from tinydj import every, job


@job
def resize(path: str, width: int = 100) -> None:
    print(f"  resized {path} to {width}px")


@job(queue="mail", priority=5, max_attempts=3)
def send_receipt(to: str, total: float) -> None:
    print(f"  mailed a receipt of {total:.2f} to {to}")


@job(max_attempts=2)
def charge_card(card: str) -> None:
    if card.startswith("0000"):
        raise ValueError(f"card {card} was declined")
    print(f"  charged card {card}")


@every("1h")
def hourly_report() -> None:
    print("  hourly report: all is well")


class NewsletterJob:
    """A Delayed::Job-style object job: anything with perform()."""

    def __init__(self, subject: str, emails: list[str]) -> None:
        self.subject = subject
        self.emails = emails

    def perform(self) -> None:
        print(f"  sent {self.subject!r} to {len(self.emails)} readers")

    def success(self, job: tinydj.Job) -> None:  # an optional hook
        print(f"  (newsletter job {job.id} succeeded)")
