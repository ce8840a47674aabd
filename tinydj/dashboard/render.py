"""HTML building blocks: escaping, the page frame, times, badges, the chart.

Every value that comes from the database goes through ``esc`` (``html.escape``
with quotes), so job arguments and errors are shown as text, never run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from ..job import Job
from .queries import PAUSED_RUN_AT

__all__ = [
    "NAV",
    "Ctx",
    "ago",
    "badge",
    "chart",
    "esc",
    "frame",
    "job_state",
    "stamp",
]

NAV = (
    ("overview", "", "Overview"),
    ("jobs", "jobs", "Jobs"),
    ("failed", "failed", "Failed"),
    ("recurring", "recurring", "Recurring"),
    ("queues", "queues", "Queues"),
    ("workers", "workers", "Workers"),
)


def esc(value: object) -> str:
    """Text for HTML content and attribute values."""
    return escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Ctx:
    """What every page needs to know about the request it answers."""

    base: str
    now: datetime
    read_only: bool
    csrf: str
    database: str
    message: str | None = None

    def url(self, path: str = "", **query: object) -> str:
        """An absolute path under the app's mount point, with a query string."""
        href = f"{self.base}/{path}"
        pairs = {k: str(v) for k, v in query.items() if v not in (None, "")}
        return href + ("?" + urlencode(pairs) if pairs else "")

    def form(
        self, path: str, label: str, *, style: str = "", confirm: str = "", **hidden: object
    ) -> str:
        """A one-button POST form (nothing in read-only mode)."""
        if self.read_only:
            return ""
        fields = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in hidden.items()
        )
        data = f' data-confirm="{esc(confirm)}"' if confirm else ""
        return (
            f'<form method="post" action="{esc(self.url(path))}" class="inline"{data}>'
            f'<input type="hidden" name="csrf" value="{esc(self.csrf)}">{fields}'
            f'<button type="submit" class="btn {esc(style)}">{esc(label)}</button></form>'
        )


def stamp(value: datetime | None) -> str:
    """An absolute UTC time, to the second."""
    if value is None:
        return "—"
    if value >= PAUSED_RUN_AT:
        return "paused"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """``"45s"``, ``"12m"``, ``"3h 5m"``, ``"2d 4h"``."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s" if s < 600 and s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m" if s % 3600 // 60 else f"{s // 3600}h"
    return f"{s // 86400}d {s % 86400 // 3600}h" if s % 86400 // 3600 else f"{s // 86400}d"


def ago(value: datetime | None, now: datetime) -> str:
    """A ``<time>`` saying "3m ago" / "in 5m", with the absolute time as its title."""
    if value is None:
        return '<span class="muted">—</span>'
    if value >= PAUSED_RUN_AT:
        return '<span class="badge b-paused">paused</span>'
    delta = (now - value).total_seconds()
    text = (
        "now"
        if abs(delta) < 1
        else (f"{duration(delta)} ago" if delta > 0 else f"in {duration(delta)}")
    )
    return f'<time datetime="{value.isoformat()}Z" title="{stamp(value)} UTC">{text}</time>'


def job_state(job: Job, now: datetime) -> str:
    """One word: failed, running, recurring (waiting), scheduled or ready."""
    if job.failed_at is not None:
        return "failed"
    if job.locked_at is not None:
        return "running"
    if job.run_at > now:
        return "scheduled"
    return "ready"


def badge(state: str) -> str:
    return f'<span class="badge b-{esc(state)}">{esc(state)}</span>'


def frame(ctx: Ctx, active: str, title: str, body: str, *, refresh: bool = False) -> str:
    """The whole page: head, top bar with navigation, flash message, body."""
    links = "".join(
        f'<a href="{esc(ctx.url(path))}"{" aria-current=page" if key == active else ""}>'
        f"{esc(label)}</a>"
        for key, path, label in NAV
    )
    mode = '<span class="badge b-ro">read-only</span>' if ctx.read_only else ""
    flash = f'<div class="flash" role="status">{esc(ctx.message)}</div>' if ctx.message else ""
    live = (
        '<label class="live"><input type="checkbox" id="autorefresh"> auto-refresh</label>'
        if refresh
        else ""
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · tinydj</title>"
        f'<link rel="stylesheet" href="{esc(ctx.url("static/style.css"))}">'
        f'<link rel="icon" href="{esc(ctx.url("static/favicon.svg"))}" type="image/svg+xml">'
        f'<script src="{esc(ctx.url("static/app.js"))}" defer></script>'
        "</head><body>"
        '<header class="top"><div class="wrap">'
        f'<a class="brand" href="{esc(ctx.url())}"><span class="logo">dj</span>tinydj</a>'
        f'<nav class="nav">{links}</nav>'
        f'<div class="meta"><span class="db" title="database">{esc(ctx.database)}</span>'
        f"{mode}</div>"
        "</div></header>"
        f'<main class="wrap">{flash}<div class="head"><h1>{esc(title)}</h1>{live}</div>'
        f"{body}</main>"
        f'<footer class="wrap foot">Times are UTC · rendered {stamp(ctx.now)}</footer>'
        "</body></html>"
    )


def table(
    head: Sequence[str],
    rows: Iterable[str],
    *,
    cls: str = "",
    empty: str = "Nothing here.",
    numeric: Iterable[int] = (),
) -> str:
    """A scrollable table; ``rows`` are ready ``<tr>`` strings; ``numeric``
    are the indexes of right-aligned columns."""
    body = "".join(rows)
    if not body:
        body = f'<tr><td colspan="{len(head)}" class="empty">{esc(empty)}</td></tr>'
    right = set(numeric)
    heads = "".join(
        f'<th class="num">{h}</th>' if i in right else f"<th>{h}</th>" for i, h in enumerate(head)
    )
    return (
        f'<div class="scroll"><table class="grid {esc(cls)}"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def chart(
    points: Sequence[tuple[datetime, int, int]], *, width: int = 720, height: int = 110
) -> str:
    """Stacked bars (finished, failed) per minute as an inline SVG."""
    if not points:
        return ""
    top = max((f + e for _, f, e in points), default=0)
    scale_max = max(top, 1)
    n = len(points)
    slot = width / n
    bar = max(slot - 2, 1)
    plot = height
    bars = []
    for i, (minute, finished, failed) in enumerate(points):
        x = i * slot + 1
        h_ok = plot * finished / scale_max
        h_bad = plot * failed / scale_max
        y_ok = plot - h_ok
        title = f"{minute.strftime('%H:%M')} UTC: {finished} finished, {failed} failed"
        bars.append(
            f"<g><title>{esc(title)}</title>"
            f'<rect class="c-slot" x="{x:.1f}" y="0" width="{bar:.1f}" height="{plot}"/>'
            f'<rect class="c-ok" x="{x:.1f}" y="{y_ok:.1f}" width="{bar:.1f}" height="{h_ok:.1f}"/>'
            f'<rect class="c-bad" x="{x:.1f}" y="{y_ok - h_bad:.1f}" width="{bar:.1f}" '
            f'height="{h_bad:.1f}"/></g>'
        )
    first, last = points[0][0], points[-1][0]
    return (
        f'<svg class="chart" viewBox="0 0 {width} {plot}" preserveAspectRatio="none" '
        f'role="img" aria-label="jobs finished and failed per minute">{"".join(bars)}</svg>'
        f'<div class="axis"><span>{first.strftime("%H:%M")}</span>'
        f"<span>peak {top}/min</span><span>{last.strftime('%H:%M')}</span></div>"
    )
