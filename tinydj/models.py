"""The ``delayed_jobs`` table as a peewee model, bound to a given database.

The model is built per database (no import-time ``Meta.database``), so that
tinydj can live in the application's own database and join its transactions.
The model is the schema: ``Store.ensure_schema`` creates it from here.
"""

from __future__ import annotations

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
    """Return a ``DelayedJob`` model class bound to ``database``.

    Indexes (named, so that operators can find them):

    - ``delayed_jobs_ready (priority, run_at, id) WHERE failed_at IS NULL``:
      the reserve query walks it in order, so due jobs are found by an index
      seek however many failed rows the table keeps;
    - ``delayed_jobs_queue_ready (queue, priority, run_at, id)``: the same for
      workers restricted to some queues;
    - ``delayed_jobs_locked_by (locked_by)``: lease renewal and release;
    - the unique index on ``key`` (recurring rows and ``schedule``).
    """

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

        class Meta:
            table_name = TABLE

    DelayedJob._meta.database = database
    # Without partial indexes (MySQL), failed_at leads, so that failed rows
    # (kept for inspection, possibly millions) are skipped by the seek.
    ready = DelayedJob.failed_at.is_null() if partial_indexes else None
    lead = () if partial_indexes else (DelayedJob.failed_at,)
    DelayedJob.add_index(
        *lead,
        DelayedJob.priority,
        DelayedJob.run_at,
        DelayedJob.id,
        name="delayed_jobs_ready",
        where=ready,
    )
    DelayedJob.add_index(
        *lead,
        DelayedJob.queue,
        DelayedJob.priority,
        DelayedJob.run_at,
        DelayedJob.id,
        name="delayed_jobs_queue_ready",
        where=ready,
    )
    # Most jobs have no key: a partial index keeps them out of it.
    DelayedJob.add_index(
        DelayedJob.key,
        name="delayed_jobs_key",
        unique=True,
        where=DelayedJob.key.is_null(False) if partial_indexes else None,
    )
    DelayedJob.add_index(
        DelayedJob.locked_by,
        name="delayed_jobs_locked_by",
        where=DelayedJob.locked_by.is_null(False) if partial_indexes else None,
    )
    return DelayedJob
