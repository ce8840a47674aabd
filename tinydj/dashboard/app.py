"""The dashboard as a WSGI application: routing and responses.

Security, in the order a request meets it (see ``security``):

- an optional token (``token=`` or ``$TINYDJ_DASHBOARD_TOKEN``): sent once as
  ``?token=...`` (or an ``Authorization: Bearer`` header), then kept in an
  HttpOnly, SameSite=Strict cookie holding an HMAC of it, not the token;
- every change is a POST carrying a CSRF token equal to the ``tinydj_csrf``
  cookie (double submit), refused when ``Origin`` (or ``Referer``) names
  another host or ``Sec-Fetch-Site`` says cross-site;
- ``read_only`` renders no action and answers every POST with 403;
- every value is escaped (see ``render.esc``) and a Content-Security-Policy
  allows scripts and styles from the app's own static files only.

What each POST does is in ``actions``; the HTML of each page in ``pages``.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import peewee

from .. import control
from ..config import Config, get_config, open_database
from ..redact import mask
from ..schedule import to_naive_utc, utcnow
from ..store import Store
from . import actions, pages, queries, security
from .cache import CountsCache, Snapshot
from .render import Ctx, esc, frame
from .web import (
    Environ,
    HTTPError,
    Request,
    Response,
    StartResponse,
    cookie,
    number,
    parse_request,
    read_form,
)

__all__ = ["ENV_TOKEN", "Dashboard", "make_app"]

#: Environment variable holding the token, when ``token`` is not given.
ENV_TOKEN = "TINYDJ_DASHBOARD_TOKEN"

_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SAFETY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", _CSP),
]
_STATIC = {
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: A page: (html, status) for a request, from its context and store.
Page = Callable[[Ctx, Store, Request], tuple[str, str]]
_OK = "200 OK"
_NOT_FOUND = "404 Not Found"


class Dashboard:
    """The WSGI application returned by ``make_app``."""

    def __init__(
        self,
        database: str | peewee.Database | Config | None = None,
        *,
        read_only: bool = False,
        token: str | None = None,
        prefix: str = "",
        lock_timeout: float = control.DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self.read_only = read_only
        self.token = token if token is not None else (os.environ.get(ENV_TOKEN) or None)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.lock_timeout = lock_timeout
        self._source = self._resolve(database)
        self._static: dict[str, bytes] = {}
        self._counts = CountsCache()
        self._pages: dict[str, Page] = {
            "": self._overview,
            "jobs": self._jobs,
            "failed": self._jobs,
            "recurring": self._recurring,
            "queues": self._queues,
            "workers": self._workers,
        }

    @staticmethod
    def _resolve(database: str | peewee.Database | Config | None) -> Config | Store | None:
        if database is None or isinstance(database, Config):
            return database
        db = open_database(database) if isinstance(database, str) else database
        memory = isinstance(db, peewee.SqliteDatabase) and db.database == ":memory:"
        return Store(db, serialize=memory)

    def _backend(self) -> tuple[Store, datetime, str]:
        """The store, the time now and the database's name for the top bar."""
        source = self._source if self._source is not None else get_config()
        if isinstance(source, Config):
            now = to_naive_utc(source.clock())
            return source.store, now, mask(source.url or type(source.database).__name__)
        return source, utcnow(), mask(str(source.db.database))

    # -- WSGI ------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self._handle(environ)
        except HTTPError as exc:
            response = self._error(environ, exc.status, exc.message)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *_SAFETY_HEADERS,
            *response.headers,
        ]
        if not any(k == "Cache-Control" for k, _ in response.headers):
            headers.append(("Cache-Control", "no-store"))
        start_response(response.status, headers)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body]

    def _handle(self, environ: Environ) -> Response:
        req = parse_request(environ, self.prefix)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if req.path.startswith("static/") and method in ("GET", "HEAD"):
            return self._static_file(req.path[len("static/") :])
        login = security.login(req, self.token)
        if login is not None:
            return login
        if method in ("GET", "HEAD"):
            return self._get(req)
        if method == "POST":
            return self._post(req)
        raise HTTPError("405 Method Not Allowed", f"{method} is not allowed here")

    def _post(self, req: Request) -> Response:
        req.form = read_form(req.environ)
        security.check_post(req, read_only=self.read_only)
        store, now, _ = self._backend()
        return actions.respond(req, store, now)

    def _get(self, req: Request) -> Response:
        store, now, database = self._backend()
        csrf, headers = security.csrf(req)
        message = req.cookies.get(actions.FLASH_COOKIE) or None
        if message:  # shown once
            headers.append(cookie(actions.FLASH_COOKIE, "", req.base + "/", max_age=0))
        ctx = Ctx(req.base, now, self.read_only, csrf, database, message)
        page = self._pages.get(req.path)
        if page is None and req.path.startswith("jobs/") and req.path[5:].isdigit():
            page = self._job
        if page is None:
            html, status = pages.not_found(ctx, f"There is no page /{req.path}."), _NOT_FOUND
        else:
            html, status = page(ctx, store, req)
        return Response(status, html.encode(), headers=headers)

    # -- pages ----------------------------------------------------------------

    def _overview(self, ctx: Ctx, store: Store, req: Request) -> tuple[str, str]:
        snap = self._counts.get(store, ctx.now)
        paused = control.paused_queues(store=store)
        points = control.outcomes(since=ctx.now - timedelta(minutes=59), until=ctx.now, store=store)
        workers = control.list_workers(now=ctx.now, lock_timeout=self.lock_timeout, store=store)
        held = queries.held_jobs(store)
        html = pages.overview_page(ctx, snap.counts, paused, points, workers, held, _age(ctx, snap))
        return html, _OK

    def _jobs(self, ctx: Ctx, store: Store, req: Request) -> tuple[str, str]:
        failed_view = req.path == "failed"
        flt, error = _job_filter(req, failed_view=failed_view)
        before, after = number(req.arg("before"), "before"), number(req.arg("after"), "after")
        page = queries.list_jobs(store, flt, ctx.now, before=before, after=after)
        queues = queries.queue_names(store)
        html = pages.jobs_page(ctx, flt, page, queues, failed_view=failed_view, error=error)
        return html, "400 Bad Request" if error else _OK

    def _job(self, ctx: Ctx, store: Store, req: Request) -> tuple[str, str]:
        job_id = req.path[len("jobs/") :]
        job = store.get(int(job_id))
        if job is None:
            gone = f"Job #{job_id} does not exist (finished jobs are deleted)."
            return pages.not_found(ctx, gone), _NOT_FOUND
        return pages.job_page(ctx, job), _OK

    def _recurring(self, ctx: Ctx, store: Store, req: Request) -> tuple[str, str]:
        return pages.recurring_page(ctx, queries.recurring_jobs(store)), _OK

    def _queues(self, ctx: Ctx, store: Store, req: Request) -> tuple[str, str]:
        snap = self._counts.get(store, ctx.now)
        paused = control.paused_queues(store=store)
        return pages.queues_page(ctx, snap.counts, paused, _age(ctx, snap)), _OK

    def _workers(self, ctx: Ctx, store: Store, req: Request) -> tuple[str, str]:
        workers = control.list_workers(now=ctx.now, lock_timeout=self.lock_timeout, store=store)
        held = queries.held_jobs(store)
        return pages.workers_page(ctx, workers, held, self.lock_timeout), _OK

    # -- the rest --------------------------------------------------------------

    def _static_file(self, name: str) -> Response:
        if name not in _STATIC:
            raise HTTPError(_NOT_FOUND, "No such file.")
        data = self._static.get(name)
        if data is None:
            data = (
                importlib.resources.files(__package__ or "tinydj.dashboard") / "static" / name
            ).read_bytes()
            self._static[name] = data
        return Response(
            body=data, content_type=_STATIC[name], headers=[("Cache-Control", "max-age=300")]
        )

    def _error(self, environ: Environ, status: str, message: str) -> Response:
        req = parse_request(environ, self.prefix)
        ctx = Ctx(req.base, utcnow(), True, "", "")
        body = (
            f'<p class="flash bad">{esc(message)}</p><p><a href="{esc(ctx.url())}">Overview</a></p>'
        )
        return Response(status, frame(ctx, "", status.split(" ", 1)[1], body).encode())


def _job_filter(req: Request, *, failed_view: bool) -> tuple[queries.JobFilter, str | None]:
    """The job list's filter from the query, and what is wrong with it (then
    the filter is the view's default)."""
    try:
        flt = queries.JobFilter(
            state="failed" if failed_view else req.arg("state"),
            queue=req.arg("queue"),
            function=req.arg("function"),
            text=req.arg("q"),
            job_id=number(req.arg("id"), "id"),
        )
    except (ValueError, HTTPError) as exc:  # str(HTTPError) is its message
        return queries.JobFilter(state="failed" if failed_view else None), str(exc)
    return flt, None


def _age(ctx: Ctx, snap: Snapshot) -> str | None:
    """ "counted 3 s ago" when the counts come from the cache."""
    if not snap.cached:
        return None
    seconds = max(0, round((ctx.now - snap.counted_at).total_seconds()))
    return f"Counts are from {seconds} s ago (a large table is counted in the background)."


def make_app(
    database: str | peewee.Database | Config | None = None,
    *,
    read_only: bool = False,
    token: str | None = None,
    prefix: str = "",
    lock_timeout: float = control.DEFAULT_LOCK_TIMEOUT,
) -> Dashboard:
    """The dashboard as a WSGI application.

    ``database``: a URL, a ``peewee.Database`` or a ``tinydj.Config``; None
    uses tinydj's configuration (``tinydj.configure``) at each request. Mount
    it anywhere: links follow ``SCRIPT_NAME``, and ``prefix`` is stripped
    from ``PATH_INFO`` for servers that do not set it. ``read_only`` shows
    no action; ``token`` (default ``$TINYDJ_DASHBOARD_TOKEN``) is asked for
    before anything is shown. ``lock_timeout``: a worker whose heartbeat is
    older is shown as dead.

    >>> app = tinydj.dashboard.make_app(read_only=True)  # doctest: +SKIP
    """
    return Dashboard(
        database, read_only=read_only, token=token, prefix=prefix, lock_timeout=lock_timeout
    )
