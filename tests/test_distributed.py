"""tinydj across many machines: PostgreSQL (and MariaDB) as the shared engine.

Worker processes (``python -m tinydj work``) and in-process workers share one
table on the server, as workers on several hosts would. The tests look at what
only a server database can do or break: exactly-once under SKIP LOCKED, a
worker whose connections the server kills (``pg_terminate_backend``), the
LISTEN/NOTIFY wake-up and its reconnection, the recurring-row upsert race, and
the plan of the reserve statement in a table full of rows that are not due.

URLs come from ``conftest.PG_URL`` / ``conftest.MYSQL_URL`` (a schema or
database of this test session's own). Locally the tests skip without them; in
CI (``CI`` set) a missing URL fails. Jobs leave their trace in files opened
with O_APPEND; every wait is a poll of a condition with a deadline; every
process started is killed in teardown.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest
import sample_jobs
from conftest import MYSQL_URL, PG_URL, drop_table
from proc_helpers import Processes, read_lines, run_exactly_once, wait_until

import tinydj
from tinydj.config import open_database
from tinydj.schedule import parse_every, to_naive_utc, utcnow
from tinydj.sql import POSTGRES
from tinydj.store import Store

_SEQ = iter(range(1, 1_000_000))


# -- helpers -----------------------------------------------------------------------


def now_utc() -> datetime:
    return to_naive_utc(utcnow())


def with_app_name(url: str, tag: str) -> tuple[str, str]:
    """``url`` with an ``application_name`` unique to this test session and ``tag``.

    The name lets a test find (and terminate) exactly the connections of one
    worker in ``pg_stat_activity``, although other sessions share the server.
    """
    name = f"tinydj_test_{os.getpid()}_{tag}_{next(_SEQ)}"
    return f"{url}{'&' if '?' in url else '?'}application_name={name}", name


def _server_url(url: str | None, variable: str) -> str:
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{variable} is not set in CI")
    pytest.skip(f"{variable} not set")


@pytest.fixture
def pg_url() -> str:
    """This session's Postgres URL, with no delayed_jobs table yet."""
    url = _server_url(PG_URL, "TINYDJ_TEST_PG_URL")
    drop_table(url)
    return url


@pytest.fixture
def mysql_url() -> str:
    """This session's MySQL/MariaDB URL, with no delayed_jobs table yet."""
    url = _server_url(MYSQL_URL, "TINYDJ_TEST_MYSQL_URL")
    drop_table(url)
    return url


def _live(url: str) -> Iterator[tinydj.Config]:
    cfg = tinydj.configure(url)
    cfg.store.ensure_schema()
    try:
        yield cfg
    finally:
        cfg.store.close()
        cfg.database.close()


@pytest.fixture
def live_pg(pg_url: str) -> Iterator[tinydj.Config]:
    """tinydj on this session's Postgres schema, real clock, table created."""
    yield from _live(pg_url)


@pytest.fixture
def live_mysql(mysql_url: str) -> Iterator[tinydj.Config]:
    yield from _live(mysql_url)


@pytest.fixture
def admin(pg_url: str) -> Iterator[peewee.Database]:
    """A connection of the test's own for pg_stat_activity, pg_terminate_backend
    and reading the table (never one of the connections a test kills)."""
    db = open_database(pg_url)
    try:
        yield db
    finally:
        db.close()


def terminate(admin: peewee.Database, app_name: str, extra: str = "") -> list[int]:
    """``pg_terminate_backend`` every connection named ``app_name``; their pids."""
    rows = admin.execute_sql(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        f"AND application_name = %s {extra}",
        (app_name,),
    ).fetchall()
    return [pid for pid, _ in rows]


def backends(admin: peewee.Database, app_name: str) -> list[tuple[int, str, str, float]]:
    """(pid, state, query, seconds in that state) of the connections named ``app_name``."""
    return [
        (pid, state or "", query or "", float(age or 0))
        for pid, state, query, age in admin.execute_sql(
            "SELECT pid, state, query, EXTRACT(EPOCH FROM now() - state_change) "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = %s",
            (app_name,),
        ).fetchall()
    ]


def row_count(db: peewee.Database) -> int:
    return int(db.execute_sql("SELECT COUNT(*) FROM delayed_jobs").fetchone()[0])


# -- 1: exactly once across 4 processes x 4 threads --------------------------------


def _exactly_once(url: str, jobs: int, procs: Processes, tmp_path: Path) -> None:
    run_exactly_once(url, procs, tmp_path, processes=4, threads=4, jobs=jobs)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(150)
def test_postgres_each_job_runs_exactly_once_across_4_processes_x_4_threads(
    live_pg: tinydj.Config, pg_url: str, procs: Processes, tmp_path: Path
) -> None:
    _exactly_once(pg_url, 5000, procs, tmp_path)


@pytest.mark.slow
@pytest.mark.mysql
@pytest.mark.timeout(150)
def test_mysql_each_job_runs_exactly_once_across_4_processes_x_4_threads(
    live_mysql: tinydj.Config, mysql_url: str, procs: Processes, tmp_path: Path
) -> None:
    _exactly_once(mysql_url, 2000, procs, tmp_path)


# -- 2: a worker survives pg_terminate_backend of its connections ------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_worker_survives_pg_terminate_backend_and_finishes_the_queue(
    live_pg: tinydj.Config,
    pg_url: str,
    admin: peewee.Database,
    procs: Processes,
    tmp_path: Path,
) -> None:
    jobs = 1200
    out = tmp_path / "ran.txt"
    tokens = [f"t{i}" for i in range(jobs)]
    sample_jobs.slow_append.send_later_many([(str(out), t, 0.002) for t in tokens])
    assert row_count(admin) == jobs

    url, app = with_app_name(pg_url, "term")
    # A short lease: a reservation whose reply a kill swallowed (committed on
    # the server, never seen by the worker) is taken again within seconds.
    procs.work("w", url, "--threads", "2", "--lock-timeout", "5", "--poll-interval", "1", "-q")

    def done() -> int:
        return sum(1 for line in read_lines(out) if line.startswith("done "))

    kills: list[tuple[int, list[int], int]] = []
    for fraction in (0.2, 0.45, 0.7):
        target = int(fraction * jobs)
        wait_until(lambda t=target: done() >= t, 60, f"{target} jobs done")
        killed = terminate(admin, app)
        kills.append((done(), killed, row_count(admin)))
        procs.assert_alive("w")
    for at, killed, left in kills:
        assert killed, f"no connection of the worker to terminate at {at} jobs done"
        assert left > 0, "the kill came after the queue was drained: it proves nothing"

    wait_until(lambda: row_count(admin) == 0, 60, "the worker to drain the queue after the kills")
    lines = read_lines(out)
    started = Counter(line.split()[1] for line in lines if line.startswith("start "))
    finished = Counter(line.split()[1] for line in lines if line.startswith("done "))
    twice = sorted(t for t, n in started.items() if n > 1)
    never = sorted(set(tokens) - set(finished))
    assert not twice, f"{len(twice)} job(s) ran more than once, e.g. {twice[:10]}"
    assert not never, f"{len(never)} job(s) never finished, e.g. {never[:10]}"
    assert set(started) == set(finished) == set(tokens)

    log = procs.output("w")
    assert "terminating connection" in log or "closed the connection" in log, (
        f"the worker never noticed its connections were terminated:\n{log[-3000:]}"
    )

    # Still alive, and still working (its connections and LISTEN came back).
    procs.assert_alive("w")
    extra = sample_jobs.slow_append.send_later(str(out), "after", 0.0)
    wait_until(lambda: "done after" in read_lines(out), 10, "a job enqueued after the kills")
    wait_until(lambda: tinydj.get_job(extra.id) is None, 10, "the last job to be deleted")
    procs.assert_alive("w")

    procs.procs["w"].send_signal(signal.SIGTERM)
    procs.assert_exit("w", 0, timeout=20)


# -- 2b: the lease thread must reconnect too ---------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_leases_are_still_renewed_after_pg_terminate_backend(
    live_pg: tinydj.Config, pg_url: str, admin: peewee.Database, tmp_path: Path
) -> None:
    """A long job must not be taken from a live worker because its connections
    were dropped: the lease thread has to reconnect like the runner threads.
    Worker B stands for the other hosts: it takes any job whose lease expired."""
    lock_timeout = 3.0
    out, marker = tmp_path / "ran.txt", tmp_path / "go"
    job = sample_jobs.wait_for_file.send_later(str(out), str(marker), 45.0)

    url_a, app_a = with_app_name(pg_url, "lease")
    cfg_a = tinydj.configure(url_a)
    cfg_b = tinydj.configure(pg_url)
    a = tinydj.Worker(threads=1, lock_timeout=lock_timeout, config=cfg_a, name="A")
    b = tinydj.Worker(
        threads=1, lock_timeout=lock_timeout, poll_interval=0.2, config=cfg_b, name="B"
    )

    def locked_at() -> datetime:
        row = admin.execute_sql("SELECT locked_at FROM delayed_jobs WHERE id = %s", (job.id,))
        return row.fetchone()[0]

    try:
        a.start()
        wait_until(lambda: read_lines(out) == ["start"], 20, "worker A to start the job")
        first = locked_at()
        # Once A has renewed the lease, its lease thread has a connection.
        wait_until(lambda: locked_at() != first, 10, "A to renew its lease")
        b.start()
        killed = terminate(admin, app_a)
        assert len(killed) >= 2, f"expected A's runner and lease connections, got {killed}"

        # For a few lease periods: A is alive and running the job, so nobody
        # else may start it, and A's lease must stay fresh.
        deadline = time.monotonic() + 2 * lock_timeout
        oldest = 0.0
        while time.monotonic() < deadline:
            row = admin.execute_sql(
                "SELECT locked_by, locked_at FROM delayed_jobs WHERE id = %s", (job.id,)
            ).fetchone()
            holder, age = row[0], (now_utc() - row[1]).total_seconds()
            oldest = max(oldest, age)
            assert read_lines(out) == ["start"] and holder == "A", (
                f"the job was taken from live worker A and started again ({read_lines(out)}, "
                f"now held by {holder}): A's lease went {oldest:.1f} s without renewal "
                f"(lock_timeout {lock_timeout} s) after its connections were terminated"
            )
            time.sleep(0.05)
        assert oldest < lock_timeout, (
            f"A's lease went {oldest:.1f} s without renewal (lock_timeout {lock_timeout} s)"
        )

        marker.touch()
        wait_until(lambda: row_count(admin) == 0, 20, "the job to finish and be deleted")
        assert read_lines(out) == ["start", "done"]
    finally:
        marker.touch()
        a.stop(timeout=10)
        b.stop(timeout=10)
        for cfg in (cfg_a, cfg_b):
            cfg.store.close()
            cfg.database.close()


# -- 3: LISTEN/NOTIFY wake-up, and the listener reconnects -------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_notify_wakes_an_idle_worker_and_the_listener_reconnects(
    live_pg: tinydj.Config,
    pg_url: str,
    admin: peewee.Database,
    procs: Processes,
    tmp_path: Path,
) -> None:
    out = tmp_path / "ran.txt"
    url, app = with_app_name(pg_url, "listen")
    # Polling alone would take up to 30 s: a pick-up within 2 s is NOTIFY.
    procs.work("w", url, "--poll-interval", "30", "-q")

    def listener_pid() -> int | None:
        pids = [p for p, _, q, _ in backends(admin, app) if q.startswith("LISTEN")]
        return pids[0] if pids else None

    def idle_and_listening(old: int | None = None) -> bool:
        """The worker listens (on a connection other than ``old``) and its
        other connections have been idle for a while: it sleeps in its 30 s poll
        wait. (NOTIFYs of other schemas in this database wake it too: the
        channel is per database.)"""
        rows = backends(admin, app)
        listening = [p for p, _, q, _ in rows if q.startswith("LISTEN") and p != old]
        others = [(s, age) for p, s, q, age in rows if not q.startswith("LISTEN")]
        return (
            bool(listening) and bool(others) and all(s == "idle" and age > 0.3 for s, age in others)
        )

    def picked_up(token: str, within: float, what: str) -> float:
        started = time.monotonic()
        sample_jobs.append_token.send_later(str(out), token)
        wait_until(
            lambda: any(line.split()[0] == token for line in read_lines(out)),
            within,
            f"{what} (log:\n{procs.output('w', tail=2000)})",
            interval=0.005,
        )
        return time.monotonic() - started

    wait_until(idle_and_listening, 30, "the worker to listen and go idle")
    latency = picked_up("first", 2.0, "NOTIFY to wake the idle worker")

    # Kill the LISTEN connection only; the listener must come back by itself.
    old = listener_pid()
    assert old is not None
    assert terminate(admin, app, "AND query LIKE 'LISTEN%%'") == [old]
    wait_until(lambda: idle_and_listening(old), 30, "a new LISTEN connection")
    procs.assert_alive("w")
    relisten_latency = picked_up("second", 2.0, "NOTIFY on the reconnected listener")

    # Kill it again and enqueue at once, while nobody listens: the reconnect
    # must look at the table (jobs may have come meanwhile), not wait 30 s.
    again = listener_pid()
    assert again is not None and again != old
    assert terminate(admin, app, "AND query LIKE 'LISTEN%%'") == [again]
    gap_latency = picked_up("third", 5.0, "a job enqueued while the listener reconnected")

    ran = [line.split()[0] for line in read_lines(out)]
    assert ran == ["first", "second", "third"]
    assert max(latency, relisten_latency) < 2.0 and gap_latency < 5.0
    procs.assert_alive("w")
    procs.procs["w"].send_signal(signal.SIGTERM)
    procs.assert_exit("w", 0, timeout=20)


# -- 4: the reserve statement stays an index seek -----------------------------------

_INSERT = (
    'INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, "key", '
    "reoccur_in, created_at, updated_at, failed_at) "
)
_HANDLER = "'tinydj: 1\nfunction: sample_jobs:record\nargs: []\nkwargs: {}\n'"


def _reserve_statement(
    store: Store, limit: int, queues: tuple[str, ...] = ()
) -> tuple[str, tuple[Any, ...]]:
    """The statement ``Store.reserve`` runs on a returning dialect, built the same
    way, with its parameters: (sql, params). (On Postgres the one that also
    deletes finished jobs: three of them, not due.)"""
    now = now_utc()
    t_now = store._t(now)
    expired = store._t(now - timedelta(seconds=30))
    if store.dialect is POSTGRES:
        done = "{-1,-2,-3}"
        sql = store.sql.reserve_acking(len(queues))
        worker = "explain-worker"
        return sql, store.sql.reserve_params(worker, t_now, expired, queues, (), limit, done)
    params = store.sql.reserve_params("explain-worker", t_now, expired, queues, (), limit)
    return store.sql.reserve(len(queues)), params


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def _pg_explain(
    db: peewee.Database, store: Store, limit: int, queues: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    """EXPLAIN (ANALYZE, BUFFERS) the reserve statement in a rolled-back
    transaction: (the JSON plan, the text plan)."""
    sql, params = _reserve_statement(store, limit, queues)
    # Executed again with no parameters: a literal "%" must be doubled then.
    literal = db.cursor().mogrify(sql, params).decode().replace("%", "%%")
    with db.atomic() as tx:
        plan = db.execute_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + literal).fetchone()[0]
        tx.rollback()
    with db.atomic() as tx:
        rows = db.execute_sql("EXPLAIN (ANALYZE, BUFFERS) " + literal).fetchall()
        tx.rollback()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return plan[0]["Plan"], "\n".join(r[0] for r in rows)


def _blocks(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def _finding(plan: dict[str, Any]) -> dict[str, Any]:
    """The sub-select that finds the due ids (its outermost Limit node; the
    seeks per priority have Limits of their own below it): what must not
    grow with the table. (The UPDATE of the rows found costs a few index
    insertions per row, which grow with the depth of the indexes only.)"""
    limits = [n for n in _plan_nodes(plan) if n["Node Type"] == "Limit"]
    assert limits, plan
    return limits[0]


def _ready_scan(plan: dict[str, Any], text: str) -> dict[str, Any]:
    """Check the plan's shape; return its scan of ``delayed_jobs_ready``."""
    nodes = list(_plan_nodes(plan))
    seq = [
        n
        for n in nodes
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "delayed_jobs"
    ]
    assert not seq, f"Seq Scan on delayed_jobs in the reserve plan:\n{text}"
    sorts = [n for n in nodes if "Sort" in n["Node Type"]]
    assert not sorts, f"the reserve plan sorts:\n{text}"
    # The walk that finds due rows bounds run_at (the seeks for the distinct
    # priorities of the Postgres statement do not).
    scans = [
        n
        for n in nodes
        if n["Node Type"] in ("Index Scan", "Index Only Scan")
        and n.get("Index Name") == "delayed_jobs_ready"
        and "run_at" in n.get("Index Cond", "")
    ]
    assert len(scans) == 1, f"the reserve plan does not walk delayed_jobs_ready:\n{text}"
    return scans[0]


def _rows(node: dict[str, Any]) -> int:
    """Rows a plan node returned in all its loops."""
    return int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))


def _pg_fill(
    db: peewee.Database,
    rows: int,
    *,
    priority: int,
    due: bool,
    failed: bool = False,
    queue: str = "default",
) -> None:
    """Insert ``rows`` jobs in one statement: due (run_at in the past) or in the future."""
    utc = "(now() AT TIME ZONE 'utc')"
    run_at = (
        f"{utc} - make_interval(secs => 86400 + g)"
        if due
        else f"{utc} + make_interval(secs => 3600 + g)"
    )
    db.execute_sql(
        f"{_INSERT} SELECT {priority}, {25 if failed else 0}, {_HANDLER}, {run_at}, '{queue}', "
        f"NULL, NULL, {utc}, {utc}, {utc if failed else 'NULL'} "
        f"FROM generate_series(1, {rows}) AS g"
    )


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_reserve_is_an_index_seek_among_future_and_failed_rows(
    live_pg: tinydj.Config,
) -> None:
    db, store = live_pg.database, live_pg.store
    _pg_fill(db, 100, priority=0, due=True)
    db.execute_sql("ANALYZE delayed_jobs")
    small = {limit: _pg_explain(db, store, limit) for limit in (1, 10)}

    _pg_fill(db, 200_000, priority=0, due=False)
    _pg_fill(db, 100_000, priority=0, due=True, failed=True)
    db.execute_sql("ANALYZE delayed_jobs")
    assert row_count(db) == 300_100

    for limit in (1, 10):
        plan, text = _pg_explain(db, store, limit)
        scan = _ready_scan(plan, text)
        base_plan, base_text = small[limit]
        assert _rows(scan) == limit, text
        assert scan.get("Rows Removed by Filter", 0) == 0, text
        # The index walk reads a few pages: the tree's depth, the rows' heap
        # pages, and the entries the rolled-back EXPLAIN ANALYZE runs left
        # (a walk past the 300,000 rows would read thousands); finding the
        # due rows costs about what it costs among 100 rows.
        found, base = _blocks(_finding(plan)), _blocks(_finding(base_plan))
        assert _blocks(scan) <= 50, f"the index scan read {_blocks(scan)} blocks:\n{text}"
        assert found <= base + 30, (
            f"finding {limit} due row(s) read {found} blocks among 300,000 rows that are "
            f"not due, {base} among 100 rows:\n{text}\n--- 100 rows:\n{base_text}"
        )


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_reserve_is_an_index_seek_behind_future_rows_of_higher_priority(
    live_pg: tinydj.Config,
) -> None:
    """Urgent jobs scheduled for later (priority -10, run_at tomorrow) must not
    make every reservation of today's normal jobs walk all of them.

    In ``(priority, run_at, id)`` order all the priority -10 rows come before
    the due priority 0 rows; ``run_at <= now`` bounds the walk only within one
    priority. SQLite answers the same statement with a skip scan (see the
    SQLite test); Postgres < 18 has none, so the reserve seeks per priority
    (a recursive CTE over the distinct priorities of the partial index, then
    ``priority = p AND run_at <= now`` for each, in order)."""
    db, store = live_pg.database, live_pg.store
    _pg_fill(db, 100, priority=0, due=True)
    db.execute_sql("ANALYZE delayed_jobs")
    base_plan, _ = _pg_explain(db, store, 1)
    _pg_fill(db, 200_000, priority=-10, due=False)
    db.execute_sql("ANALYZE delayed_jobs")
    plan, text = _pg_explain(db, store, 1)
    scan = _ready_scan(plan, text)
    found, base = _blocks(_finding(plan)), _blocks(_finding(base_plan))
    assert _blocks(scan) <= 50 and found <= base + 30, (
        f"finding a due row read {found} blocks behind 200,000 future rows of higher "
        f"priority, {base} without them:\n{text}"
    )


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_reserve_of_one_queue_seeks_among_future_rows(live_pg: tinydj.Config) -> None:
    """A worker of one queue walks ``(queue, priority, run_at, id)``: without a
    seek per priority it would read all the queue's future rows (of its
    priority when nothing is due, of higher ones before the due rows)."""
    db, store = live_pg.database, live_pg.store
    _pg_fill(db, 100, priority=0, due=True)
    db.execute_sql("ANALYZE delayed_jobs")
    base_plan, _ = _pg_explain(db, store, 10, ("default",))
    _pg_fill(db, 100_000, priority=0, due=False)
    _pg_fill(db, 100_000, priority=-10, due=False)
    db.execute_sql("ANALYZE delayed_jobs")
    plan, text = _pg_explain(db, store, 10, ("default",))
    nodes = list(_plan_nodes(plan))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], text
    assert not [n for n in nodes if "Sort" in n["Node Type"]], f"the reserve sorts:\n{text}"
    found, base = _blocks(_finding(plan)), _blocks(_finding(base_plan))
    assert found <= base + 30, (
        f"finding 10 due rows of one queue read {found} blocks among 200,000 future rows, "
        f"{base} without them:\n{text}"
    )


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_reserve_of_several_queues_seeks_each_queue(live_pg: tinydj.Config) -> None:
    """A worker of several queues: candidates from a seek per queue and
    priority, then the lock; neither the listed queues' future rows nor the
    due rows of other queues are read."""
    db, store = live_pg.database, live_pg.store
    queues = ("default", "mail")
    _pg_fill(db, 100, priority=0, due=True)
    _pg_fill(db, 5, priority=0, due=True, queue="mail")
    db.execute_sql("ANALYZE delayed_jobs")
    base_plan, _ = _pg_explain(db, store, 10, queues)
    _pg_fill(db, 100_000, priority=0, due=False)
    _pg_fill(db, 50_000, priority=-10, due=False, queue="mail")
    _pg_fill(db, 50_000, priority=0, due=True, queue="other")
    db.execute_sql("ANALYZE delayed_jobs")
    plan, text = _pg_explain(db, store, 10, queues)
    nodes = list(_plan_nodes(plan))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], text
    found, base = _blocks(_finding(plan)), _blocks(_finding(base_plan))
    # Each of the 15 candidates (10 of one queue, 5 of the other) is then read
    # by id: an index descent and a heap page, a few blocks each.
    assert found <= base + 6 * 15, (
        f"finding 10 due rows of two queues read {found} blocks among 200,000 rows that are "
        f"not due or of another queue, {base} without them:\n{text}"
    )


def _sqlite_fill(
    db: peewee.Database,
    rows: int,
    *,
    priority: int,
    due: bool,
    failed: bool = False,
    queue: str = "default",
) -> None:
    sign, base = ("-", 86400) if due else ("+", 3600)
    stamp = f"strftime('%Y-%m-%d %H:%M:%f000', 'now', '{sign}' || ({base} + n) || ' seconds')"
    now = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
    db.execute_sql(
        f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows}) "
        f"{_INSERT} SELECT {priority}, {25 if failed else 0}, {_HANDLER}, {stamp}, '{queue}', "
        f"NULL, NULL, {now}, {now}, {now if failed else 'NULL'} FROM g"
    )


def _sqlite_reserve_cost(
    db: peewee.Database, store: Store, limit: int, queues: tuple[str, ...] = ()
) -> tuple[list[str], int]:
    """(EXPLAIN QUERY PLAN lines, VM steps/100 to run it) of the reserve statement,
    run in a rolled-back transaction."""
    sql, params = _reserve_statement(store, limit, queues)
    plan = [r[3] for r in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn = db.connection()
    with db.atomic() as tx:
        conn.set_progress_handler(count, 100)
        try:
            got = db.execute_sql(sql, params).fetchall()
        finally:
            conn.set_progress_handler(None, 0)
        tx.rollback()
    assert len(got) == limit
    return plan, steps[0]


@pytest.mark.timeout(60)
def test_sqlite_reserve_is_an_index_seek_among_rows_that_are_not_due(sqlite_url: str) -> None:
    cfg = tinydj.configure(sqlite_url)
    db, store = cfg.database, cfg.store
    try:
        store.ensure_schema()
        _sqlite_fill(db, 100, priority=0, due=True)
        db.execute_sql("ANALYZE")
        _, small = _sqlite_reserve_cost(db, store, 10)

        _sqlite_fill(db, 150_000, priority=0, due=False)
        _sqlite_fill(db, 50_000, priority=-10, due=False)
        _sqlite_fill(db, 50_000, priority=0, due=True, failed=True)
        db.execute_sql("ANALYZE")
        assert row_count(db) == 250_100
        for limit in (1, 10):
            plan, steps = _sqlite_reserve_cost(db, store, limit)
            text = "\n".join(plan)
            assert any(
                "delayed_jobs_ready" in line
                and ("USING INDEX" in line or "USING COVERING INDEX" in line)
                for line in plan
            ), f"the reserve does not use delayed_jobs_ready:\n{text}"
            assert not any(
                line.startswith("SCAN delayed_jobs") and "INDEX" not in line for line in plan
            ), f"full table scan in the reserve plan:\n{text}"
            assert not any("TEMP B-TREE" in line for line in plan), f"the reserve sorts:\n{text}"
            # A few hundred VM instructions whatever the table holds, not one per row.
            assert steps <= 2 * small + 20, (
                f"reserving took {steps * 100} VM steps among 250,000 rows that are not "
                f"due, {small * 100} among 100 rows:\n{text}"
            )
    finally:
        cfg.store.close()
        db.close()


@pytest.mark.timeout(60)
def test_sqlite_reserve_of_one_queue_seeks_among_rows_that_are_not_due(sqlite_url: str) -> None:
    """A worker of one queue (``tinydj work --queue mail``): ``queue = ?``
    fixes the index's first column, and SQLite skip-scans only leading
    columns; the reserve must still not walk the queue's future rows."""
    cfg = tinydj.configure(sqlite_url)
    db, store = cfg.database, cfg.store
    try:
        store.ensure_schema()
        _sqlite_fill(db, 100, priority=0, due=True)
        _, small = _sqlite_reserve_cost(db, store, 10, ("default",))
        _sqlite_fill(db, 150_000, priority=0, due=False)
        _sqlite_fill(db, 50_000, priority=-10, due=False)
        assert row_count(db) == 200_100
        plan, steps = _sqlite_reserve_cost(db, store, 10, ("default",))
        text = "\n".join(plan)
        assert any("queue=? AND priority=? AND run_at<?" in line for line in plan), text
        assert not any("TEMP B-TREE" in line for line in plan), f"the reserve sorts:\n{text}"
        assert steps <= 2 * small + 20, (
            f"reserving took {steps * 100} VM steps among 200,000 rows that are not "
            f"due, {small * 100} among 100 rows:\n{text}"
        )
    finally:
        cfg.store.close()
        db.close()


@pytest.mark.timeout(60)
def test_sqlite_reserve_of_several_queues_seeks_each_queue(sqlite_url: str) -> None:
    """A worker of several queues (``--queue default --queue mail``): one seek
    per queue, merged; neither the listed queues' future rows nor the due
    rows of other queues are read."""
    cfg = tinydj.configure(sqlite_url)
    db, store = cfg.database, cfg.store
    queues = ("default", "mail")
    try:
        store.ensure_schema()
        _sqlite_fill(db, 100, priority=0, due=True)
        _sqlite_fill(db, 5, priority=0, due=True, queue="mail")
        _, small = _sqlite_reserve_cost(db, store, 10, queues)
        _sqlite_fill(db, 100_000, priority=0, due=False)
        _sqlite_fill(db, 50_000, priority=-10, due=False, queue="mail")
        # due earlier than every listed job: a walk in run order reads them first
        _sqlite_fill(db, 50_000, priority=0, due=True, queue="other")
        assert row_count(db) == 200_105
        plan, steps = _sqlite_reserve_cost(db, store, 10, queues)
        text = "\n".join(plan)
        assert sum("queue=? AND priority=? AND run_at<?" in line for line in plan) == 2, text
        assert steps <= 2 * small + 20, (
            f"reserving took {steps * 100} VM steps among 200,000 rows that are not due "
            f"or of other queues, {small * 100} among 105 rows:\n{text}"
        )
    finally:
        cfg.store.close()
        db.close()


def _mysql_fill(
    db: peewee.Database,
    rows: int,
    *,
    priority: int,
    due: bool,
    failed: bool = False,
    queue: str = "default",
) -> None:
    now = "UTC_TIMESTAMP(6)"
    run_at = (
        f"{now} - INTERVAL (86400 + seq) SECOND" if due else f"{now} + INTERVAL (3600 + seq) SECOND"
    )
    db.execute_sql(
        f"{_INSERT.replace(chr(34), '`')} SELECT {priority}, {25 if failed else 0}, {_HANDLER}, "
        f"{run_at}, '{queue}', NULL, NULL, {now}, {now}, {now if failed else 'NULL'} "
        f"FROM seq_1_to_{rows}"
    )


def _mysql_reserve_cost(
    db: peewee.Database, store: Store, limit: int, queues: list[str] | None = None
) -> tuple[str, int, int]:
    """(EXPLAIN of the locking select of priority 0, index entries read by a
    whole reservation, jobs it took) on MySQL, whose reservation is
    ``MIN(priority)`` seeks, that SELECT ... FOR UPDATE SKIP LOCKED per priority,
    then an UPDATE by id; rolled back."""
    now = now_utc()
    expired = now - timedelta(seconds=30)
    plan = db.execute_sql(
        "EXPLAIN FORMAT=JSON " + store.sql.due_at(0), (now, expired, 0, limit)
    ).fetchone()[0]

    def reads() -> int:
        rows = db.execute_sql(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_next', "
            "'Handler_read_prev', 'Handler_read_key', 'Handler_read_first', 'Handler_read_last', "
            # index entries that a pushed-down condition rejected inside the engine
            "'Handler_icp_attempts')"
        ).fetchall()
        return sum(int(r[1]) for r in rows)

    with db.atomic() as tx:
        before = reads()
        got = store.reserve("probe", now, expired, queues, limit)
        used = reads() - before
        tx.rollback()
    return plan, used, len(got)


@pytest.mark.mysql
@pytest.mark.timeout(60)
def test_mysql_reserve_is_an_index_seek_among_future_rows(live_mysql: tinydj.Config) -> None:
    db, store = live_mysql.database, live_mysql.store
    _mysql_fill(db, 100, priority=0, due=True)
    _mysql_fill(db, 100_000, priority=0, due=False)
    db.execute_sql("ANALYZE TABLE delayed_jobs")
    plan, reads, got = _mysql_reserve_cost(db, store, 10)
    assert "delayed_jobs_ready" in plan and "filesort" not in plan, plan
    assert got == 10
    assert reads <= 4 * got + 50, (
        f"reserving read {reads} index entries among 100,000 future rows:\n{plan}"
    )


@pytest.mark.mysql
@pytest.mark.timeout(60)
def test_mysql_idle_poll_is_an_index_seek_among_future_rows(live_mysql: tinydj.Config) -> None:
    """Nothing due: the reservation must not read the rows due later (of
    this priority or of a higher one) to find that out."""
    db, store = live_mysql.database, live_mysql.store
    _mysql_fill(db, 50_000, priority=0, due=False)
    _mysql_fill(db, 50_000, priority=-5, due=False)
    _, reads, got = _mysql_reserve_cost(db, store, 10)
    assert got == 0
    assert reads <= 20, f"an idle reserve read {reads} index entries among 100,000 future rows"


@pytest.mark.mysql
@pytest.mark.timeout(60)
def test_mysql_reserve_skips_future_rows_of_a_higher_priority(live_mysql: tinydj.Config) -> None:
    db, store = live_mysql.database, live_mysql.store
    _mysql_fill(db, 100_000, priority=-5, due=False)
    _mysql_fill(db, 100, priority=0, due=True)
    _mysql_fill(db, 100, priority=3, due=True)
    _, reads, got = _mysql_reserve_cost(db, store, 150)
    assert got == 150
    # A few per job taken (the select, the UPDATE by id, the rows read back),
    # not one per future row.
    assert reads <= 4 * got + 50, f"reserving read {reads} index entries behind 100,000 rows"


@pytest.mark.mysql
@pytest.mark.timeout(60)
def test_mysql_reserve_is_an_index_seek_among_failed_rows(live_mysql: tinydj.Config) -> None:
    """Failed jobs stay in the table for inspection; on MySQL (no partial
    indexes) they must still not be walked by every reservation."""
    db, store = live_mysql.database, live_mysql.store
    _mysql_fill(db, 100, priority=0, due=True)
    _mysql_fill(db, 100_000, priority=0, due=True, failed=True)
    db.execute_sql("ANALYZE TABLE delayed_jobs")
    plan, reads, got = _mysql_reserve_cost(db, store, 10)
    assert "filesort" not in plan, plan
    assert got == 10
    assert reads <= 4 * got + 50, (
        f"reserving read {reads} index entries among 100,000 failed rows:\n{plan}"
    )


@pytest.mark.mysql
@pytest.mark.timeout(60)
def test_mysql_reserve_of_several_queues_seeks_each_queue(live_mysql: tinydj.Config) -> None:
    """A worker of two queues: a seek per queue and priority, merged; not a
    sort of every due row of both queues, nor a walk of their future rows."""
    db, store = live_mysql.database, live_mysql.store
    _mysql_fill(db, 50_000, priority=0, due=True)
    _mysql_fill(db, 50_000, priority=0, due=True, queue="mail")
    _mysql_fill(db, 50_000, priority=-5, due=False, queue="mail")
    _mysql_fill(db, 50_000, priority=0, due=True, queue="other")
    db.execute_sql("ANALYZE TABLE delayed_jobs")
    _, reads, got = _mysql_reserve_cost(db, store, 10, ["default", "mail"])
    assert got == 10
    # the seeks of both queues read up to 10 each; the rest as for one queue
    assert reads <= 8 * got + 50, f"reserving read {reads} index entries among 200,000 rows"


# -- 5: recurring rows stay one per function when many workers start at once --------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_workers_starting_at_once_on_postgres_make_one_recurring_row(
    pg_url: str, admin: peewee.Database, procs: Processes, tmp_path: Path
) -> None:
    out, go = tmp_path / "ticks.txt", tmp_path / "go"
    key = "pg_recurring_app:tick"
    before = now_utc()
    count = 6
    for wave in range(2):
        names = [f"w{wave}-{i}" for i in range(count)]
        env = {"TINYDJ_TEST_PG_RECURRING_OUT": str(out), "TINYDJ_TEST_PG_RECURRING_GO": str(go)}
        go.unlink(missing_ok=True)
        for name in names:
            procs.work(
                name, pg_url, "--app", "pg_recurring_app", "--exit-on-complete", "-q", env=env
            )
        # Every process has created (or found) the table and waits in the
        # import of the app module; release them together.
        wait_until(
            lambda n=count * (wave + 1): (
                sum(1 for ln in read_lines(out) if ln.startswith("ready")) >= n
            ),
            60,
            f"{count} workers to be ready",
        )
        go.touch()
        for name in names:
            procs.assert_exit(name, 0, timeout=30)

        rows = admin.execute_sql(
            'SELECT "key", reoccur_in, run_at, locked_by, failed_at, attempts, last_run_at '
            "FROM delayed_jobs"
        ).fetchall()
        assert [r[0] for r in rows] == [key], f"wave {wave}: {rows}"
        ticks = [ln for ln in read_lines(out) if ln.startswith("tick")]
        assert len(ticks) == 1, f"wave {wave}: ran {len(ticks)} times in one period: {ticks}"
        _, every, run_at, locked_by, failed_at, attempts, last_run_at = rows[0]
        assert parse_every(every) == timedelta(hours=1)
        assert locked_by is None and failed_at is None and attempts == 0
        assert last_run_at is not None and last_run_at >= before - timedelta(seconds=1)
        assert run_at >= before + timedelta(minutes=59), run_at
