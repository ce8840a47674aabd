"""Per-job timeouts and the graceful-shutdown deadline."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import sample_jobs
from proc_helpers import child_env, tinydj_command, wait_until

import tinydj
from tinydj.testing import FakeClock


def test_timeout_is_stored_in_the_handler(config: tinydj.Config) -> None:
    job = sample_jobs.sleepy.send_later(1)
    assert "timeout: 0.3" in job.handler
    assert "timeout: 9" in sample_jobs.record.with_options(timeout=9).send_later().handler
    with pytest.raises(ValueError):
        tinydj.job(timeout=0)


def test_thread_job_over_its_timeout_is_abandoned_and_counts_as_failed(
    config: tinydj.Config, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    sample_jobs.blocked.send_later(str(marker))
    started = time.monotonic()
    try:
        assert tinydj.Worker(config=config).work_off() == (0, 1)
        assert time.monotonic() - started < 5
        (row,) = tinydj.list_jobs()
        assert row.attempts == 1 and not row.failed and row.locked_by is None
        assert (row.last_error or "").startswith("JobTimeout: the job ran longer than its timeout")
        assert "abandoned" in (row.last_error or "")
    finally:
        marker.touch()  # let the abandoned thread end
    wait_until(lambda: ("blocked", "end") in sample_jobs.calls, 10, "the abandoned job to end")


def test_async_job_over_its_timeout_is_cancelled(config: tinydj.Config) -> None:
    sample_jobs.async_sleepy.send_later(30)
    started = time.monotonic()
    assert tinydj.Worker(config=config).work_off() == (0, 1)
    assert time.monotonic() - started < 5
    (row,) = tinydj.list_jobs()
    assert "cancelled" in (row.last_error or "")
    assert ("async_sleepy", "end") not in sample_jobs.calls


def test_main_thread_worker_stops_a_job_over_its_timeout(
    config: tinydj.Config, clock: FakeClock
) -> None:
    sample_jobs.sleepy.send_later(30)
    sample_jobs.record.send_later("next")
    started = time.monotonic()
    tinydj.Worker(config=config).run(exit_on_complete=True)
    assert time.monotonic() - started < 10
    assert ("sleepy", "start") in sample_jobs.calls
    assert ("sleepy", "end") not in sample_jobs.calls  # really stopped
    assert (("next",), {}) in sample_jobs.calls  # and the worker went on
    (row,) = tinydj.list_jobs()
    assert row.attempts == 1 and "was stopped" in (row.last_error or "")


def test_worker_job_timeout_is_the_default(config: tinydj.Config) -> None:
    sample_jobs.async_record.send_later(1)  # quick: unaffected
    assert tinydj.Worker(config=config, job_timeout=5).work_off() == (1, 0)
    with pytest.raises(ValueError):
        tinydj.Worker(config=config, job_timeout=-1)


def test_stop_with_a_deadline_releases_running_jobs(config: tinydj.Config, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    job = sample_jobs.wait_for_file.send_later(str(tmp_path / "out"), str(marker))
    worker = tinydj.Worker(config=config, threads=2).start()
    try:
        wait_until(lambda: (tmp_path / "out").exists(), 10, "the job to start")
        started = time.monotonic()
        worker.stop(timeout=0.3)
        assert time.monotonic() - started < 3
        row = tinydj.get_job(job.id)
        assert row is not None and row.locked_by is None and row.attempts == 0
    finally:
        marker.touch()


@pytest.mark.slow
def test_cli_shutdown_timeout_interrupts_the_job_in_the_main_thread(
    sqlite_url: str, tmp_path: Path
) -> None:
    tinydj.configure(sqlite_url)
    out, marker = tmp_path / "out", tmp_path / "never"
    job = sample_jobs.wait_for_file.send_later(str(out), str(marker))
    proc = subprocess.Popen(
        tinydj_command("work", "--database", sqlite_url, "-q", "--shutdown-timeout", "0.5"),
        env=child_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: out.exists() and "start" in out.read_text(), 10, "the job to start")
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert time.monotonic() - started < 5
        assert "done" not in out.read_text()  # interrupted, not finished
        row = tinydj.get_job(job.id)
        assert row is not None and row.locked_by is None and row.attempts == 0
        assert "INTERRUPTED" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
