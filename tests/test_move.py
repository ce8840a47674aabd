"""``tinydj move`` / ``tinydj.move.move_jobs``: jobs from SQLite into another database.

The source is an SQLite file; the target is each database (``db_url``: SQLite,
and PostgreSQL / MariaDB when their URLs are set). What is checked every time:
the target holds exactly the source's jobs (matched through the journal
``tinydj_moves``), every column but the lock kept, none twice, none lost, and
the source is empty. Interruptions are made at each step (an exception from
the ``progress`` hook, after the step committed) and, with 100,000 jobs, by
SIGKILL of a real ``tinydj move`` process half way.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest
import sample_jobs
from conftest import MYSQL_URL, PG_URL, START
from proc_helpers import Processes, read_lines, wait_until

import tinydj
from tinydj.cli import main
from tinydj.config import open_database
from tinydj.job import COLUMNS as JOB_COLUMNS
from tinydj.move import JOURNAL, MARKER_PREFIX, MoveReport, format_report, move_jobs
from tinydj.schedule import utcnow
from tinydj.store import NewJob, Store
from tinydj.testing import FakeClock

# Every column of the table but the id and the lock: what a move must keep.
COLUMNS = tuple(c for c in JOB_COLUMNS if c not in ("id", "locked_at", "locked_by"))
_SELECT = "SELECT id, " + ", ".join(f'"{c}"' for c in COLUMNS) + " FROM delayed_jobs"
Row = tuple[Any, ...]


class Boom(Exception):
    """The mover 'dies' here (raised from the progress hook)."""


# -- fixtures and helpers --------------------------------------------------------


def _store(url: str) -> Store:
    return Store(open_database(url))


def _drop_journal(url: str) -> None:
    db = open_database(url)
    try:
        db.execute_sql(f"DROP TABLE IF EXISTS {JOURNAL}")
    finally:
        db.close()


@pytest.fixture
def target_url(db_url: str) -> Iterator[str]:
    """A target database (each kind) with neither delayed_jobs nor the journal."""
    _drop_journal(db_url)
    yield db_url
    _drop_journal(db_url)


def _server(url: str | None, variable: str) -> str:
    if not url:
        pytest.skip(f"{variable} not set")
    db = open_database(url)
    try:
        db.execute_sql("DROP TABLE IF EXISTS delayed_jobs")
        db.execute_sql(f"DROP TABLE IF EXISTS {JOURNAL}")
    finally:
        db.close()
    return url


@pytest.fixture
def source_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'source.sqlite3'}"


def _norm(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == " ":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def rows_of(url: str) -> dict[int, Row]:
    """Every row of delayed_jobs by id, times as datetimes."""
    store = _store(url)
    try:
        rows = store.query(_SELECT).fetchall()
        return {int(r[0]): tuple(_norm(v) for v in r[1:]) for r in rows}
    finally:
        store.db.close()


def journal_of(url: str) -> list[tuple[int, int]]:
    store = _store(url)
    try:
        rows = store.query(f"SELECT source_id, target_id FROM {JOURNAL}").fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]
    finally:
        store.db.close()


def fill(url: str, n: int, clock: FakeClock | None = None) -> dict[int, Row]:
    """``n`` jobs in the source, in every state; returns them by id.

    Of every 100 ids: 1 failed (attempts, error, failed_at), 1 scheduled
    tomorrow, 1 recurring (key, interval, last run), 1 with priority, queue and
    interruptions set; the rest ready.
    """
    config = tinydj.configure(url, clock=clock or FakeClock(START))
    sample_jobs.record.send_later_many([(f"tok{i:06d}",) for i in range(n)])
    s = config.store
    day, hour = s._t(START + timedelta(days=1)), s._t(START - timedelta(hours=1))
    with s.db.atomic():
        s.query(
            "UPDATE delayed_jobs SET failed_at = ?, attempts = 25, "
            "last_error = 'boom ' || id WHERE id % 100 = 1",
            (s._t(START),),
        )
        s.query("UPDATE delayed_jobs SET run_at = ? WHERE id % 100 = 2", (day,))
        s.query(
            "UPDATE delayed_jobs SET reoccur_in = '1h', \"key\" = 'rec-' || id, "
            "last_run_at = ? WHERE id % 100 = 3",
            (hour,),
        )
        s.query(
            "UPDATE delayed_jobs SET priority = 7, queue = 'mail', interruptions = 2 "
            "WHERE id % 100 = 4"
        )
    config.store.close()
    return rows_of(url)


def expected_states(before: dict[int, Row]) -> dict[str, int]:
    counts = dict.fromkeys(("ready", "scheduled", "failed", "recurring"), 0)
    for row in before.values():
        if row[COLUMNS.index("failed_at")] is not None:
            counts["failed"] += 1
        elif row[COLUMNS.index("reoccur_in")] is not None:
            counts["recurring"] += 1
        elif row[COLUMNS.index("run_at")] > START:
            counts["scheduled"] += 1
        else:
            counts["ready"] += 1
    return counts


def assert_moved_exactly(before: dict[int, Row], source_url: str, target_url: str) -> None:
    """The target holds each source job once, every column kept; the source is empty."""
    left = rows_of(source_url)
    assert not left, f"{len(left)} job(s) still in the source, e.g. {sorted(left)[:5]}"
    journal = journal_of(target_url)
    source_ids = Counter(s for s, _ in journal)
    twice = [s for s, n in source_ids.items() if n > 1]
    assert not twice, f"journaled twice: {twice[:10]}"
    lost = sorted(set(before) - set(source_ids))
    assert not lost, f"{len(lost)} job(s) lost, e.g. {lost[:10]}"
    assert set(source_ids) == set(before)
    after = rows_of(target_url)
    assert len(after) == len(before), f"target holds {len(after)} rows, source had {len(before)}"
    target_ids = [t for _, t in journal]
    assert len(set(target_ids)) == len(target_ids), "two source jobs map to one target row"
    wrong = [(s, before[s], after.get(t)) for s, t in journal if after.get(t) != before[s]]
    assert not wrong, f"{len(wrong)} row(s) changed, e.g. {wrong[:2]}"


def move(source_url: str, target_url: str, **options: Any) -> MoveReport:
    source, target = _store(source_url), _store(target_url)
    options.setdefault("clock", FakeClock(START))
    try:
        return move_jobs(source, target, **options)
    finally:
        source.db.close()
        target.db.close()


# -- what is moved, and how ------------------------------------------------------


def test_move_keeps_every_column_and_counts_each_state(source_url: str, target_url: str) -> None:
    before = fill(source_url, 1000)
    report = move(source_url, target_url, batch=128)
    assert_moved_exactly(before, source_url, target_url)
    assert report.moved == expected_states(before)
    assert report.moved == {"ready": 970, "scheduled": 10, "failed": 10, "recurring": 10}
    assert (report.total, report.running, report.newer, report.resumed) == (1000, 0, 0, 0)
    assert report.batches == 8


def test_jobs_of_live_workers_stay_and_of_dead_ones_move(source_url: str, target_url: str) -> None:
    before = fill(source_url, 10)
    s = _store(source_url)
    live, dead = s._t(START - timedelta(seconds=5)), s._t(START - timedelta(minutes=5))
    s.query("UPDATE delayed_jobs SET locked_by = 'w-live', locked_at = ? WHERE id = 5", (live,))
    s.query("UPDATE delayed_jobs SET locked_by = 'w-dead', locked_at = ? WHERE id = 6", (dead,))
    s.db.close()
    report = move(source_url, target_url, lock_timeout=30)
    assert report.running == 1 and report.total == 9
    assert list(rows_of(source_url)) == [5]
    (target_id,) = [t for src, t in journal_of(target_url) if src == 6]
    moved = dict(zip(COLUMNS, rows_of(target_url)[target_id], strict=True))
    assert moved["interruptions"] == before[6][COLUMNS.index("interruptions")] + 1
    assert "Interrupted: worker w-dead" in moved["last_error"]
    # Once its worker let go, a second run moves it too.
    s = _store(source_url)
    s.query("UPDATE delayed_jobs SET locked_by = NULL, locked_at = NULL WHERE id = 5")
    s.db.close()
    assert move(source_url, target_url).total == 1
    assert not rows_of(source_url) and len(rows_of(target_url)) == 10


def test_a_recurring_key_the_target_has_keeps_the_targets_row(
    source_url: str, target_url: str
) -> None:
    before = fill(source_url, 200)  # keys rec-3, rec-103
    target = _store(target_url)
    target.ensure_schema()
    mine = target.upsert(
        NewJob("function: target_version\n", "default", 0, START, "rec-103", "2h"),
        START,
        START,
    )
    target.db.close()
    report = move(source_url, target_url)
    assert report.kept_target == 1 and report.total == 200
    after = rows_of(target_url)
    assert len(after) == 200  # 199 copies and the target's own row
    assert after[mine.id][COLUMNS.index("handler")] == "function: target_version\n"
    assert dict(journal_of(target_url))[103] == mine.id
    assert not rows_of(source_url) and before[103][COLUMNS.index("key")] == "rec-103"


@pytest.mark.parametrize("step", ["claimed", "copied", "deleted"])
def test_interrupted_after_any_step_the_next_run_finishes_exactly(
    source_url: str, target_url: str, step: str
) -> None:
    before = fill(source_url, 1000)
    seen = Counter[str]()

    def die(name: str, rows: int) -> None:
        seen[name] += 1
        if name == step and seen[name] == 3:
            raise Boom(f"killed after {name}")

    with pytest.raises(Boom):
        move(source_url, target_url, batch=100, progress=die)
    left = rows_of(source_url)
    claimed = _store(source_url).query(
        "SELECT COUNT(*) FROM delayed_jobs WHERE locked_by LIKE ?", (MARKER_PREFIX + "%",)
    )
    assert int(claimed.fetchone()[0]) == {"claimed": 100, "copied": 100, "deleted": 0}[step]
    assert len(left) == {"claimed": 800, "copied": 800, "deleted": 700}[step]
    report = move(source_url, target_url, batch=100)
    assert report.resumed == {"claimed": 100, "copied": 100, "deleted": 0}[step]
    assert_moved_exactly(before, source_url, target_url)


def test_jobs_enqueued_during_a_pass_wait_for_the_next_one(
    source_url: str, target_url: str
) -> None:
    before = fill(source_url, 300)
    late: list[int] = []

    def enqueue(name: str, rows: int) -> None:
        if name == "deleted" and not late:
            late.extend(j.id for j in sample_jobs.record.send_later_many([("late",)] * 5))

    report = move(source_url, target_url, batch=100, progress=enqueue)
    assert (report.total, report.newer, report.running) == (300, 5, 0)
    assert sorted(rows_of(source_url)) == late
    before.update(rows_of(source_url))
    assert move(source_url, target_url).total == 5
    assert_moved_exactly(before, source_url, target_url)


def test_until_empty_also_moves_what_arrives_meanwhile(source_url: str, target_url: str) -> None:
    before = fill(source_url, 300)
    late: list[int] = []

    def enqueue(name: str, rows: int) -> None:
        if name == "deleted" and len(late) < 10:
            late.extend(j.id for j in sample_jobs.record.send_later_many([("late",)] * 5))

    report = move(source_url, target_url, batch=100, progress=enqueue, until_empty=True)
    assert (report.total, report.newer, report.running) == (310, 0, 0)
    assert len(rows_of(target_url)) == 310 and not rows_of(source_url)
    assert len(late) == 10 and set(before) < {s for s, _ in journal_of(target_url)}


def test_source_and_target_must_differ(source_url: str, target_url: str) -> None:
    with pytest.raises(ValueError, match="same database"):
        move(target_url, target_url)
    fill(source_url, 3)
    with pytest.raises(ValueError, match="same database"):
        move(source_url, source_url)
    with pytest.raises(ValueError, match="batch"):
        move(source_url, source_url.replace("source", "other"), batch=0)
    assert len(rows_of(source_url)) == 3


# -- workers running on both sides ------------------------------------------------


def test_workers_on_both_sides_run_each_job_once(
    source_url: str, target_url: str, procs: Processes, tmp_path: Path
) -> None:
    """A worker drains the source while the move runs, another the target: every
    job runs exactly once, on one side, and a job moved never runs in the source."""
    trace = tmp_path / "trace.txt"
    tinydj.configure(source_url)
    tokens = [f"job{i:04d}" for i in range(400)]
    jobs = sample_jobs.traced.send_later_many([(str(trace), t, 0.01) for t in tokens])
    token_of = {j.id: t for j, t in zip(jobs, tokens, strict=True)}
    tinydj.get_config().store.close()
    target = _store(target_url)
    target.ensure_schema()
    target.db.close()
    procs.work("source-worker", source_url, "--threads", "2")
    procs.work("target-worker", target_url, "--threads", "2")
    wait_until(
        lambda: sum(line.startswith("done") for line in read_lines(trace)) >= 10,
        60,
        "the source worker to run some jobs",
        details=lambda: procs.output("source-worker", 2000),
    )
    report = move(
        source_url, target_url, batch=25, until_empty=True, poll_interval=0.05, clock=utcnow
    )
    assert not rows_of(source_url)
    wait_until(
        lambda: sum(line.startswith("done") for line in read_lines(trace)) >= len(tokens),
        90,
        "every job to run",
        details=lambda: procs.output("target-worker", 2000),
    )
    procs.procs["source-worker"].send_signal(signal.SIGTERM)
    procs.procs["target-worker"].send_signal(signal.SIGTERM)
    procs.assert_exit("source-worker", 0, 30)
    procs.assert_exit("target-worker", 0, 30)
    done = [line.split() for line in read_lines(trace) if line.startswith("done")]
    ran = Counter(d[1] for d in done)
    assert [t for t, n in ran.items() if n > 1] == [] and set(ran) == set(tokens)
    moved = {token_of[s] for s, _ in journal_of(target_url)}
    by_pid = {d[1]: d[2] for d in done}
    source_pid = str(procs.procs["source-worker"].pid)
    assert 0 < len(moved) < len(tokens) and report.total == len(moved)
    assert all(by_pid[t] != source_pid for t in moved), "a moved job ran in the source"
    assert all(by_pid[t] == source_pid for t in set(tokens) - moved)


# -- 100,000 jobs, the mover killed half way ----------------------------------------


def _count(url: str) -> int:
    store = _store(url)
    try:
        return int(store.query("SELECT COUNT(*) FROM delayed_jobs").fetchone()[0])
    except peewee.DatabaseError:  # not created yet
        return 0
    finally:
        store.db.close()


@pytest.mark.parametrize("server", ["postgres", "mysql"])
def test_100k_jobs_mover_killed_half_way_then_resumed(
    source_url: str, procs: Processes, server: str
) -> None:
    if server == "postgres":
        url = _server(PG_URL, "TINYDJ_TEST_PG_URL")
    else:
        url = _server(MYSQL_URL, "TINYDJ_TEST_MYSQL_URL")
    n = 100_000
    before = fill(source_url, n)
    mover = procs.spawn("mover", "move", "--database", source_url, "--to", url)
    half = wait_until(
        lambda: (c := _count(url)) >= n // 2 and c,
        120,
        "the target to hold half of the jobs",
        interval=0.05,
        details=lambda: procs.output("mover", 2000),
    )
    assert mover.poll() is None, f"the mover ended before it was killed:\n{procs.output('mover')}"
    mover.send_signal(signal.SIGKILL)
    assert mover.wait(30) == -signal.SIGKILL
    assert n // 2 <= half < n
    left = len(rows_of(source_url))
    assert 0 < left < n
    report = move(source_url, url)
    assert report.total == left
    assert_moved_exactly(before, source_url, url)


# -- the command line -------------------------------------------------------------


def test_cli_move_prints_a_line_per_state(
    source_url: str, target_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fill(source_url, 200)
    argv = ["move", "--database", source_url, "--to", target_url, "--batch", "50"]
    status = main(argv, clock=FakeClock(START))
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert out[0].startswith("moving jobs from sqlite:///") and out[0].endswith(target_url)
    assert out[1:5] == [
        "ready:           194 moved",
        "scheduled:         2 moved",
        "failed:            2 moved",
        "recurring:         2 moved",
    ]
    assert out[5:7] == [
        "running:           0 left in the source",
        "newer:             0 left in the source",
    ]
    assert out[7].startswith("moved 200 jobs in ") and out[7].endswith("4 batches)")
    assert_moved_exactly(before, source_url, target_url)


def test_cli_move_errors_are_one_line_without_password(
    source_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(source_url, 3)
    bad = "postgresql://mover:s3cret@127.0.0.1:1/nowhere"
    status = main(["move", "--database", source_url, "--to", bad])
    captured = capsys.readouterr()
    assert status == 1
    assert "s3cret" not in captured.out + captured.err
    assert "mover:***@" in captured.out
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("tinydj: ")
    assert len(rows_of(source_url)) == 3
    assert main(["move", "--database", source_url, "--to", bad, "--batch", "0"]) == 2
    assert main(["move", "--database", source_url]) == 2
    assert "--to" in capsys.readouterr().err


def test_a_claimed_job_unlocked_in_the_source_is_reported_as_doubled(
    source_url: str, target_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retry that ignores locks (``Store.retry``) makes a copied job runnable in
    the source again: the mover cannot delete it and says so."""
    fill(source_url, 100)  # id 1 failed
    done: list[str] = []

    def retry_there(name: str, rows: int) -> None:
        if name == "copied" and not done:
            done.append(name)
            s = _store(source_url)
            assert s.retry(1, START)
            s.db.close()

    report = move(source_url, target_url, progress=retry_there)
    assert report.doubled == [1] and report.total == 100
    assert (report.running, report.newer) == (0, 0)
    assert list(rows_of(source_url)) == [1]  # left there, not copied a second time
    assert len(rows_of(target_url)) == 100
    assert 1 in dict(journal_of(target_url))
    assert any(
        line.startswith("doubled:") and "source ids 1" in line for line in format_report(report)
    )


def test_limited_jobs_move_with_their_limits(source_url: str, target_url: str) -> None:
    import limit_jobs

    tinydj.configure(source_url)
    limit_jobs.import_for.send_later("acme", 1)
    limit_jobs.import_for.send_later("acme", 2)
    tinydj.get_config().store.close()
    report = move(source_url, target_url)
    assert report.moved == {"ready": 2, "scheduled": 0, "failed": 0, "recurring": 0}
    config = tinydj.configure(target_url)
    rows = config.store.query("SELECT name, max_running FROM tinydj_concurrency").fetchall()
    assert [(str(n), int(m)) for n, m in rows] == [("limit_jobs:import_for/acme", 1)]
    limit_jobs.reset()
    assert tinydj.Worker(config=config).work_off() == (2, 0)
    assert limit_jobs.calls == [("acme", 1), ("acme", 2)]
    config.store.close()
