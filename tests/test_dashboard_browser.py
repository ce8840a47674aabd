"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Screenshots of every page go to ``$TINYDJ_SCREENSHOTS`` (default: a pytest
temporary directory). Playwright never downloads a browser here: it launches
``/usr/bin/chromium``. Without it (or without Playwright) these tests skip,
except in CI, where they must run.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dashboard_jobs
import pytest

import tinydj
from tinydj import control
from tinydj.dashboard import make_server_for

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

if os.environ.get("CI"):
    missing = None  # in CI a missing browser fails the tests below
elif sync_playwright is None:
    missing = "playwright is not installed (pip install -e '.[dev]')"
elif not shutil.which(CHROMIUM):
    missing = "chromium is not installed (apt-get install chromium)"
else:
    missing = None
pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing is not None, reason=str(missing))]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None, "playwright is missing (pip install -e '.[dev]')"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("TINYDJ_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _fresh_control_tables(config: tinydj.Config) -> None:
    dashboard_jobs.drop_control_tables(config)


@pytest.fixture
def made(config: tinydj.Config, clock: Any) -> dict[str, Any]:
    return dashboard_jobs.populate(config, clock)


@pytest.fixture
def server(config: tinydj.Config, made: dict[str, Any]) -> Iterator[str]:
    """The dashboard served on a free port of 127.0.0.1, in a thread."""
    httpd = make_server_for(config, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    tab.on("dialog", on_dialog)
    tab.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        context.close()


def _db_name(config: tinydj.Config) -> str:
    return type(config.database).__name__.replace("Database", "").lower()


def test_every_page_renders_and_is_captured(
    page: Page,
    server: str,
    shots: Path,
    config: tinydj.Config,
    clock: Any,
    made: dict[str, Any],
) -> None:
    clock.advance(95)  # some lag to show; the live worker stays live
    control.heartbeat(dashboard_jobs.WORKER, now=clock(), store=config.store)
    suffix = "" if _db_name(config) == "sqlite" else f"-{_db_name(config)}"
    pages = {
        "overview": ("/", "Overview"),
        "jobs": ("/jobs", "Jobs"),
        "failed": ("/failed", "Failed jobs"),
        "job": (f"/jobs/{made['failed'][0]}", f"Job #{made['failed'][0]}"),
        "recurring": ("/recurring", "Recurring jobs"),
        "queues": ("/queues", "Queues"),
        "workers": ("/workers", "Workers"),
    }
    for name, (path, title) in pages.items():
        response = page.goto(server + path)
        assert response is not None and response.status == 200, path
        assert page.locator("h1").inner_text() == title
        page.screenshot(path=str(shots / f"{name}{suffix}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server + "/")
    assert page.locator(".card").count() == 5
    page.screenshot(path=str(shots / f"overview-phone{suffix}.png"), full_page=True)
    assert not page.dialogs  # type: ignore[attr-defined]


def test_filter_failed_open_one_and_retry(
    page: Page, server: str, config: tinydj.Config, made: dict[str, Any]
) -> None:
    page.goto(server + "/jobs")
    page.select_option("select[name=state]", "failed")
    page.fill("input[name=queue]", "billing")
    page.click("button:has-text('Filter')")
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() == 3
    assert "card declined" in rows.first.inner_text()
    target = made["failed"][-1]  # newest first
    page.click(f"a:has-text('#{target}')")
    assert page.locator("h1").inner_text() == f"Job #{target}"
    assert "insufficient funds" in page.locator("pre.err-text").inner_text()
    page.click("button:has-text('Retry')")
    assert "will run again now" in page.locator(".flash").inner_text()
    row = config.database.execute_sql(
        "SELECT failed_at, attempts FROM delayed_jobs WHERE id = %s"
        if _db_name(config) != "sqlite"
        else "SELECT failed_at, attempts FROM delayed_jobs WHERE id = ?",
        (target,),
    ).fetchone()
    assert row == (None, 0)


def test_bulk_retry_with_select_all(
    page: Page, server: str, config: tinydj.Config, made: dict[str, Any]
) -> None:
    page.goto(server + "/failed")
    assert page.locator("#bulk button").first.is_disabled()
    page.check("#pick-all")
    assert page.locator("#picked").inner_text() == "4 selected"
    page.click("button:has-text('Retry selected')")
    assert "Retried 4 jobs" in page.locator(".flash").inner_text()
    assert tinydj.list_jobs(failed=True) == []


def test_pause_a_queue_from_the_page(page: Page, server: str, config: tinydj.Config) -> None:
    page.goto(server + "/queues")
    row = page.locator("tr", has_text="mail")
    row.locator("button:has-text('Pause')").click()
    assert "Paused queue mail" in page.locator(".flash").inner_text()
    assert "mail" in control.paused_queues(store=config.store)
    page.locator("tr", has_text="mail").locator("button:has-text('Resume')").click()
    assert "mail" not in control.paused_queues(store=config.store)


def test_delete_asks_first(page: Page, server: str, made: dict[str, Any]) -> None:
    page.goto(server + f"/jobs/{made['failed'][0]}")
    page.click("button:has-text('Delete')")
    assert page.dialogs and "cannot be undone" in page.dialogs[0]  # type: ignore[attr-defined]
    assert tinydj.get_job(made["failed"][0]) is None


def test_script_in_an_argument_is_shown_not_run(
    page: Page, server: str, made: dict[str, Any]
) -> None:
    for path in (f"/jobs/{made['xss']}", "/failed", "/jobs?q=script"):
        page.goto(server + path)
        assert dashboard_jobs.XSS in page.locator("main").inner_text()
    assert page.evaluate("typeof window.alert") == "function"
    assert not page.dialogs  # type: ignore[attr-defined]


def test_a_worker_stops_taking_jobs_of_a_paused_queue(
    page: Page, server: str, config: tinydj.Config
) -> None:
    page.goto(server + "/queues")
    page.locator("tr", has_text="mail").locator("button:has-text('Pause')").click()
    page.wait_for_load_state()
    assert "mail" in control.paused_queues(store=config.store)
    # A worker reads the paused queues when it starts reserving (then at
    # most once per poll interval): a fresh one each time here.
    tinydj.Worker(config=config).work_off()
    assert len(tinydj.list_jobs(queue="mail")) == 6
    page.locator("tr", has_text="mail").locator("button:has-text('Resume')").click()
    page.wait_for_load_state()
    assert "mail" not in control.paused_queues(store=config.store)
    tinydj.Worker(config=config).work_off()
    assert tinydj.list_jobs(queue="mail") == []
