"""Jobs and per-library helpers for the PostgreSQL benchmark (``postgres.py``).

Every benchmark process imports this module (the benchmark itself, forked
workers, ``python -m tinydj work`` processes), so ``benchmarks/`` must be on
``sys.path`` / ``PYTHONPATH`` (``postgres.py`` does that). Benchmarks only:
nothing here is part of tinydj.

The three contenders, each with its documented, default way of working:

- tinydj: ``bench_jobs.noop`` (shared with the SQLite benchmark), enqueued with
  ``send_later_many``, run by ``tinydj.Worker``.
- pgqueuer: an ``async def`` entrypoint ``noop`` on a ``QueueManager`` over one
  asyncpg connection (``AsyncpgDriver``); enqueued with ``Queries.enqueue``
  (list form); default dequeue batch (10).
- procrastinate: an ``async def`` task ``noop`` on an ``App`` with the psycopg 3
  ``PsycopgConnector``; enqueued with ``batch_defer``; worker concurrency 1.
- batched: issue 14's batched floor in bare psycopg2 (no framework): one
  autocommit statement deletes the batch finished last and locks the next
  128 due rows (``batched_worker``), then each payload is ``json.loads``'ed
  and its function called. Its latency floor is a bare LISTEN loop doing the
  same after each NOTIFY (``batched_listener``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import tinydj

#: Tables (and what to TRUNCATE) of each library, to reset between runs.
TABLES = {
    "tinydj": ("delayed_jobs",),
    "pgqueuer": ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics"),
    "procrastinate": (
        "procrastinate_events",
        "procrastinate_periodic_defers",
        "procrastinate_jobs",
        "procrastinate_workers",
    ),
    "batched": ("bjobs",),
}
#: The table a backlog lives in.
QUEUE_TABLE = {
    "tinydj": "delayed_jobs",
    "pgqueuer": "pgqueuer",
    "procrastinate": "procrastinate_jobs",
    "batched": "bjobs",
}


#: When (``time.monotonic()``) each no-op job run in this process started:
#: pgqueuer's and procrastinate's ``noop`` and tinydj's ``stamp`` append to
#: it. The reserve benchmark takes its rates from these stamps.
STAMPS: list[float] = []


def _ran() -> None:
    STAMPS.append(time.monotonic())


@tinydj.job
def stamp(i: int) -> None:
    """tinydj's no-op that records when it ran (reserve benchmark)."""
    _ran()


def window_rates(stamps: list[float], windows: int = 10) -> list[float]:
    """Jobs/s over consecutive windows of ``len(stamps) // windows`` jobs."""
    size = max(2, len(stamps) // windows)
    rates = []
    for k in range(0, len(stamps) - size, size):
        span = stamps[k + size] - stamps[k]
        if span > 0:
            rates.append(size / span)
    return rates


def udp_send(t0: float, port: int) -> None:
    """Send ``time.time() - t0`` (seconds, as text) to the benchmark on ``port``."""
    started = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(repr(started - t0).encode(), ("127.0.0.1", port))


# -- plain psycopg2 access for setup and checks (never timed) -----------------------


@contextlib.contextmanager
def pg(url: str) -> Iterator[Any]:
    """An autocommit psycopg2 cursor on ``url``."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def scalar(url: str, sql: str, params: Any = ()) -> Any:
    with pg(url) as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def reset(url: str, lib: str) -> None:
    """Empty a library's tables (a fresh relfilenode: no dead rows from earlier runs)."""
    with pg(url) as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES[lib])} RESTART IDENTITY CASCADE")


def settle(url: str, lib: str) -> None:
    """VACUUM ANALYZE the queue table and CHECKPOINT, so that the timed part
    starts from the same state for every library (and autovacuum has nothing
    to do during it)."""
    with pg(url) as cur:
        cur.execute(f"VACUUM ANALYZE {QUEUE_TABLE[lib]}")
        cur.execute("CHECKPOINT")


#: True while a library still has unfinished jobs (cheap: polled during drains).
UNFINISHED_SQL = {
    "tinydj": "SELECT EXISTS (SELECT 1 FROM delayed_jobs)",
    "pgqueuer": "SELECT EXISTS (SELECT 1 FROM pgqueuer)",
    "procrastinate": (
        "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
    ),
    "batched": "SELECT EXISTS (SELECT 1 FROM bjobs)",
}


def pending(url: str, lib: str) -> int:
    """Jobs not finished yet (tinydj and pgqueuer delete finished jobs;
    procrastinate keeps them with status 'succeeded', its default)."""
    if lib == "procrastinate":
        return int(
            scalar(url, "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
        )
    return int(scalar(url, f"SELECT count(*) FROM {QUEUE_TABLE[lib]}"))


def succeeded(url: str, lib: str) -> int | None:
    """Finished jobs as recorded by the library itself (None: not recorded)."""
    if lib == "procrastinate":
        return int(
            scalar(url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
        )
    if lib == "pgqueuer":
        return int(scalar(url, "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"))
    return None


# -- install --------------------------------------------------------------------


def install(url: str, lib: str) -> None:
    """Create a library's schema in the (dedicated) benchmark database."""
    if lib == "tinydj":
        import tinydj

        config = tinydj.configure(url)
        tinydj.create_tables()
        config.store.close()
    elif lib == "pgqueuer":

        async def go() -> None:
            conn, queries = await pgqueuer_queries(url)
            try:
                await queries.install()
            finally:
                await conn.close()

        asyncio.run(go())
    elif lib == "batched":
        with pg(url) as cur:
            for sql in BATCHED_SCHEMA:
                cur.execute(sql)
    else:
        app = procrastinate_app(url)
        with app.open():
            app.schema_manager.apply_schema()


# -- pgqueuer --------------------------------------------------------------------


async def pgqueuer_queries(url: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(url)
    return conn, Queries(AsyncpgDriver(conn))


async def pgqueuer_manager(
    url: str, on_job: Callable[[Any], None] | None = None
) -> tuple[Any, Any]:
    """(asyncpg connection, QueueManager with the async no-op entrypoint ``noop``
    and the UDP ``probe``)."""
    from pgqueuer.qm import QueueManager

    conn, queries = await pgqueuer_queries(url)
    qm = QueueManager(queries)

    @qm.entrypoint("noop")
    async def noop(job: Any) -> None:
        _ran()
        if on_job is not None:
            on_job(job)

    @qm.entrypoint("probe")
    async def probe(job: Any) -> None:
        t0, port = job.payload.decode().split()
        udp_send(float(t0), int(port))

    return conn, qm


def pgqueuer_backlog(url: str, n: int, batch: int = 1000) -> None:
    async def go() -> None:
        conn, queries = await pgqueuer_queries(url)
        try:
            for k in range(0, n, batch):
                m = min(n, k + batch) - k
                payloads = [f'{{"i": {i}}}'.encode() for i in range(k, k + m)]
                await queries.enqueue(["noop"] * m, payloads, [0] * m)
        finally:
            await conn.close()

    asyncio.run(go())


# -- procrastinate ---------------------------------------------------------------

_apps: dict[str, Any] = {}


def procrastinate_app(url: str) -> Any:
    """One ``App`` per URL with the tasks ``noop`` (async no-op) and ``probe``."""
    app = _apps.get(url)
    if app is not None:
        return app
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop(i: int) -> None:
        _ran()

    @app.task(name="probe")
    async def probe(t0: float, port: int) -> None:
        udp_send(t0, port)

    _apps[url] = app
    return app


def procrastinate_backlog(url: str, n: int, batch: int = 1000) -> None:
    app = procrastinate_app(url)
    with app.open():
        noop = app.tasks["noop"]
        for k in range(0, n, batch):
            noop.batch_defer(*({"i": i} for i in range(k, min(n, k + batch))))


# -- tinydj ------------------------------------------------------------------------


def tinydj_backlog(url: str, n: int, batch: int = 1000, *, stamped: bool = False) -> None:
    """``n`` jobs ``bench_jobs.noop(i)`` (or ``stamp(i)``) in transactions of ``batch``."""
    import bench_jobs

    job = stamp if stamped else bench_jobs.noop
    config = tinydj.configure(url)
    for k in range(0, n, batch):
        job.send_later_many([(i,) for i in range(k, min(n, k + batch))])
    config.store.close()


# -- the batched floor (issue 14) -------------------------------------------------

BATCHED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bjobs (id bigserial PRIMARY KEY, "
    "priority integer NOT NULL DEFAULT 0, run_at timestamptz NOT NULL DEFAULT now(), "
    "locked_at timestamptz, locked_by text, payload text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bjobs_ready ON bjobs (priority, run_at, id) "
    "WHERE locked_at IS NULL",
    # What the bare LISTEN loop (``batched_listener``) waits for, the way
    # tinydj's trigger does it: one NOTIFY per inserting statement.
    "CREATE OR REPLACE FUNCTION bjobs_notify() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_notify('bjobs', ''); RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER bjobs_notify AFTER INSERT ON bjobs "
    "FOR EACH STATEMENT EXECUTE FUNCTION bjobs_notify()",
)
#: One round trip per batch: delete the finished ids, lock and return the next.
BATCHED_STEP = """
    WITH done AS (DELETE FROM bjobs WHERE id = ANY(%s::bigint[])),
    next AS (SELECT id FROM bjobs WHERE locked_at IS NULL AND run_at <= now()
             ORDER BY priority, run_at, id LIMIT 128 FOR UPDATE SKIP LOCKED)
    UPDATE bjobs SET locked_at = now(), locked_by = %s FROM next
    WHERE bjobs.id = next.id RETURNING bjobs.id, bjobs.payload
"""


def _batched_noop(*args: Any) -> None:
    pass


BATCHED_FUNCTIONS: dict[str, Callable[..., None]] = {
    "bench_jobs:noop": _batched_noop,
    "probe": udp_send,
}


def batched_backlog(url: str, n: int, batch: int = 1000) -> None:
    from psycopg2.extras import execute_values

    with pg(url) as cur:
        for k in range(0, n, batch):
            payloads = [
                (json.dumps({"f": "bench_jobs:noop", "args": [i]}),)
                for i in range(k, min(n, k + batch))
            ]
            execute_values(cur, "INSERT INTO bjobs (payload) VALUES %s", payloads)


def batched_worker(url: str, ready: Callable[[], None], options: dict[str, Any]) -> None:
    """Drain ``bjobs`` one batch per statement until a batch comes back empty."""
    import os

    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    name = f"batched-{os.getpid()}"
    ready()
    try:
        _batches(cur, name, [])
    finally:
        conn.close()


def _batches(cur: Any, name: str, done: list[int]) -> list[int]:
    """Run ``BATCHED_STEP`` and the jobs it returns until a batch comes back
    empty; the ids finished last (deleted by the next step)."""
    loads, functions = json.loads, BATCHED_FUNCTIONS
    while True:
        cur.execute(BATCHED_STEP, (done, name))
        rows = cur.fetchall()
        if not rows:
            return done
        done = []
        for job_id, payload in rows:
            job = loads(payload)
            functions[job["f"]](*job["args"])
            done.append(job_id)


def batched_probe(cur: Any, t0: float, port: int) -> None:
    """Enqueue one probe for ``batched_listener``: a bare INSERT (autocommit)."""
    payload = json.dumps({"f": "probe", "args": [t0, port]})
    cur.execute("INSERT INTO bjobs (payload) VALUES (%s)", (payload,))


def batched_listener(url: str, stop: Callable[[], bool]) -> None:
    """The bare LISTEN loop of the latency floor: one connection LISTENs, and
    after each NOTIFY runs ``BATCHED_STEP`` until a batch comes back empty."""
    import os
    import select

    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("LISTEN bjobs")
    name = f"listener-{os.getpid()}"
    done: list[int] = []
    look = True  # jobs may have come before the LISTEN
    try:
        while not stop():
            if not look and not conn.notifies and not select.select([conn], [], [], 0.25)[0]:
                continue
            look = False
            conn.poll()
            conn.notifies.clear()
            done = _batches(cur, name, done)
    finally:
        conn.close()


BACKLOG = {
    "tinydj": tinydj_backlog,
    "pgqueuer": pgqueuer_backlog,
    "procrastinate": procrastinate_backlog,
    "batched": batched_backlog,
}

# -- rows scheduled far in the future (reserve cost at 1M rows) ----------------------
# Written with one INSERT ... SELECT generate_series; run_at / scheduled_at /
# execute_after from tomorrow on, one second apart, all at the default priority.

FUTURE_FILL = {
    "tinydj": """
        INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, created_at,
                                  updated_at, interruptions)
        SELECT 0, 0,
               'tinydj: 1' || chr(10) || 'function: bench_jobs:noop' || chr(10)
                   || 'args: [' || g || ']' || chr(10),
               (now() AT TIME ZONE 'UTC') + interval '1 day' + g * interval '1 second',
               'default', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', 0
        FROM generate_series(1, %(rows)s) AS g
    """,
    # procrastinate's insert triggers write one procrastinate_events row per
    # job; they are skipped for the filler (session_replication_role), which
    # changes nothing for fetching jobs.
    "procrastinate": """
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status,
                                        scheduled_at)
        SELECT 'default', 'noop', 0, jsonb_build_object('i', g), 'todo',
               now() + interval '1 day' + g * interval '1 second'
        FROM generate_series(1, %(rows)s) AS g
    """,
    "pgqueuer": """
        INSERT INTO pgqueuer (priority, entrypoint, payload, status, execute_after)
        SELECT 0, 'noop', convert_to('{"i": ' || g || '}', 'UTF8'), 'queued',
               now() + interval '1 day' + g * interval '1 second'
        FROM generate_series(1, %(rows)s) AS g
    """,
}


def fill_future(url: str, lib: str, rows: int) -> None:
    with pg(url) as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute(FUTURE_FILL[lib], {"rows": rows})
        cur.execute("SET session_replication_role = origin")
