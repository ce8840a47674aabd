"""The dashboard as a WSGI application: routing, security and responses.

Security, in the order a request meets it:

- an optional token (``token=`` or ``$TINYDJ_DASHBOARD_TOKEN``): sent once as
  ``?token=...`` (or an ``Authorization: Bearer`` header), then kept in an
  HttpOnly, SameSite=Strict cookie holding an HMAC of it, not the token;
- every change is a POST carrying a CSRF token equal to the ``tinydj_csrf``
  cookie (double submit), refused when ``Origin`` (or ``Referer``) names
  another host or ``Sec-Fetch-Site`` says cross-site;
- ``read_only`` renders no action and answers every POST with 403;
- every value is escaped (see ``render.esc``) and a Content-Security-Policy
  allows scripts and styles from the app's own static files only.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.resources
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import peewee

from .. import control
from ..config import Config, get_config, open_database
from ..redact import mask
from ..schedule import to_naive_utc, utcnow
from ..store import Store
from . import pages, queries
from .cache import CountsCache, Snapshot
from .render import Ctx, esc, frame

__all__ = ["ENV_TOKEN", "Dashboard", "make_app"]

#: Environment variable holding the token, when ``token`` is not given.
ENV_TOKEN = "TINYDJ_DASHBOARD_TOKEN"
#: Largest form body read (bulk actions send at most a page of ids).
MAX_BODY = 256 * 1024

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC = {
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_JOB_ACTION = re.compile(r"^jobs/(\d+)/(retry|delete|run|pause|resume)$")
_QUEUE_ACTION = re.compile(r"^queues/(.+)/(pause|resume)$")


class HTTPError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    environ: Environ
    path: str
    base: str
    query: dict[str, list[str]]
    cookies: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name) or self.form.get(name)
        value = values[0].strip() if values else ""
        return value or None


@dataclass
class Response:
    status: str = "200 OK"
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def _cookies(environ: Environ) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def _cookie(name: str, value: str, path: str, *, max_age: int | None = None) -> tuple[str, str]:
    jar: SimpleCookie = SimpleCookie()
    jar[name] = value
    morsel = jar[name]
    morsel["path"] = path
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if max_age is not None:
        morsel["max-age"] = max_age
    return ("Set-Cookie", morsel.OutputString())


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.lstrip("#"))
    except ValueError:
        raise HTTPError("400 Bad Request", f"{name} must be a number, not {value!r}") from None
    if not 0 <= number < 2**63:
        raise HTTPError("400 Bad Request", f"{name} is out of range")
    return number


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

    @staticmethod
    def _resolve(database: str | peewee.Database | Config | None) -> Config | Store | None:
        if database is None or isinstance(database, Config):
            return database
        db = open_database(database) if isinstance(database, str) else database
        memory = isinstance(db, peewee.SqliteDatabase) and db.database == ":memory:"
        return Store(db, serialize=memory)

    def _backend(self) -> tuple[Store, datetime, str]:
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
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"),
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy", _CSP),
            *response.headers,
        ]
        if not any(k == "Cache-Control" for k, _ in response.headers):
            headers.append(("Cache-Control", "no-store"))
        start_response(response.status, headers)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body]

    def _request(self, environ: Environ) -> Request:
        base = environ.get("SCRIPT_NAME", "").rstrip("/")
        path = environ.get("PATH_INFO", "") or "/"
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix) :] or "/"
            base += self.prefix
        elif self.prefix and not base.endswith(self.prefix):
            base += self.prefix
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        return Request(environ, path.strip("/"), base, query, _cookies(environ))

    def _handle(self, environ: Environ) -> Response:
        req = self._request(environ)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if req.path.startswith("static/") and method in ("GET", "HEAD"):
            return self._static_file(req.path[len("static/") :])
        login = self._check_token(req)
        if login is not None:
            return login
        if method in ("GET", "HEAD"):
            return self._get(req)
        if method == "POST":
            return self._post(req)
        raise HTTPError("405 Method Not Allowed", f"{method} is not allowed here")

    # -- security -------------------------------------------------------------

    def _session(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"tinydj-dashboard", hashlib.sha256).hexdigest()

    def _check_token(self, req: Request) -> Response | None:
        if not self.token:
            return None
        given = req.query.get("token", [None])[0]
        auth = req.environ.get("HTTP_AUTHORIZATION", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(
            auth[7:].strip().encode(), self.token.encode()
        ):
            return None
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            # Keep it in a cookie and drop it from the address bar.
            rest = {k: v for k, v in req.query.items() if k != "token"}
            location = req.base + "/" + req.path
            if rest:
                from urllib.parse import urlencode

                location += "?" + urlencode(rest, doseq=True)
            return Response(
                "303 See Other",
                headers=[
                    ("Location", location),
                    _cookie("tinydj_session", self._session(), req.base + "/"),
                ],
            )
        cookie = req.cookies.get("tinydj_session", "")
        if cookie and hmac.compare_digest(cookie.encode(), self._session().encode()):
            return None
        wrong = '<p class="flash bad">That token is not right.</p>' if given is not None else ""
        body = (
            f'{wrong}<form class="login" method="get" action="{esc(req.base + "/" + req.path)}">'
            '<label>Dashboard token<input type="password" name="token" autofocus required></label>'
            '<button class="btn primary" type="submit">Open</button></form>'
        )
        ctx = Ctx(req.base, utcnow(), True, "", "")
        page = frame(ctx, "", "Token required", body)
        return Response("401 Unauthorized", page.encode(), headers=[("WWW-Authenticate", "Bearer")])

    def _check_post(self, req: Request) -> None:
        if self.read_only:
            raise HTTPError("403 Forbidden", "This dashboard is read-only.")
        env = req.environ
        if env.get("HTTP_SEC_FETCH_SITE", "") == "cross-site":
            raise HTTPError("403 Forbidden", "Cross-site request refused.")
        host = env.get("HTTP_HOST") or f"{env.get('SERVER_NAME', '')}:{env.get('SERVER_PORT', '')}"
        origin = env.get("HTTP_ORIGIN") or env.get("HTTP_REFERER")
        if origin and origin != "null" and urlsplit(origin).netloc != host:
            raise HTTPError("403 Forbidden", "Cross-site request refused (Origin does not match).")
        sent = (req.form.get("csrf") or [""])[0]
        cookie = req.cookies.get("tinydj_csrf", "")
        if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            raise HTTPError(
                "403 Forbidden", "Missing or wrong CSRF token: reload the page and try again."
            )

    def _csrf(self, req: Request) -> tuple[str, list[tuple[str, str]]]:
        token = req.cookies.get("tinydj_csrf", "")
        if re.fullmatch(r"[\w-]{32,64}", token):
            return token, []
        token = secrets.token_urlsafe(32)
        return token, [_cookie("tinydj_csrf", token, req.base + "/")]

    # -- pages ----------------------------------------------------------------

    def _ctx(self, req: Request) -> tuple[Ctx, Store, list[tuple[str, str]]]:
        store, now, database = self._backend()
        csrf, headers = self._csrf(req)
        message = req.cookies.get("tinydj_flash") or None
        if message:
            headers.append(_cookie("tinydj_flash", "", req.base + "/", max_age=0))
        return Ctx(req.base, now, self.read_only, csrf, database, message), store, headers

    def _get(self, req: Request) -> Response:
        ctx, store, headers = self._ctx(req)
        path = req.path
        status = "200 OK"
        if path == "":
            html = self._overview(ctx, store)
        elif path in ("jobs", "failed"):
            html, status = self._jobs(ctx, store, req, failed_view=path == "failed")
        elif path.startswith("jobs/") and path[5:].isdigit():
            job = store.get(int(path[5:]))
            if job is None:
                html = pages.not_found(
                    ctx, f"Job #{path[5:]} does not exist (finished jobs are deleted)."
                )
                status = "404 Not Found"
            else:
                html = pages.job_page(ctx, job)
        elif path == "recurring":
            html = pages.recurring_page(ctx, queries.recurring_jobs(store))
        elif path == "queues":
            snap = self._counts.get(store, ctx.now)
            html = pages.queues_page(
                ctx, snap.counts, control.paused_queues(store=store), _age(ctx, snap)
            )
        elif path == "workers":
            workers = control.list_workers(now=ctx.now, lock_timeout=self.lock_timeout, store=store)
            html = pages.workers_page(ctx, workers, queries.held_jobs(store), self.lock_timeout)
        else:
            html = pages.not_found(ctx, f"There is no page /{path}.")
            status = "404 Not Found"
        return Response(status, html.encode(), headers=headers)

    def _overview(self, ctx: Ctx, store: Store) -> str:
        snap = self._counts.get(store, ctx.now)
        paused = control.paused_queues(store=store)
        points = control.outcomes(since=ctx.now - timedelta(minutes=59), until=ctx.now, store=store)
        workers = control.list_workers(now=ctx.now, lock_timeout=self.lock_timeout, store=store)
        held = queries.held_jobs(store)
        return pages.overview_page(ctx, snap.counts, paused, points, workers, held, _age(ctx, snap))

    def _jobs(self, ctx: Ctx, store: Store, req: Request, *, failed_view: bool) -> tuple[str, str]:
        state = "failed" if failed_view else req.arg("state")
        error = None
        try:
            flt = queries.JobFilter(
                state=state,
                queue=req.arg("queue"),
                function=req.arg("function"),
                text=req.arg("q"),
                job_id=_int(req.arg("id"), "id"),
            )
        except (ValueError, HTTPError) as exc:
            error = exc.message if isinstance(exc, HTTPError) else str(exc)
            flt = queries.JobFilter(state="failed" if failed_view else None)
        page = queries.list_jobs(
            store,
            flt,
            ctx.now,
            before=_int(req.arg("before"), "before"),
            after=_int(req.arg("after"), "after"),
        )
        html = pages.jobs_page(
            ctx, flt, page, queries.queue_names(store), failed_view=failed_view, error=error
        )
        return html, "400 Bad Request" if error else "200 OK"

    # -- actions --------------------------------------------------------------

    def _post(self, req: Request) -> Response:
        req.form = self._read_form(req.environ)
        self._check_post(req)
        store, now, _ = self._backend()
        message, default_next = self._act(req, store, now)
        target = req.arg("next") or default_next
        if not re.fullmatch(r"[\w\-/]*(\?[^\s\\]*)?", target) or target.startswith("/"):
            target = default_next
        headers = [
            ("Location", f"{req.base}/{target}"),
            _cookie("tinydj_flash", message, req.base + "/"),
        ]
        return Response("303 See Other", headers=headers)

    @staticmethod
    def _read_form(environ: Environ) -> dict[str, list[str]]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            raise HTTPError("413 Content Too Large", "The form is too large.")
        data = environ["wsgi.input"].read(length) if length > 0 else b""
        return parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True)

    def _act(self, req: Request, store: Store, now: datetime) -> tuple[str, str]:
        path = req.path
        if match := _JOB_ACTION.fullmatch(path):
            return self._job_action(store, int(match[1]), match[2], now)
        if path == "failed/bulk":
            return self._bulk(req, store, now)
        if path == "queues/pause":
            queue = req.arg("queue")
            if not queue:
                raise HTTPError("400 Bad Request", "Give the name of the queue to pause.")
            control.pause(queue, now=now, store=store)
            return f"Paused queue {queue}.", "queues"
        if match := _QUEUE_ACTION.fullmatch(path):
            queue, verb = match[1], match[2]
            if verb == "pause":
                control.pause(queue, now=now, store=store)
                return f"Paused queue {queue}.", "queues"
            control.resume(queue, store=store)
            return f"Resumed queue {queue}.", "queues"
        raise HTTPError("404 Not Found", f"There is no action /{path}.")

    @staticmethod
    def _job_action(store: Store, job_id: int, verb: str, now: datetime) -> tuple[str, str]:
        page = f"jobs/{job_id}"
        job = store.get(job_id)
        if job is None:
            return f"Job #{job_id} no longer exists.", "jobs"
        if verb == "retry":
            if job.failed_at is None:
                return f"Job #{job_id} has not failed: nothing to retry.", page
            if not _retry(store, job_id, now):
                return f"Job #{job_id} is held (a worker or `tinydj move`): not retried.", page
            return f"Job #{job_id} will run again now.", page
        if verb == "delete":
            if job.locked_at is not None and job.failed_at is None:
                return f"Job #{job_id} is running: it cannot be deleted now.", page
            store.delete(job_id)
            return f"Deleted job #{job_id}.", "failed" if job.failed_at else "jobs"
        if verb == "run":
            done = queries.run_now(store, job_id, now)
            return (
                f"Job #{job_id} is due now." if done else f"Job #{job_id} cannot run now."
            ), page
        done = queries.set_recurring_paused(store, job_id, verb == "pause", now)
        if not done:
            return f"Job #{job_id} cannot be {verb}d now (not recurring, running or failed).", page
        return f"Job #{job_id} {'paused' if verb == 'pause' else 'resumed: due now'}.", page

    @staticmethod
    def _bulk(req: Request, store: Store, now: datetime) -> tuple[str, str]:
        action = req.arg("action")
        ids = sorted({_int(v, "id") or 0 for v in req.form.get("ids", []) if v.strip()})
        if action not in ("retry", "delete"):
            raise HTTPError("400 Bad Request", "Choose retry or delete.")
        if not ids:
            return "No job selected.", "failed"
        done = 0
        for job_id in ids:
            job = store.get(job_id)
            if job is None or job.failed_at is None:
                continue  # only failed jobs are touched here
            done += _retry(store, job_id, now) if action == "retry" else store.delete(job_id)
        verb = "Retried" if action == "retry" else "Deleted"
        skipped = len(ids) - done
        tail = f" ({skipped} skipped: no longer failed)" if skipped else ""
        return f"{verb} {done} job{'s' if done != 1 else ''}{tail}.", "failed"

    # -- the rest --------------------------------------------------------------

    def _static_file(self, name: str) -> Response:
        if name not in _STATIC:
            raise HTTPError("404 Not Found", "No such file.")
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
        req = self._request(environ)
        ctx = Ctx(req.base, utcnow(), True, "", "")
        body = (
            f'<p class="flash bad">{esc(message)}</p><p><a href="{esc(ctx.url())}">Overview</a></p>'
        )
        return Response(status, frame(ctx, "", status.split(" ", 1)[1], body).encode())


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


def _retry(store: Store, job_id: int, now: datetime) -> bool:
    """Retry a failed job unless something holds a live lock on it (a worker,
    or ``tinydj move`` copying it elsewhere): it must not run twice."""
    live_after = now - timedelta(seconds=control.DEFAULT_LOCK_TIMEOUT)
    return store.states.retry_unless_held(job_id, now, live_after)
