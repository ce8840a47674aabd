"""SQLite planner statistics: the reserve seeks instead of walking future rows.

Without statistics SQLite cannot skip-scan ``delayed_jobs_ready (priority,
run_at, id)``, so a reserve that finds fewer due rows than its limit reads
every row scheduled for later. tinydj writes ``sqlite_stat1`` rows for its
reserve indexes when it creates the schema (``schema.write_planner_statistics``).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import peewee

import tinydj
from tinydj.schema import write_planner_statistics
from tinydj.store import Store

NOW = "2030-01-01 12:00:00.000000"
FUTURE_ROWS = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT {rows})
INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, created_at, updated_at)
SELECT 0, 0, 'tinydj: 1', strftime('%Y-%m-%d %H:%M:%S', '2099-01-01', '+' || x || ' seconds')
    || '.000000', 'default', '2030-01-01 00:00:00.000000', '2030-01-01 00:00:00.000000'
FROM n
"""


def _store(path: Path) -> Store:
    store = Store(peewee.SqliteDatabase(str(path), timeout=30))
    store.ensure_schema()
    return store


def _stats(path: Path) -> dict[str | None, str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'delayed_jobs'")
        return dict(rows.fetchall())
    finally:
        conn.close()


def _reserve_plan(store: Store, path: Path) -> str:
    """EXPLAIN QUERY PLAN of the reserve, on a fresh connection (as a new worker sees it)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "EXPLAIN QUERY PLAN " + store.sql.reserve(0, 0), (NOW, "w", NOW, NOW, 128)
        ).fetchall()
    finally:
        conn.close()
    return " | ".join(r[-1] for r in rows)


def test_fresh_table_gets_statistics(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    _store(path).db.close()
    stats = _stats(path)
    assert set(stats) == {None, "delayed_jobs_ready", "delayed_jobs_queue_ready"}
    # enough rows per priority for a skip-scan (SQLite needs at least 18)
    assert int(stats["delayed_jobs_ready"].split()[1]) >= 18
    assert int(stats["delayed_jobs_queue_ready"].split()[2]) >= 18


def test_reserve_seeks_past_future_rows(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = _store(path)
    store.db.execute_sql(FUTURE_ROWS.format(rows=50_000))
    plan = _reserve_plan(store, path)
    assert "USING INDEX delayed_jobs_ready (ANY(priority) AND run_at<?)" in plan, plan
    # the statistics change the plan, not the result: nothing is due
    assert _due_ids(path) == []


def _due_ids(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        sql = (
            "SELECT id FROM delayed_jobs WHERE failed_at IS NULL AND run_at <= ? "
            "ORDER BY priority, run_at, id LIMIT 128"
        )
        return [r[0] for r in conn.execute(sql, (NOW,)).fetchall()]
    finally:
        conn.close()


def test_analyze_of_a_nearly_empty_table_is_corrected(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = _store(path)
    store.db.execute_sql(FUTURE_ROWS.format(rows=3))
    store.db.execute_sql("ANALYZE delayed_jobs")  # "3 3 1 1": no skip-scan
    assert _stats(path)["delayed_jobs_ready"].split()[1] == "3"
    store.db.execute_sql(FUTURE_ROWS.format(rows=50_000))
    assert "ANY(priority)" not in _reserve_plan(store, path)
    # the next process to start (a new Store) puts representative figures back
    # (the table's row count too: "3 rows" makes the planner scan and sort)
    _store(path)
    assert int(_stats(path)["delayed_jobs_ready"].split()[1]) >= 18
    assert "ANY(priority)" in _reserve_plan(store, path)


def test_real_statistics_and_other_tables_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = _store(path)
    db = store.db
    db.execute_sql("CREATE TABLE app (a INTEGER, b INTEGER)")
    db.execute_sql("CREATE INDEX app_ab ON app (a, b)")
    db.execute_sql(FUTURE_ROWS.format(rows=20_000))
    db.execute_sql("INSERT INTO app SELECT value, value FROM json_each('[1,2,3]')")
    db.execute_sql("ANALYZE")
    before = _stats(path)
    assert before["delayed_jobs_ready"].startswith("20000 20000 ")
    assert not write_planner_statistics(_store(path).connection)
    assert _stats(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'app'").fetchall() == [
        ("3 1 1",)
    ]
    conn.close()


def test_inside_the_applications_transaction(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    config = tinydj.configure(f"sqlite:///{path}")
    try:
        with config.database.atomic():
            config.store.ensure_schema()
            assert config.store.connection.in_transaction()
        assert "delayed_jobs_ready" in _stats(path)
    finally:
        config.database.close()


def test_concurrent_creators_write_the_rows_once(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            store = Store(peewee.SqliteDatabase(str(path), timeout=30))
            barrier.wait(timeout=30)
            store.ensure_schema()
            store.db.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT idx, count(*) FROM sqlite_stat1 WHERE tbl = 'delayed_jobs' GROUP BY idx"
    ).fetchall()
    conn.close()
    assert sorted(rows, key=str) == sorted(
        [(None, 1), ("delayed_jobs_ready", 1), ("delayed_jobs_queue_ready", 1)], key=str
    )
