"""What the command line prints: tables for people, JSON for scripts.

Pure functions of the jobs and ``now`` (naive UTC), returning lines, so that
tests can pin the exact output. Times are shown in UTC to the second.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..admin import STATES, QueueStats, state_of
from ..job import COLUMNS, Job
from ..results import Result

__all__ = [
    "ERROR_WIDTH",
    "duration",
    "job_json",
    "list_lines",
    "shorten",
    "show_lines",
    "stats_json",
    "stats_lines",
    "table",
]

#: Longest ``last_error`` excerpt in ``tinydj list`` (``show`` prints it whole).
ERROR_WIDTH = 60
_ELLIPSIS = "..."


def shorten(text: str | None, width: int = ERROR_WIDTH) -> str:
    """The first line of ``text``, cut at a word boundary to ``width`` with "..."."""
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    if len(line) <= width:
        return line
    cut = line[: width - len(_ELLIPSIS)]
    space = cut.rfind(" ")
    if space > width // 2:  # a word boundary not too far back
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + _ELLIPSIS


def duration(delta: timedelta) -> str:
    """``12s``, ``2m05s``, ``1h02m``, ``3d04h``: two units at most."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> list[str]:
    """Aligned columns; the first ``right`` columns and columns of numbers
    align right."""
    columns = range(len(headers))
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in columns]
    numeric = [i < right or (bool(rows) and all(r[i].isdigit() for r in rows)) for i in columns]

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(width) if number else cell.ljust(width)
            for cell, width, number in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(out).rstrip()

    return [line(headers), *(line(r) for r in rows)]


# -- list --------------------------------------------------------------------

_LIST_HEADERS = ("ID", "STATE", "QUEUE", "PRI", "ATTEMPTS", "WHEN (UTC)", "JOB", "LAST ERROR")


def _list_row(job: Job, now: datetime) -> list[str]:
    state = state_of(job, now)
    when = job.failed_at if state == "failed" else job.run_at
    return [
        str(job.id),
        state,
        job.queue,
        str(job.priority),
        str(job.attempts),
        _when(when),
        job.name,
        shorten(job.last_error),
    ]


def list_lines(jobs: Sequence[Job], total: int, now: datetime, what: str = "jobs") -> list[str]:
    """``tinydj list``: a header, one row per job, and "... and N more"."""
    if not jobs:
        return [f"no {what}" if total == 0 else f"{total} {what}, none shown"]
    lines = table(_LIST_HEADERS, [_list_row(j, now) for j in jobs], right=1)
    if total > len(jobs):
        lines.append(f"... and {total - len(jobs)} more (--limit N shows more)")
    return lines


# -- show --------------------------------------------------------------------


def _indented(text: str) -> list[str]:
    return ["    " + line if line else "" for line in text.rstrip("\n").splitlines()]


#: The columns of ``show`` before the handler and last_error, most useful first.
_SHOW_ORDER = (
    "queue",
    "priority",
    "attempts",
    "interruptions",
    "run_at",
    "failed_at",
    "locked_at",
    "locked_by",
    "reoccur_in",
    "last_run_at",
    "key",
    "concurrency_key",
    "created_at",
    "updated_at",
)
assert set(_SHOW_ORDER) | {"id", "handler", "last_error"} == set(COLUMNS)


def show_lines(job: Job, now: datetime) -> list[str]:
    """``tinydj show``: every column, then the handler and the whole last_error."""
    fields: list[tuple[str, str]] = [
        ("id", str(job.id)),
        ("state", state_of(job, now)),
        ("job", job.name),
    ]
    for column in _SHOW_ORDER:
        value = getattr(job, column)
        if isinstance(value, datetime):
            text = f"{_when(value)} UTC"
        else:
            text = "-" if value is None else str(value)
        fields.append((column, text))
    width = max(len(name) for name, _ in fields)
    lines = [f"{name:<{width}}  {text}" for name, text in fields]
    lines += ["handler:", *_indented(job.handler)]
    lines += ["last_error:", *(_indented(job.last_error) if job.last_error else ["    -"])]
    return lines


def job_json(job: Job, now: datetime) -> dict[str, Any]:
    """Every column of ``job`` (times as ISO 8601 UTC), its state and name."""
    data: dict[str, Any] = {"id": job.id, "state": state_of(job, now), "job": job.name}
    for column in COLUMNS[1:]:
        value = getattr(job, column)
        data[column] = (
            value.replace(tzinfo=UTC).isoformat() if isinstance(value, datetime) else value
        )
    return data


# -- stats -------------------------------------------------------------------


def _total(stats: Sequence[QueueStats]) -> QueueStats:
    counts = {state: sum(s.counts[state] for s in stats) for state in STATES}
    lags = [s.lag for s in stats if s.lag is not None]
    return QueueStats("total", counts, max(lags) if lags else None)


def stats_lines(stats: Sequence[QueueStats]) -> list[str]:
    """``tinydj stats``: per queue, the count of each state and the lag."""
    headers = ["QUEUE", *(s.upper() for s in STATES), "LAG"]
    rows = [
        [
            s.queue,
            *(str(s.counts[state]) for state in STATES),
            duration(s.lag) if s.lag is not None else "-",
        ]
        for s in [*stats, _total(stats)]
    ]
    return table(headers, rows)


def stats_json(stats: Sequence[QueueStats]) -> dict[str, Any]:
    """``tinydj stats --json``: counts and ``lag_seconds`` per queue and in total."""

    def one(s: QueueStats) -> dict[str, Any]:
        lag = None if s.lag is None else round(s.lag.total_seconds(), 3)
        return {**s.counts, "lag_seconds": lag}

    return {"queues": {s.queue: one(s) for s in stats}, "total": one(_total(stats))}


def result_lines(kept: Result) -> list[str]:
    """``tinydj show``'s lines for a kept result (``tinydj.results``)."""
    lines = [
        "result:",
        f"    status       {kept.status}",
        f"    attempts     {kept.attempts}",
        f"    workers      {', '.join(kept.worker_ids) or '-'}",
        f"    started_at   {_utc(kept.started_at)}",
        f"    finished_at  {_utc(kept.finished_at)}",
        f"    kept until   {_utc(kept.expires_at)}",
    ]
    if kept.status == "SUCCESSFUL":
        lines.append(f"    value        {json.dumps(kept.value, ensure_ascii=False)}")
    for error in kept.errors[-3:]:
        lines.append(f"    error        {error.get('type', '')}: {error.get('message', '')}")
    return lines


def result_json(kept: Result) -> dict[str, Any]:
    """A kept result for ``--json``: ISO 8601 UTC times."""
    data = dataclasses.asdict(kept)
    for name in ("enqueued_at", "started_at", "finished_at", "expires_at"):
        value = data[name]
        data[name] = None if value is None else value.isoformat() + "Z"
    return data


def _utc(value: datetime | None) -> str:
    return "-" if value is None else f"{_when(value)} UTC"
