"""The five states of a job, and the queries that count, list, clear and retry by state.

Every row is in exactly one state, decided in this order: failed (``failed_at``
set), running (a worker holds its lock), recurring (an idle ``@every`` /
``schedule`` row), ready (due now), scheduled (due later). These are the
command line's views of the table (``tinydj list|stats|clear|retry``); the
worker never runs them. Statements are written in the portable form (``?``
markers, ``"`` quotes) and executed through ``Connection.query``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from . import rows
from .connection import Connection
from .job import Job
from .models import TABLE
from .schema import Schema
from .sql import PLAIN_COLUMNS

__all__ = ["CONDITIONS", "StateQueries"]

#: The WHERE condition of each state; its ``?`` (if any) is ``now``.
CONDITIONS = {
    "ready": "failed_at IS NULL AND locked_at IS NULL AND reoccur_in IS NULL AND run_at <= ?",
    "scheduled": "failed_at IS NULL AND locked_at IS NULL AND reoccur_in IS NULL AND run_at > ?",
    "running": "failed_at IS NULL AND locked_at IS NOT NULL",
    "failed": "failed_at IS NOT NULL",
    "recurring": "failed_at IS NULL AND locked_at IS NULL AND reoccur_in IS NOT NULL",
}

_STATE_CASE = (
    "CASE WHEN failed_at IS NOT NULL THEN 'failed' "
    "WHEN locked_at IS NOT NULL THEN 'running' "
    "WHEN reoccur_in IS NOT NULL THEN 'recurring' "
    "WHEN run_at <= ? THEN 'ready' ELSE 'scheduled' END"
)


class StateQueries:
    """The by-state queries of one store's table."""

    def __init__(self, connection: Connection, schema: Schema) -> None:
        self.connection, self.schema = connection, schema
        self._run, self._query = connection.run, connection.query
        self._t = connection.dialect.bind_time

    def counts(self, now: datetime) -> list[tuple[str, str, int, datetime | None]]:
        """(queue, state, count, oldest run_at) for every queue and state present."""
        self.schema.ensure()
        sql = f"SELECT queue, {_STATE_CASE}, COUNT(*), MIN(run_at) FROM {TABLE} GROUP BY 1, 2"
        found = self._run(lambda: self._query(sql, (self._t(now),)).fetchall())
        result: list[tuple[str, str, int, datetime | None]] = []
        for queue, state, count, oldest in found:
            if isinstance(oldest, str):
                oldest = datetime.fromisoformat(oldest)
            result.append((queue, state, int(count), oldest))
        return result

    def select(
        self,
        now: datetime,
        *,
        state: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[Job], int]:
        """Jobs in id order of one state and/or queue, and how many match in all."""
        self.schema.ensure()
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append(CONDITIONS[state])
            params.extend([self._t(now)] * CONDITIONS[state].count("?"))
        if queue is not None:
            where.append("queue = ?")
            params.append(queue)
        clause = " WHERE " + " AND ".join(where) if where else ""
        rows_sql = f"SELECT {PLAIN_COLUMNS} FROM {TABLE}{clause} ORDER BY id"
        if limit is not None:
            rows_sql += f" LIMIT {int(limit)}"
        count_sql = f"SELECT COUNT(*) FROM {TABLE}{clause}"

        def go() -> tuple[list[Any], int]:
            with self.connection.db.atomic():  # one snapshot for the rows and the count
                found = list(self._query(rows_sql, params).fetchall())
                return found, int(self._query(count_sql, params).fetchone()[0])

        found, total = self._run(go)
        return [rows.read_lenient(r) for r in found], total

    def delete(
        self, now: datetime, states: Sequence[str], *, queue: str | None = None
    ) -> dict[str, int]:
        """Delete the jobs of these states (of one queue); how many of each."""
        self.schema.ensure()

        def go() -> dict[str, int]:
            deleted: dict[str, int] = {}
            with self.connection.transaction():
                for state in states:
                    condition = CONDITIONS[state]
                    params: list[Any] = [self._t(now)] * condition.count("?")
                    if queue is not None:
                        condition += " AND queue = ?"
                        params.append(queue)
                    sql = f"DELETE FROM {TABLE} WHERE {condition}"
                    deleted[state] = int(self._query(sql, params).rowcount)
            return deleted

        return self._run(go)

    def retry_unless_held(self, job_id: int, now: datetime, live_after: datetime) -> bool:
        """``Store.retry`` unless a worker holds a lease newer than ``live_after``.

        One statement, so that a worker cannot take the job in between: a job
        that is running is never made due a second time.
        """
        self.schema.ensure()
        sql = (
            f"UPDATE {TABLE} SET failed_at = NULL, attempts = 0, interruptions = 0, "
            "run_at = ?, locked_at = NULL, locked_by = NULL, updated_at = ? "
            "WHERE id = ? AND (locked_at IS NULL OR locked_at < ?)"
        )
        t = self._t(now)
        params = (t, t, job_id, self._t(live_after))
        return bool(self._run(lambda: self._query(sql, params).rowcount))
