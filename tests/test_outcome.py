"""``outcome.decide``: retry, fail or reschedule, driven with no database.

Jobs are built by hand and time is a parameter: each case states the job,
what became of its run, and what must be written and logged.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

import pytest

from tinydj.job import Job
from tinydj.outcome import (
    BROKEN_DELAY,
    Kind,
    Outcome,
    Policy,
    decide,
    describe,
    next_run,
)

NOW = datetime(2030, 1, 1, 12, 0, 0)
POLICY = Policy(max_attempts=3, backoff=lambda attempts: timedelta(seconds=10 * attempts))


def make_job(**changes: object) -> Job:
    job = Job(
        id=7,
        priority=0,
        attempts=0,
        handler="tinydj: 1\nfunction: app:work\n",
        last_error=None,
        run_at=NOW - timedelta(minutes=1),
        locked_at=NOW,
        locked_by="w",
        failed_at=None,
        reoccur_in=None,
        last_run_at=None,
        created_at=NOW,
        updated_at=NOW,
        queue="default",
        key=None,
    )
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


def recurring(**changes: object) -> Job:
    planned = datetime(2030, 1, 1, 9, 0, 0)  # three periods behind NOW
    fields: dict[str, object] = {"reoccur_in": "1h", "key": "app:hourly", "run_at": planned}
    return make_job(**{**fields, **changes})


def test_a_plain_success_deletes_the_row() -> None:
    decision = decide(make_job(), Outcome.success(0.5), NOW, POLICY)
    assert decision.write is None and not decision.final
    assert decision.level == logging.INFO and decision.message.startswith("COMPLETED")


def test_a_failure_is_retried_after_the_policy_delay() -> None:
    outcome = Outcome.failure(ValueError("boom"), 0.1)
    decision = decide(make_job(attempts=1), outcome, NOW, POLICY)
    assert decision.write is not None
    assert decision.write.attempts == 2 and decision.write.failed_at is None
    assert decision.write.run_at == NOW + timedelta(seconds=20)
    assert (decision.write.last_error or "").startswith("ValueError: boom\n")
    assert decision.level == logging.WARNING and not decision.final


def test_a_reschedule_at_hook_sets_the_retry_time() -> None:
    later = NOW + timedelta(days=1)
    outcome = Outcome.failure(ValueError("x"), 0.1, retry_at=later)
    decision = decide(make_job(), outcome, NOW, POLICY)
    assert decision.write is not None and decision.write.run_at == later


def test_the_last_attempt_fails_for_good_with_the_jobs_own_limit() -> None:
    job = make_job(attempts=4)  # beyond the policy's 3, within the job's 6
    retried = decide(job, Outcome.failure(ValueError("x"), 0.1, max_attempts=6), NOW, POLICY)
    assert retried.write is not None and retried.write.failed_at is None
    final = decide(job, Outcome.failure(ValueError("x"), 0.1, max_attempts=5), NOW, POLICY)
    assert final.final and final.level == logging.ERROR
    assert final.write is not None and final.write.failed_at == NOW
    assert final.write.run_at == job.run_at and final.write.attempts == 5


def test_a_recurring_row_moves_to_its_next_period_boundary() -> None:
    job = recurring(attempts=2)
    success = decide(job, Outcome.success(0.1), NOW, POLICY)
    assert success.write is not None
    assert success.write.run_at == datetime(2030, 1, 1, 13, 0, 0)  # missed periods skipped
    assert success.write.attempts == 0 and success.write.last_run_at == NOW
    failure = decide(job, Outcome.failure(RuntimeError("x"), 0.1), NOW, POLICY)
    assert failure.write is not None and failure.write.failed_at is None
    assert failure.write.run_at == datetime(2030, 1, 1, 13, 0, 0) and failure.write.attempts == 3


def test_next_run_is_the_first_boundary_after_now() -> None:
    assert next_run(recurring(), NOW) == datetime(2030, 1, 1, 13, 0, 0)
    assert next_run(recurring(), datetime(2030, 1, 1, 13, 0, 0)) == datetime(2030, 1, 1, 14)
    with pytest.raises(ValueError):
        next_run(recurring(reoccur_in="often"), NOW)


def test_an_unloadable_job_fails_at_once() -> None:
    outcome = Outcome.unloadable(ImportError("no module named app"), "handler text")
    decision = decide(make_job(interruptions=2), outcome, NOW, POLICY)
    assert decision.write is not None and decision.write.failed_at == NOW
    assert decision.write.interruptions == 2 and decision.write.attempts == 1
    assert (decision.write.last_error or "").startswith("Job failed to load: no module")
    assert not decision.once


def test_an_unloadable_recurring_row_is_logged_once_with_the_command_that_removes_it() -> None:
    outcome = Outcome.unloadable(ImportError("app has no hourly"), "handler text")
    decision = decide(recurring(), outcome, NOW, POLICY)
    assert decision.once and decision.level == logging.ERROR
    assert "tinydj delete %s" in decision.message and 7 in decision.args
    assert decision.write is not None and decision.write.failed_at is None
    assert decision.write.run_at == datetime(2030, 1, 1, 13, 0, 0)


def test_a_job_that_kills_its_workers_is_failed_without_running() -> None:
    decision = decide(make_job(interruptions=5), Outcome.gave_up(5), NOW, POLICY)
    assert decision.write is not None and decision.write.failed_at == NOW
    assert "Interrupted 5 times" in (decision.write.last_error or "")


def test_a_broken_outcome_cannot_raise_even_with_a_bad_interval() -> None:
    outcome = Outcome.broken(ValueError("invalid interval 'often'"))
    decision = decide(recurring(reoccur_in="often"), outcome, NOW, POLICY)
    assert decision.write is not None and decision.write.failed_at is None
    assert decision.write.run_at == NOW + BROKEN_DELAY
    assert decide(make_job(), outcome, NOW, POLICY).write.failed_at == NOW  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (3, "SystemExit: exit code 3"),
        (None, "SystemExit: exit code 0"),
        ("bye", "SystemExit: bye (exit code 1)"),
    ],
)
def test_sys_exit_is_described_by_its_exit_code(code: object, text: str) -> None:
    assert describe(SystemExit(code)) == text
    outcome = Outcome.failure(SystemExit(code), 0.0)
    assert outcome.kind is Kind.FAILED and (outcome.error or "").startswith(text + "\n")


def test_success_is_the_same_frozen_outcome_as_the_constructor_builds() -> None:
    outcome = Outcome.success(0.25)
    assert outcome == Outcome(Kind.SUCCEEDED, 0.25)
    assert (outcome.error, outcome.summary, outcome.max_attempts, outcome.hooks) == (
        None,
        "",
        None,
        None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.seconds = 1.0  # type: ignore[misc]
