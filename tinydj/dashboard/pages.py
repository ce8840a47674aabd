"""The dashboard's pages: each a function from data to HTML (no SQL here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..control import WorkerInfo
from ..job import COLUMNS, Job
from .queries import STATES, JobFilter, JobPage, QueueCounts
from .render import Ctx, ago, badge, chart, duration, esc, frame, job_state, stamp, table

__all__ = [
    "job_page",
    "jobs_page",
    "not_found",
    "overview_page",
    "queues_page",
    "recurring_page",
    "workers_page",
]


def _first_line(text: str | None, limit: int = 120) -> str:
    if not text:
        return ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    # A traceback's last line says what went wrong.
    line = lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _error_cell(job: Job) -> str:
    title = esc(_first_line(job.last_error, 400))
    return f'<td class="err" title="{title}">{esc(_first_line(job.last_error))}</td>'


def _num(n: int, state: str = "") -> str:
    cls = f"num n-{state}" if n and state else "num"
    return f'<td class="{cls}">{n:,}</td>'


def _job_link(ctx: Ctx, job: Job) -> str:
    return f'<a class="mono" href="{esc(ctx.url(f"jobs/{job.id}"))}">#{job.id}</a>'


def _cards(ctx: Ctx, counts: Sequence[QueueCounts]) -> str:
    totals = {
        s: sum(getattr(c, s) for c in counts) for s in ("ready", "scheduled", "running", "failed")
    }
    lags = [c.lag(ctx.now) for c in counts]
    worst = max((lag for lag in lags if lag is not None), default=None)
    cards = [
        (
            "ready",
            f"{totals['ready']:,}",
            "waiting to run",
            ctx.url("jobs", state="ready"),
        ),
        ("running", f"{totals['running']:,}", "held by workers", ctx.url("jobs", state="running")),
        ("scheduled", f"{totals['scheduled']:,}", "due later", ctx.url("jobs", state="scheduled")),
        ("failed", f"{totals['failed']:,}", "gave up", ctx.url("failed")),
        (
            "lag",
            duration(worst) if worst is not None else "—",
            "oldest ready job",
            ctx.url("queues"),
        ),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<a class="card k-{k}" href="{esc(href)}"><span class="k">{esc(k)}</span>'
            f'<span class="v">{esc(v)}</span><span class="s">{esc(s)}</span></a>'
            for k, v, s, href in cards
        )
        + "</div>"
    )


def _queue_rows(
    ctx: Ctx, counts: Sequence[QueueCounts], paused: dict[str, datetime], actions: bool
) -> list[str]:
    rows = []
    for c in counts:
        lag = c.lag(ctx.now)
        state = badge("paused") if c.queue in paused else badge("active")
        action = ""
        if actions:
            action = (
                ctx.form(f"queues/{c.queue}/resume", "Resume", style="ok", next="queues")
                if c.queue in paused
                else ctx.form(f"queues/{c.queue}/pause", "Pause", style="warn", next="queues")
            )
        rows.append(
            "<tr>"
            f'<td><a href="{esc(ctx.url("jobs", queue=c.queue))}">{esc(c.queue)}</a></td>'
            f"<td>{state}</td>"
            f"{_num(c.ready, 'ready')}{_num(c.running, 'running')}"
            f"{_num(c.scheduled, 'scheduled')}{_num(c.failed, 'failed')}"
            f'<td class="num{" n-lag" if lag and lag > 60 else ""}">'
            f"{duration(lag) if lag is not None else '—'}</td>"
            + (f'<td class="act">{action}</td>' if actions else "")
            + "</tr>"
        )
    return rows


def _queue_head(actions: bool) -> list[str]:
    head = ["Queue", "State", "Ready", "Running", "Scheduled", "Failed", "Lag"]
    return [*head, ""] if actions else head


def _worker_rows(ctx: Ctx, workers: Sequence[WorkerInfo], held: dict[str, list[Job]]) -> list[str]:
    rows = []
    for w in workers:
        jobs = held.get(w.name, [])
        links = " ".join(_job_link(ctx, j) for j in jobs[:8])
        if len(jobs) > 8:
            links += f' <span class="muted">+{len(jobs) - 8}</span>'
        rows.append(
            "<tr>"
            f'<td class="mono">{esc(w.name)}</td>'
            f"<td>{badge('live') if w.alive else badge('dead')}</td>"
            f'<td>{esc(w.host)}</td><td class="num">{w.pid}</td><td class="num">{w.threads}</td>'
            f"<td>{esc(', '.join(w.queues) or 'all')}</td>"
            f"<td>{ago(w.started_at, ctx.now)}</td><td>{ago(w.heartbeat_at, ctx.now)}</td>"
            f"<td>{links or '<span class=muted>idle</span>'}</td>"
            "</tr>"
        )
    return rows


_WORKER_HEAD = [
    "Name",
    "State",
    "Host",
    "PID",
    "Threads",
    "Queues",
    "Started",
    "Heartbeat",
    "Holds",
]


def overview_page(
    ctx: Ctx,
    counts: Sequence[QueueCounts],
    paused: dict[str, datetime],
    points: Sequence[tuple[datetime, int, int]],
    workers: Sequence[WorkerInfo],
    held: dict[str, list[Job]],
    counted: str | None = None,
) -> str:
    finished = sum(p[1] for p in points)
    failed = sum(p[2] for p in points)
    live = [w for w in workers if w.alive]
    hint = (
        ""
        if finished or failed
        else '<p class="muted small">The chart fills as workers report what they ran.</p>'
    )
    body = (
        _cards(ctx, counts) + '<section class="panel"><div class="panel-head"><h2>Last hour</h2>'
        f'<span class="legend"><i class="l-ok"></i>{finished:,} finished '
        f'<i class="l-bad"></i>{failed:,} failed</span></div>'
        f"{chart(points)}{hint}</section>"
        + '<section class="panel"><div class="panel-head"><h2>Queues</h2>'
        f'<a href="{esc(ctx.url("queues"))}">manage</a></div>'
        + (f'<p class="muted small">{esc(counted)}</p>' if counted else "")
        + table(
            _queue_head(False),
            _queue_rows(ctx, counts, paused, False),
            empty="No jobs yet.",
            numeric=range(2, 7),
        )
        + "</section>"
        + '<section class="panel"><div class="panel-head">'
        f'<h2>Live workers <span class="count">{len(live)}</span></h2>'
        f'<a href="{esc(ctx.url("workers"))}">all workers</a></div>'
        + table(
            _WORKER_HEAD, _worker_rows(ctx, live, held), empty="No live worker.", numeric=(3, 4)
        )
        + "</section>"
    )
    return frame(ctx, "overview", "Overview", body, refresh=True)


def _filters(ctx: Ctx, path: str, flt: JobFilter, queues: Sequence[str], fixed_state: bool) -> str:
    state_opts = "".join(
        f'<option value="{s}"{" selected" if flt.state == s else ""}>{s}</option>' for s in STATES
    )
    state = (
        ""
        if fixed_state
        else f'<label>State<select name="state"><option value="">any</option>{state_opts}'
        "</select></label>"
    )
    queue_opts = "".join(f'<option value="{esc(q)}"></option>' for q in queues)
    return (
        f'<form class="filters" method="get" action="{esc(ctx.url(path))}">'
        f"{state}"
        f'<label>Queue<input name="queue" list="queues" value="{esc(flt.queue or "")}" '
        'placeholder="any"></label>'
        f'<datalist id="queues">{queue_opts}</datalist>'
        f'<label>Function<input name="function" value="{esc(flt.function or "")}" '
        'placeholder="module:name"></label>'
        f'<label class="grow">Search<input type="search" name="q" value="{esc(flt.text or "")}" '
        'placeholder="text in arguments or error"></label>'
        '<label class="narrow">ID<input name="id" inputmode="numeric" '
        f'value="{esc(flt.job_id or "")}"></label>'
        '<button class="btn primary" type="submit">Filter</button>'
        f'<a class="btn ghost" href="{esc(ctx.url(path))}">Reset</a>'
        "</form>"
    )


def _pager(ctx: Ctx, path: str, query: dict[str, object], page: JobPage) -> str:
    links = []
    if page.newer is not None:
        links.append(f'<a class="btn ghost" href="{esc(ctx.url(path, **query))}">« Newest</a>')
        links.append(
            '<a class="btn ghost" rel="prev" '
            f'href="{esc(ctx.url(path, **query, after=page.newer))}">‹ Newer</a>'
        )
    if page.older is not None:
        label = "Search older ›" if page.searched else "Older ›"
        links.append(
            '<a class="btn ghost" rel="next" '
            f'href="{esc(ctx.url(path, **query, before=page.older))}">{label}</a>'
        )
    note = ""
    if page.searched:
        low, high = page.searched
        found = len(page.jobs)
        note = (
            f'<span class="muted small">{found} match{"es" if found != 1 else ""} '
            f"in ids {low:,}–{high:,} (a search reads {high - low + 1:,} ids per page)</span>"
        )
    return f'<nav class="pager">{note}{"".join(links)}</nav>' if links or note else ""


def jobs_page(
    ctx: Ctx,
    flt: JobFilter,
    page: JobPage,
    queues: Sequence[str],
    *,
    failed_view: bool = False,
    error: str | None = None,
) -> str:
    path = "failed" if failed_view else "jobs"
    query = _job_query(flt, failed_view)
    bulk = failed_view and not ctx.read_only
    rows = [_job_row(ctx, job, bulk) for job in page.jobs]
    head = _jobs_head(failed_view, bulk)
    body = (
        (f'<div class="flash bad">{esc(error)}</div>' if error else "")
        + _filters(ctx, path, flt, queues, failed_view)
        + (_bulk_bar(ctx, path, query) if bulk else "")
        + table(head, rows, cls="jobs", empty="No job matches.", numeric=(len(head) - 3,))
        + _pager(ctx, path, {k: v for k, v in query.items() if v not in (None, "")}, page)
    )
    return frame(ctx, path, "Failed jobs" if failed_view else "Jobs", body)


def _job_query(flt: JobFilter, failed_view: bool) -> dict[str, object]:
    """The filter as the list's query string (the failed view fixes the state)."""
    return {
        "state": None if failed_view else flt.state,
        "queue": flt.queue,
        "function": flt.function,
        "q": flt.text,
        "id": flt.job_id,
    }


def _job_row(ctx: Ctx, job: Job, bulk: bool) -> str:
    state = job_state(job, ctx.now)
    if job.recurring and state == "scheduled":
        state = "recurring"
    check = (
        f'<td class="pick"><input type="checkbox" name="ids" value="{job.id}" form="bulk" '
        f'aria-label="select job {job.id}"></td>'
        if bulk
        else ""
    )
    return (
        f"<tr>{check}<td>{_job_link(ctx, job)}</td><td>{badge(state)}</td>"
        f'<td>{esc(job.queue)}</td><td class="mono fn">{esc(job.name)}</td>'
        f'<td class="num">{job.attempts}</td>'
        f"<td>{ago(job.failed_at if job.failed_at else job.run_at, ctx.now)}</td>"
        f"{_error_cell(job)}</tr>"
    )


def _jobs_head(failed_view: bool, bulk: bool) -> list[str]:
    when = "Failed" if failed_view else "Run at"
    head = ["ID", "State", "Queue", "Function", "Att.", when, "Last error"]
    if bulk:
        return ['<input type="checkbox" id="pick-all" aria-label="select all on this page">', *head]
    return head


def _bulk_bar(ctx: Ctx, path: str, query: dict[str, object]) -> str:
    """The form the failed list's checkboxes belong to: retry or delete them."""
    return (
        f'<form id="bulk" class="bulk" method="post" action="{esc(ctx.url("failed/bulk"))}">'
        f'<input type="hidden" name="csrf" value="{esc(ctx.csrf)}">'
        '<input type="hidden" name="next" '
        f'value="{esc(ctx.url(path, **query)[len(ctx.base) + 1 :])}">'
        '<span class="muted" id="picked">0 selected</span>'
        '<button class="btn ok" name="action" value="retry" type="submit">Retry selected'
        "</button>"
        '<button class="btn danger" name="action" value="delete" type="submit" '
        'data-confirm="Delete the selected jobs? This cannot be undone.">Delete selected'
        "</button>"
        "</form>"
    )


def _field(name: str, value: str, *, raw: bool = False) -> str:
    return f"<tr><th>{esc(name)}</th><td>{value if raw else esc(value)}</td></tr>"


_TIMES = frozenset({"run_at", "locked_at", "failed_at", "last_run_at", "created_at", "updated_at"})


def job_page(ctx: Ctx, job: Job) -> str:
    state = job_state(job, ctx.now)
    fields = [
        _column(ctx, c, getattr(job, c)) for c in COLUMNS if c not in ("handler", "last_error")
    ]
    error = (
        f'<section class="panel"><div class="panel-head"><h2>Last error</h2></div>'
        f'<pre class="code err-text">{esc(job.last_error)}</pre></section>'
        if job.last_error
        else ""
    )
    body = (
        f'<div class="jobhead">{badge(state)}<span class="mono fn big">{esc(job.name)}</span>'
        f'<span class="muted">queue {esc(job.queue)} · {esc(_attempts(job))}</span></div>'
        f'<div class="actions">{"".join(_job_actions(ctx, job, state))}</div>'
        + error
        + '<div class="split">'
        f'<section class="panel"><div class="panel-head"><h2>Handler</h2></div>'
        f'<pre class="code">{esc(job.handler)}</pre></section>'
        f'<section class="panel"><div class="panel-head"><h2>Columns</h2></div>'
        f'<table class="kv">{"".join(fields)}</table></section>'
        "</div>"
    )
    return frame(ctx, "jobs", f"Job #{job.id}", body)


def _job_actions(ctx: Ctx, job: Job, state: str) -> list[str]:
    """The buttons for what can be done to the job in its state."""
    actions = []
    if state == "failed":
        actions.append(ctx.form(f"jobs/{job.id}/retry", "Retry", style="ok"))
    if state in ("ready", "scheduled"):
        actions.append(ctx.form(f"jobs/{job.id}/run", "Run now", style="ok"))
    if job.recurring and state != "running":
        paused = state == "scheduled" and stamp(job.run_at) == "paused"
        actions.append(
            ctx.form(f"jobs/{job.id}/resume", "Resume", style="ok")
            if paused
            else ctx.form(f"jobs/{job.id}/pause", "Pause", style="warn")
        )
    if state != "running":
        confirm = f"Delete job #{job.id}? This cannot be undone."
        back = "failed" if state == "failed" else "jobs"
        actions.append(
            ctx.form(f"jobs/{job.id}/delete", "Delete", style="danger", confirm=confirm, next=back)
        )
    return actions


def _column(ctx: Ctx, col: str, value: object) -> str:
    """One row of the job's column table: times absolute and relative, the
    worker holding it as a link."""
    if col in _TIMES:
        if not value:
            return _field(col, "—", raw=True)
        assert isinstance(value, datetime)
        text = f'{esc(stamp(value))} <span class="muted">({ago(value, ctx.now)})</span>'
        return _field(col, text, raw=True)
    if col == "locked_by" and value:
        link = f'<a class="mono" href="{esc(ctx.url("workers"))}">{esc(value)}</a>'
        return _field(col, link, raw=True)
    return _field(col, "—" if value is None else str(value))


def _attempts(job: Job) -> str:
    return (
        f"{job.attempts} failed run{'s' if job.attempts != 1 else ''}"
        + (f", {job.interruptions} interrupted" if job.interruptions else "")
        + (f"; the last error at {stamp(job.updated_at)} UTC" if job.last_error else "")
    )


def recurring_page(ctx: Ctx, jobs: Sequence[Job]) -> str:
    rows = []
    for job in jobs:
        state = job_state(job, ctx.now)
        paused = stamp(job.run_at) == "paused"
        actions = ""
        if not ctx.read_only and state != "running":
            actions = ctx.form(f"jobs/{job.id}/run", "Run now", style="ok", next="recurring") + (
                ctx.form(f"jobs/{job.id}/resume", "Resume", style="ok", next="recurring")
                if paused
                else ctx.form(f"jobs/{job.id}/pause", "Pause", style="warn", next="recurring")
            )
        shown = (
            "paused"
            if paused
            else ("failed" if state == "failed" else "running" if state == "running" else "active")
        )
        rows.append(
            "<tr>"
            f'<td><a class="mono fn" href="{esc(ctx.url(f"jobs/{job.id}"))}">{esc(job.name)}</a>'
            "</td>"
            f"<td>{badge(shown)}</td><td>{esc(job.queue)}</td>"
            f'<td class="mono">every {esc(job.reoccur_in)}</td>'
            f"<td>{ago(job.run_at, ctx.now)}</td><td>{ago(job.last_run_at, ctx.now)}</td>"
            + _error_cell(job)
            + (f'<td class="act">{actions}</td>' if not ctx.read_only else "")
            + "</tr>"
        )
    head = ["Name", "State", "Queue", "Interval", "Next run", "Last run", "Last error"]
    if not ctx.read_only:
        head.append("")
    body = table(head, rows, empty="No recurring job. Declare one with @tinydj.every(...).")
    return frame(ctx, "recurring", "Recurring jobs", body)


def queues_page(
    ctx: Ctx,
    counts: Sequence[QueueCounts],
    paused: dict[str, datetime],
    counted: str | None = None,
) -> str:
    known = {c.queue for c in counts}
    extra = [QueueCounts(queue=q) for q in sorted(paused) if q not in known]
    all_counts = sorted([*counts, *extra], key=lambda c: c.queue)
    actions = not ctx.read_only
    form = ""
    if actions:
        form = (
            f'<form class="filters" method="post" action="{esc(ctx.url("queues/pause"))}">'
            f'<input type="hidden" name="csrf" value="{esc(ctx.csrf)}">'
            '<label class="grow">Pause a queue by name<input name="queue" required '
            'placeholder="queue name"></label>'
            '<button class="btn warn" type="submit">Pause</button></form>'
        )
    note = (
        '<p class="muted small">Workers stop taking jobs from a paused queue at their next poll; '
        "jobs already running finish.</p>"
    )
    body = (
        table(
            _queue_head(actions),
            _queue_rows(ctx, all_counts, paused, actions),
            empty="No queue yet.",
            numeric=range(2, 7),
        )
        + note
        + (f'<p class="muted small">{esc(counted)}</p>' if counted else "")
        + form
    )
    return frame(ctx, "queues", "Queues", body, refresh=True)


def workers_page(
    ctx: Ctx, workers: Sequence[WorkerInfo], held: dict[str, list[Job]], lock_timeout: float
) -> str:
    live = sum(1 for w in workers if w.alive)
    known = {w.name for w in workers}
    orphans = {k: v for k, v in held.items() if k not in known}
    extra = ""
    if orphans:
        rows = [
            f'<tr><td class="mono">{esc(name)}</td>'
            f"<td>{' '.join(_job_link(ctx, j) for j in jobs[:20])}</td></tr>"
            for name, jobs in sorted(orphans.items())
        ]
        extra = (
            '<section class="panel"><div class="panel-head"><h2>Jobs held by unregistered '
            "workers</h2></div>" + table(["Locked by", "Jobs"], rows) + "</section>"
        )
    body = (
        f'<p class="muted small">{live} live of {len(workers)} registered. A worker is dead when '
        "its "
        f"heartbeat is older than {lock_timeout:g} s; its jobs are taken over once their leases "
        "expire.</p>"
        + table(
            _WORKER_HEAD,
            _worker_rows(ctx, workers, held),
            empty="No worker has registered.",
            numeric=(3, 4),
        )
        + extra
    )
    return frame(ctx, "workers", "Workers", body, refresh=True)


def not_found(ctx: Ctx, what: str) -> str:
    body = f'<p>{esc(what)}</p><p><a href="{esc(ctx.url("jobs"))}">Back to the jobs</a></p>'
    return frame(ctx, "", "Not found", body)
