"""Delayed::Job's hooks of object jobs: ``before``, ``success`` / ``error``,
``after``, and ``failure`` when a job fails for good.

A job object (one with ``perform()``) may define any of them; each is passed
as many of ``(job, exception)`` as it takes. The worker's executor and
immediate mode call them through here.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from .job import Job

__all__ = ["call_hook", "call_hook_guarded"]

log = logging.getLogger("tinydj.worker")


def call_hook(target: object | None, name: str, *args: Any) -> None:
    """Call an optional Delayed::Job hook, passing as many args as it takes."""
    hook = getattr(target, name, None) if target is not None else None
    if not callable(hook):
        return
    try:
        params = inspect.signature(hook).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not any(p.kind == p.VAR_POSITIONAL for p in params):
            args = args[: len(positional)]
    except (TypeError, ValueError):
        pass
    hook(*args)


def call_hook_guarded(target: object | None, name: str, job: Job, *args: Any) -> None:
    """``call_hook``, logging what it raises instead of raising it."""
    try:
        call_hook(target, name, job, *args)
    except Exception:
        log.exception("the %s hook of job %s raised", name, job.id)
