"""What the dashboard's POSTs do: retry, delete, run now, pause and resume.

Each action returns a message (shown once, from the ``tinydj_flash``
cookie) and the page to go back to. ``security.check_post`` has already
accepted the request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from .. import control
from ..store import Store
from . import queries
from .web import HTTPError, Request, Response, cookie, number

__all__ = ["FLASH_COOKIE", "act", "respond"]

FLASH_COOKIE = "tinydj_flash"

_JOB_ACTION = re.compile(r"^jobs/(\d+)/(retry|delete|run|pause|resume)$")
_QUEUE_ACTION = re.compile(r"^queues/(.+)/(pause|resume)$")
_NEXT = re.compile(r"[\w\-/]*(\?[^\s\\]*)?")

#: (message, page to go back to)
Outcome = tuple[str, str]


def respond(req: Request, store: Store, now: datetime) -> Response:
    """Do the action and redirect to the page it names (``next``, if safe)."""
    message, default_next = act(req, store, now)
    target = req.arg("next") or default_next
    if not _NEXT.fullmatch(target) or target.startswith("/"):
        target = default_next
    headers = [
        ("Location", f"{req.base}/{target}"),
        cookie(FLASH_COOKIE, message, req.base + "/"),
    ]
    return Response("303 See Other", headers=headers)


def act(req: Request, store: Store, now: datetime) -> Outcome:
    """The action the request's path names."""
    path = req.path
    if match := _JOB_ACTION.fullmatch(path):
        return _job_action(store, int(match[1]), match[2], now)
    if path == "failed/bulk":
        return _bulk(req, store, now)
    if path == "queues/pause":
        queue = req.arg("queue")
        if not queue:
            raise HTTPError("400 Bad Request", "Give the name of the queue to pause.")
        return _pause_queue(store, queue, now)
    if match := _QUEUE_ACTION.fullmatch(path):
        if match[2] == "pause":
            return _pause_queue(store, match[1], now)
        control.resume(match[1], store=store)
        return f"Resumed queue {match[1]}.", "queues"
    raise HTTPError("404 Not Found", f"There is no action /{path}.")


def _pause_queue(store: Store, queue: str, now: datetime) -> Outcome:
    control.pause(queue, now=now, store=store)
    return f"Paused queue {queue}.", "queues"


def _job_action(store: Store, job_id: int, verb: str, now: datetime) -> Outcome:
    job = store.get(job_id)
    if job is None:
        return f"Job #{job_id} no longer exists.", "jobs"
    page = f"jobs/{job_id}"
    if verb == "retry":
        return _retry_one(store, job_id, job.failed_at is not None, now), page
    if verb == "delete":
        if job.locked_at is not None and job.failed_at is None:
            return f"Job #{job_id} is running: it cannot be deleted now.", page
        store.delete(job_id)
        return f"Deleted job #{job_id}.", "failed" if job.failed_at else "jobs"
    if verb == "run":
        done = queries.run_now(store, job_id, now)
        return (f"Job #{job_id} is due now." if done else f"Job #{job_id} cannot run now."), page
    return _pause_job(store, job_id, verb == "pause", now), page


def _retry_one(store: Store, job_id: int, failed: bool, now: datetime) -> str:
    if not failed:
        return f"Job #{job_id} has not failed: nothing to retry."
    if not retry(store, job_id, now):
        return f"Job #{job_id} is held (a worker or `tinydj move`): not retried."
    return f"Job #{job_id} will run again now."


def _pause_job(store: Store, job_id: int, pause: bool, now: datetime) -> str:
    if not queries.set_recurring_paused(store, job_id, pause, now):
        verb = "pause" if pause else "resume"
        return f"Job #{job_id} cannot be {verb}d now (not recurring, running or failed)."
    return f"Job #{job_id} {'paused' if pause else 'resumed: due now'}."


def _bulk(req: Request, store: Store, now: datetime) -> Outcome:
    """Retry or delete the selected jobs that are still failed."""
    action = req.arg("action")
    ids = sorted({number(v, "id") or 0 for v in req.form.get("ids", []) if v.strip()})
    if action not in ("retry", "delete"):
        raise HTTPError("400 Bad Request", "Choose retry or delete.")
    if not ids:
        return "No job selected.", "failed"
    apply: Callable[[int], bool] = (
        (lambda job_id: retry(store, job_id, now)) if action == "retry" else store.delete
    )
    done = 0
    for job_id in ids:
        job = store.get(job_id)
        if job is not None and job.failed_at is not None:  # only failed jobs are touched here
            done += apply(job_id)
    verb = "Retried" if action == "retry" else "Deleted"
    skipped = len(ids) - done
    tail = f" ({skipped} skipped: no longer failed)" if skipped else ""
    return f"{verb} {done} job{'s' if done != 1 else ''}{tail}.", "failed"


def retry(store: Store, job_id: int, now: datetime) -> bool:
    """Retry a failed job unless something holds a live lock on it (a worker,
    or ``tinydj move`` copying it elsewhere): it must not run twice."""
    live_after = now - timedelta(seconds=control.DEFAULT_LOCK_TIMEOUT)
    return store.states.retry_unless_held(job_id, now, live_after)
