"""Jobs for the command-line tests; importable by path, as real jobs are."""

from __future__ import annotations

from tinydj import job


@job(max_attempts=1)
def fail_with(message: str) -> None:
    """Fail at once with ``message`` (to see how the worker's log shows it)."""
    raise RuntimeError(message)
