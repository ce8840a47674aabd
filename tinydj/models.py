"""The ``delayed_jobs`` table as a peewee model, bound to a given database.

The model is built per database (no import-time ``Meta.database``), so that
tinydj can live in the application's own database and join its transactions.
The model is the schema: ``Store.ensure_schema`` creates it from here.
"""

from __future__ import annotations

from typing import Any

import peewee
from playhouse.sqlite_ext import AutoIncrementField

__all__ = ["TABLE", "make_model"]

TABLE = "delayed_jobs"


class _MicroDateTimeField(peewee.DateTimeField):
    """DATETIME with microseconds (MySQL's plain DATETIME drops them)."""

    field_type = "DATETIME(6)"


def make_model(
    database: peewee.Database,
    *,
    partial_indexes: bool = True,
    micro_datetimes: bool = False,
    autoincrement: bool = False,
) -> type[peewee.Model]:
    """Return a ``DelayedJob`` model class bound to ``database`` (indexes:
    see ``_add_indexes``)."""

    DateTime = _MicroDateTimeField if micro_datetimes else peewee.DateTimeField

    class DelayedJob(peewee.Model):
        id = AutoIncrementField() if autoincrement else peewee.BigAutoField()
        priority = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
        attempts = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
        handler = peewee.TextField()
        last_error = peewee.TextField(null=True)
        run_at = DateTime()
        locked_at = DateTime(null=True)
        locked_by = peewee.CharField(max_length=255, null=True)
        failed_at = DateTime(null=True)
        reoccur_in = peewee.CharField(max_length=64, null=True)
        last_run_at = DateTime(null=True)
        created_at = DateTime()
        updated_at = DateTime()
        queue = peewee.CharField(
            max_length=255, default="default", constraints=[peewee.SQL("DEFAULT 'default'")]
        )
        key = peewee.CharField(max_length=255, null=True)
        interruptions = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
        #: When ``tinydj.cancel`` asked the worker running the job to stop.
        cancel_requested_at = DateTime(null=True)
        #: The key whose concurrency limit the job counts against (``tinydj.limits``).
        concurrency_key = peewee.CharField(max_length=255, null=True)

        class Meta:
            table_name = TABLE

    DelayedJob._meta.database = database
    _add_indexes(DelayedJob, partial_indexes)
    return DelayedJob


def _add_indexes(model: type[peewee.Model], partial: bool) -> None:
    """The indexes of ``delayed_jobs`` (named, so that operators can find them).

    - ``delayed_jobs_ready (priority, run_at, id) WHERE failed_at IS NULL AND
      concurrency_key IS NULL``: the reserve walks it in order, so due jobs are
      found by an index seek however many failed rows (or jobs waiting for a
      concurrency slot) the table keeps;
    - ``delayed_jobs_queue_ready (queue, priority, run_at, id)``: the same for
      workers restricted to some queues;
    - ``delayed_jobs_limited (concurrency_key, priority, run_at, id)``: jobs
      with a concurrency limit, waiting or running (a key's running jobs are
      counted through it);
    - the unique index on ``key`` (recurring rows, ``schedule``, unique jobs).

    Nothing indexes ``locked_by`` or ``locked_at``: every reservation would
    write such an index (on SQLite that halved the rate of the reserve; on
    Postgres it rules out HOT updates). A worker renews, releases and acknowledges by id
    (the primary key), also when it looks for cancel requests; the operator's
    "running" listings scan.

    Without partial indexes (MySQL) ``failed_at`` and ``concurrency_key``
    lead, so that the seek skips failed rows and limited jobs.
    """
    m: Any = model
    ready = m.failed_at.is_null() & m.concurrency_key.is_null() if partial else None
    lead = () if partial else (m.failed_at, m.concurrency_key)
    order = (m.priority, m.run_at, m.id)
    m.add_index(*lead, *order, name="delayed_jobs_ready", where=ready)
    m.add_index(*lead, m.queue, *order, name="delayed_jobs_queue_ready", where=ready)
    waiting = m.concurrency_key.is_null(False) & m.failed_at.is_null() if partial else None
    m.add_index(m.concurrency_key, *order, name="delayed_jobs_limited", where=waiting)
    # Most jobs have no key: a partial index keeps them out of it.
    m.add_index(
        m.key, name="delayed_jobs_key", unique=True, where=m.key.is_null(False) if partial else None
    )
