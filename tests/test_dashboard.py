"""The dashboard's WSGI app without a browser: pages, filters, actions, security."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import dashboard_jobs
import pytest

import tinydj
from tinydj import control
from tinydj.dashboard import Dashboard, cache, make_app, queries, serve
from tinydj.job import COLUMNS
from tinydj.testing import FakeClock


class Client:
    """Calls a WSGI app the way a browser would: keeps cookies, posts forms."""

    def __init__(self, app: Callable[..., Any], script_name: str = "") -> None:
        self.app = app
        self.script_name = script_name
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        data: dict[str, Any] | list[tuple[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        raw, _, query = path.partition("?")
        body = urlencode(data or {}, doseq=True).encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": self.script_name,
            "PATH_INFO": raw,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8642",
            "HTTP_HOST": "127.0.0.1:8642",
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for key, value in (headers or {}).items():
            environ["HTTP_" + key.upper().replace("-", "_")] = value
        seen: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
            seen["status"], seen["headers"] = status, response_headers

        content = b"".join(self.app(environ, start_response))
        response = Response(int(seen["status"][:3]), seen["headers"], content.decode())
        for name, value in response.headers:
            if name == "Set-Cookie":
                jar: SimpleCookie = SimpleCookie()
                jar.load(value)
                for key, morsel in jar.items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.coded_value
        return response

    def get(self, path: str, **headers: str) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, data: dict[str, Any] | None = None, **headers: str) -> Response:
        if "tinydj_csrf" not in self.cookies:
            self.get("/")
        form = {"csrf": self.cookies.get("tinydj_csrf", ""), **(data or {})}
        return self.request("POST", path, form, headers)


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], text: str) -> None:
        self.status = status
        self.headers = headers
        self.text = text

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@pytest.fixture(autouse=True)
def _fresh_control_tables(config: tinydj.Config) -> None:
    dashboard_jobs.drop_control_tables(config)


@pytest.fixture
def made(config: tinydj.Config, clock: FakeClock) -> dict[str, Any]:
    return dashboard_jobs.populate(config, clock)


@pytest.fixture
def client(config: tinydj.Config, made: dict[str, Any]) -> Client:
    return Client(make_app(config))


def _ids(text: str) -> list[int]:
    """Job ids listed in a jobs table, in order."""
    return [int(i) for i in re.findall(r'<td><a class="mono" href="[^"]*/jobs/(\d+)">', text)]


def _sql(config: tinydj.Config, sql: str, params: tuple[Any, ...] = ()) -> Any:
    return [tuple(r) for r in config.store.query(sql, params).fetchall()]


# -- pages -------------------------------------------------------------------


def test_overview_shows_counts_chart_and_live_workers(client: Client) -> None:
    page = client.get("/")
    assert page.status == 200
    assert "<h1>Overview</h1>" in page.text
    # 6 mail + 2 recurring due; 1 running (reports); 4 scheduled images; 4 failed.
    cards = dict(
        re.findall(r'<span class="k">(\w+)</span><span class="v">([^<]+)</span>', page.text)
    )
    assert cards == {"ready": "8", "running": "1", "scheduled": "4", "failed": "4", "lag": "0s"}
    assert page.text.count('class="c-ok"') == 60  # one bar per minute of the last hour
    assert dashboard_jobs.WORKER in page.text
    assert "host:web-2" not in page.text  # dead: not among the live workers
    for queue in ("billing", "default", "images", "mail", "reports"):
        assert f">{queue}</a>" in page.text


def test_overview_lag_is_the_age_of_the_oldest_ready_job(
    config: tinydj.Config, clock: FakeClock, made: dict[str, Any]
) -> None:
    clock.advance(125)
    page = Client(make_app(config)).get("/")
    assert '<span class="k">lag</span><span class="v">2m 5s</span>' in page.text


def test_chart_says_it_fills_once_workers_report(config: tinydj.Config) -> None:
    page = Client(make_app(config)).get("/")
    assert "The chart fills as workers report" in page.text
    assert "No jobs yet." in page.text


def test_jobs_lists_newest_first(client: Client, made: dict[str, Any]) -> None:
    page = client.get("/jobs")
    ids = _ids(page.text)
    assert ids == sorted(ids, reverse=True) and len(ids) == 17


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("ready", {"mail": 6, "default": 2}),
        ("scheduled", {"images": 4}),
        ("running", {"reports": 1}),
        ("failed", {"billing": 3, "default": 1}),
        ("recurring", {"default": 2}),
    ],
)
def test_filter_by_state(
    config: tinydj.Config, client: Client, state: str, expected: dict[str, int]
) -> None:
    page = client.get(f"/jobs?state={state}")
    queues = re.findall(r"</span></td><td>([\w-]+)</td>", page.text)
    assert {q: queues.count(q) for q in set(queues)} == expected


def test_filter_by_queue_function_text_and_id(client: Client, made: dict[str, Any]) -> None:
    assert len(_ids(client.get("/jobs?queue=images").text)) == 4
    assert len(_ids(client.get("/jobs?function=dashboard_jobs:charge").text)) == 3
    assert _ids(client.get("/jobs?q=ACCT-001").text) == [made["failed"][1]]  # case-insensitive
    assert _ids(client.get("/jobs?q=insufficient+funds&queue=billing").text) == sorted(
        made["failed"], reverse=True
    )
    assert _ids(client.get(f"/jobs?id={made['xss']}").text) == [made["xss"]]
    assert _ids(client.get(f"/jobs?id=%23{made['xss']}").text) == [made["xss"]]
    assert _ids(client.get("/jobs?q=100%25_off").text) == []  # wildcards are literal


def test_bad_filters_say_what_is_wrong(client: Client) -> None:
    page = client.get("/jobs?id=abc")
    assert page.status == 400 and "id must be a number" in page.text
    page = client.get("/jobs?state=zombie")
    assert page.status == 400 and "unknown state" in page.text


def test_keyset_pagination_walks_every_job_once(config: tinydj.Config) -> None:
    dashboard_jobs.send_welcome.send_later_many([(f"u{i}@example.com",) for i in range(120)])
    client = Client(make_app(config))
    seen: list[int] = []
    path = "/jobs"
    pages = 0
    while path:
        page = client.get(path)
        seen += _ids(page.text)
        found = re.search(r'rel="next" href="([^"]+)"', page.text)
        path = found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 120
    last = client.get(f"/jobs?before={seen[99] + 0}")
    newer = re.search(r'rel="prev" href="([^"]+)"', last.text)
    assert newer is not None
    back = client.get(newer.group(1).replace("&amp;", "&"))
    assert _ids(back.text) == seen[50:100]


def test_search_reads_a_window_of_ids_per_page(
    config: tinydj.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SCAN_WINDOW", 10)
    needle = dashboard_jobs.send_welcome.send_later("needle@example.com").id
    dashboard_jobs.send_welcome.send_later_many([(f"hay{i}@example.com",) for i in range(25)])
    client = Client(make_app(config))
    page = client.get("/jobs?q=needle")
    assert _ids(page.text) == [] and "Search older" in page.text
    assert "0 matches in ids" in page.text
    path = "/jobs?q=needle"
    for _ in range(5):
        found = re.search(r'rel="next" href="([^"]+)"', client.get(path).text)
        if found is None:
            break
        path = found.group(1).replace("&amp;", "&")
        if needle in _ids(client.get(path).text):
            break
    assert needle in _ids(client.get(path).text)


def test_job_page_shows_every_column_handler_and_whole_error(
    client: Client, made: dict[str, Any]
) -> None:
    page = client.get(f"/jobs/{made['failed'][0]}")
    assert page.status == 200
    for column in COLUMNS:
        if column not in ("handler", "last_error"):
            assert f"<th>{column}</th>" in page.text
    assert "function: dashboard_jobs:charge" in page.text
    assert "Traceback (most recent call last)" in page.text
    assert "insufficient funds (1999 cents)" in page.text
    assert "1 failed run" in page.text


def test_missing_job_and_page_are_404(client: Client) -> None:
    assert client.get("/jobs/999999").status == 404
    assert "finished jobs are deleted" in client.get("/jobs/999999").text
    assert client.get("/nothing-here").status == 404


def test_recurring_page(client: Client, made: dict[str, Any]) -> None:
    page = client.get("/recurring")
    assert "dashboard_jobs:cleanup_sessions" in page.text
    assert "every 15m" in page.text and "every 1d" in page.text
    assert page.text.count(">Run now</button>") == 2


def test_queues_and_workers_pages(client: Client, made: dict[str, Any]) -> None:
    queues = client.get("/queues")
    assert queues.text.count(">Pause</button>") == 5 + 1  # and "pause a queue by name"
    workers = client.get("/workers")
    assert "1 live of 2 registered" in workers.text
    assert 'class="badge b-dead">dead' in workers.text
    assert f"/jobs/{made['running']}" in workers.text  # the job it holds


def test_static_files(client: Client) -> None:
    css = client.get("/static/style.css")
    assert (
        css.status == 200
        and css.header(
            "Content-Type",
        )
        == "text/css; charset=utf-8"
    )
    assert client.get("/static/app.js").header("Content-Type") == "text/javascript; charset=utf-8"
    assert client.get("/static/../app.py").status == 404


def test_head_and_other_methods(client: Client) -> None:
    assert client.request("HEAD", "/").text == ""
    assert client.request("DELETE", "/jobs/1").status == 405


# -- actions -----------------------------------------------------------------


def test_retry_a_failed_job(config: tinydj.Config, client: Client, made: dict[str, Any]) -> None:
    target = made["failed"][0]
    response = client.post(f"/jobs/{target}/retry")
    assert response.status == 303
    assert response.header("Location") == f"/jobs/{target}"
    assert _sql(config, "SELECT failed_at, attempts FROM delayed_jobs WHERE id = ?", (target,)) == [
        (None, 0)
    ]
    assert "will run again now" in client.get(f"/jobs/{target}").text  # the flash message
    assert "will run again now" not in client.get(f"/jobs/{target}").text  # shown once


def test_retry_refuses_a_job_that_has_not_failed(client: Client, made: dict[str, Any]) -> None:
    client.post(f"/jobs/{made['running']}/retry")
    assert "has not failed" in client.get("/").text
    assert tinydj.get_job(made["running"]).locked_by == dashboard_jobs.WORKER  # type: ignore[union-attr]


def test_delete_a_job_but_not_a_running_one(client: Client, made: dict[str, Any]) -> None:
    client.post(f"/jobs/{made['failed'][0]}/delete")
    assert tinydj.get_job(made["failed"][0]) is None
    client.post(f"/jobs/{made['running']}/delete")
    assert tinydj.get_job(made["running"]) is not None


def test_run_now_makes_a_scheduled_job_due(
    config: tinydj.Config, clock: FakeClock, client: Client
) -> None:
    (scheduled,) = [j for j in tinydj.list_jobs(queue="images")][:1]
    assert scheduled.run_at > clock()
    client.post(f"/jobs/{scheduled.id}/run")
    assert tinydj.get_job(scheduled.id).run_at == clock()  # type: ignore[union-attr]


def test_pause_and_resume_a_recurring_job(
    config: tinydj.Config, clock: FakeClock, client: Client, made: dict[str, Any]
) -> None:
    target = made["recurring"][0]
    client.post(f"/jobs/{target}/pause", {"next": "recurring"})
    assert tinydj.get_job(target).run_at == queries.PAUSED_RUN_AT  # type: ignore[union-attr]
    tinydj.Worker(config=config, queues=["default"]).work_off()  # runs the other one
    assert tinydj.get_job(target).last_run_at is None  # type: ignore[union-attr]
    page = client.get("/recurring")
    assert ">Resume</button>" in page.text and 'b-paused">paused' in page.text
    client.post(f"/jobs/{target}/resume")
    assert tinydj.get_job(target).run_at == clock()  # type: ignore[union-attr]


def test_bulk_retry_and_delete_touch_only_failed_jobs(
    config: tinydj.Config, client: Client, made: dict[str, Any]
) -> None:
    first, second, third = made["failed"]
    response = client.post(
        "/failed/bulk", {"action": "retry", "ids": [first, second, made["running"]]}
    )
    assert response.status == 303
    assert "Retried 2 jobs (1 skipped: no longer failed)" in client.get("/failed").text
    assert {j.id for j in tinydj.list_jobs(failed=True)} == {third, made["xss"]}
    client.post("/failed/bulk", {"action": "delete", "ids": [third, made["xss"], first]})
    assert tinydj.list_jobs(failed=True) == []
    assert tinydj.get_job(first) is not None  # retried above, no longer failed: kept


def test_bulk_needs_an_action_and_ids(client: Client) -> None:
    assert client.post("/failed/bulk", {"action": "explode", "ids": [1]}).status == 400
    client.post("/failed/bulk", {"action": "retry"})
    assert "No job selected" in client.get("/failed").text


def test_failed_page_has_select_all_and_bulk_buttons(client: Client) -> None:
    page = client.get("/failed")
    assert 'id="pick-all"' in page.text
    assert page.text.count('name="ids"') == 4
    assert ">Retry selected</button>" in page.text and ">Delete selected</button>" in page.text


def test_pause_and_resume_a_queue(config: tinydj.Config, client: Client) -> None:
    client.post("/queues/mail/pause")
    client.post("/queues/pause", {"queue": "empty-queue"})
    assert set(control.paused_queues(store=config.store)) == {"mail", "empty-queue"}
    page = client.get("/queues")
    assert "empty-queue" in page.text and page.text.count(">Resume</button>") == 2
    client.post("/queues/mail/resume")
    assert set(control.paused_queues(store=config.store)) == {"empty-queue"}
    assert client.post("/queues/pause", {"queue": " "}).status == 400


def test_next_must_stay_inside_the_app(client: Client, made: dict[str, Any]) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/abs"):
        response = client.post(f"/jobs/{made['failed'][0]}/retry", {"next": target})
        assert response.header("Location") == f"/jobs/{made['failed'][0]}"


# -- security ----------------------------------------------------------------


def test_post_without_or_with_a_wrong_csrf_token_is_refused(
    config: tinydj.Config, client: Client, made: dict[str, Any]
) -> None:
    target = made["failed"][0]
    client.get("/")
    assert client.request("POST", f"/jobs/{target}/retry", {}).status == 403
    assert client.request("POST", f"/jobs/{target}/retry", {"csrf": "x" * 43}).status == 403
    fresh = Client(client.app)  # no cookie at all: a forged form from elsewhere
    assert fresh.request("POST", f"/jobs/{target}/retry", {"csrf": "x" * 43}).status == 403
    assert tinydj.get_job(target).failed  # type: ignore[union-attr]


def test_cross_origin_posts_are_refused(client: Client, made: dict[str, Any]) -> None:
    target = made["failed"][0]
    assert client.post(f"/jobs/{target}/retry", Origin="http://evil.example").status == 403
    assert client.post(f"/jobs/{target}/retry", Referer="http://evil.example/x").status == 403
    assert client.post(f"/jobs/{target}/retry", Sec_Fetch_Site="cross-site").status == 403
    assert tinydj.get_job(target).failed  # type: ignore[union-attr]
    same = client.post(f"/jobs/{target}/retry", Origin="http://127.0.0.1:8642")
    assert same.status == 303


def test_cookies_are_httponly_and_strict(client: Client) -> None:
    fresh = Client(client.app)
    cookie = fresh.get("/").header("Set-Cookie") or ""
    assert "tinydj_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_read_only_shows_no_action_and_refuses_posts(
    config: tinydj.Config, made: dict[str, Any]
) -> None:
    client = Client(make_app(config, read_only=True))
    for path in ("/", "/jobs", "/failed", f"/jobs/{made['failed'][0]}", "/recurring", "/queues"):
        page = client.get(path)
        assert page.status == 200 and 'method="post"' not in page.text, path
        assert "read-only" in page.text
    assert client.post(f"/jobs/{made['failed'][0]}/retry").status == 403
    assert client.post("/queues/mail/pause").status == 403
    assert control.paused_queues(store=config.store) == {}
    assert tinydj.get_job(made["failed"][0]).failed  # type: ignore[union-attr]


def test_token_is_required_when_set(config: tinydj.Config, made: dict[str, Any]) -> None:
    client = Client(make_app(config, token="s3cret"))
    denied = client.get("/failed")
    assert denied.status == 401 and 'name="token"' in denied.text
    assert "card declined" not in denied.text
    assert client.get("/failed?token=wrong").status == 401
    assert client.get("/static/style.css").status == 200  # the login page needs its style
    login = client.get("/failed?token=s3cret&queue=billing")
    assert login.status == 303 and login.header("Location") == "/failed?queue=billing"
    assert "s3cret" not in client.cookies["tinydj_session"]
    assert client.get("/failed").status == 200
    assert client.post(f"/jobs/{made['failed'][0]}/retry").status == 303
    bearer = Client(client.app)
    assert bearer.get("/", Authorization="Bearer s3cret").status == 200
    assert bearer.get("/", Authorization="Bearer nope").status == 401


def test_token_from_the_environment(
    config: tinydj.Config, monkeypatch: pytest.MonkeyPatch, made: dict[str, Any]
) -> None:
    monkeypatch.setenv("TINYDJ_DASHBOARD_TOKEN", "from-env")
    client = Client(make_app(config))
    assert client.get("/").status == 401
    assert client.get("/", Authorization="Bearer from-env").status == 200


def test_job_data_is_escaped_everywhere(client: Client, made: dict[str, Any]) -> None:
    for path in (f"/jobs/{made['xss']}", "/failed", "/jobs", "/jobs?q=script"):
        page = client.get(path)
        assert dashboard_jobs.XSS not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
        assert "script-src 'self'" in (page.header("Content-Security-Policy") or "")
    echoed = client.get('/jobs?q="><script>x()</script>')
    assert "<script>x()" not in echoed.text


def test_queue_names_are_escaped(config: tinydj.Config) -> None:
    dashboard_jobs.send_welcome.with_options(queue='<img src=x onerror="1">').send_later("a")
    page = Client(make_app(config)).get("/")
    assert "<img src=x" not in page.text and "&lt;img src=x" in page.text


# -- mounting ----------------------------------------------------------------


def test_links_follow_script_name(config: tinydj.Config, made: dict[str, Any]) -> None:
    client = Client(make_app(config), script_name="/ops/jobs")
    page = client.get("/failed")
    assert 'href="/ops/jobs/static/style.css"' in page.text
    assert f'href="/ops/jobs/jobs/{made["failed"][0]}"' in page.text
    response = client.post(f"/jobs/{made['failed'][0]}/retry")
    assert response.header("Location") == f"/ops/jobs/jobs/{made['failed'][0]}"
    assert "Path=/ops/jobs/" in (
        Client(client.app, "/ops/jobs").get("/").header("Set-Cookie") or ""
    )


def test_prefix_is_stripped_from_path_info(config: tinydj.Config, made: dict[str, Any]) -> None:
    client = Client(make_app(config, prefix="/admin/queue/"))
    page = client.get("/admin/queue/failed")
    assert "<h1>Failed jobs</h1>" in page.text
    assert 'href="/admin/queue/recurring"' in page.text


def test_make_app_takes_a_url(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    app = make_app(url)
    assert isinstance(app, Dashboard)
    page = Client(app).get("/")
    assert page.status == 200 and "other.sqlite3" in page.text


def test_database_url_password_is_masked(config: tinydj.Config) -> None:
    app = make_app(config)
    page = Client(app).get("/")
    assert config.url is not None and tinydj.redact.mask(config.url) in page.text


# -- serving and counting -----------------------------------------------------


def test_serve_prints_its_url_and_warns_without_a_token(
    config: tinydj.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsgiref.simple_server import WSGIServer

    def stop(self: WSGIServer) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(WSGIServer, "serve_forever", stop)
    out = io.StringIO()
    serve(config, port=0, out=out)
    assert re.fullmatch(
        r"tinydj dashboard on http://127\.0\.0\.1:\d+/ \(Ctrl-C to stop\)\n", out.getvalue()
    )
    out = io.StringIO()
    serve(config, host="0.0.0.0", port=0, read_only=True, out=out)
    assert out.getvalue().startswith("tinydj read-only dashboard on http://0.0.0.0:")
    assert "no token is set" in out.getvalue()
    out = io.StringIO()
    serve(config, host="0.0.0.0", port=0, token="t", out=out)
    assert "warning" not in out.getvalue()


def test_slow_counts_are_served_from_the_cache_and_refreshed(
    config: tinydj.Config, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "SLOW", -1.0)  # every count counts as slow
    ticks = [0.0]
    counts = cache.CountsCache(monotonic=lambda: ticks[0])
    dashboard_jobs.send_welcome.send_later("a@example.com")
    assert not counts.get(config.store, clock()).cached
    dashboard_jobs.send_welcome.send_later("b@example.com")
    stale = counts.get(config.store, clock())
    assert stale.cached and stale.counts[0].ready == 1
    ticks[0] = cache.MAX_AGE + 1
    assert counts.get(config.store, clock()).counts[0].ready == 1  # stale, refresh started
    deadline = time.monotonic() + 10
    while counts.get(config.store, clock()).counts[0].ready != 2:
        assert time.monotonic() < deadline, "the background count never finished"
        time.sleep(0.01)


def test_cached_counts_say_how_old_they_are(
    config: tinydj.Config, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, made: dict[str, Any]
) -> None:
    monkeypatch.setattr(cache, "SLOW", -1.0)
    client = Client(make_app(config))
    client.get("/")
    clock.advance(timedelta(seconds=3))
    assert "Counts are from 3 s ago" in client.get("/queues").text
