"""Create tinydj's tables (``delayed_jobs``, ``tinydj_results``) in this database.

The schema is tinydj's own (``tinydj.models``, ``tinydj.results``): the
migration asks tinydj to create it, through the migrating connection.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create(apps: Any, schema_editor: Any) -> None:
    from tinydj import results
    from tinydj.config import Config
    from tinydj.contrib.django.connection import config_for, own_store

    alias = schema_editor.connection.alias
    if schema_editor.connection.vendor == "mysql":
        # DDL commits implicitly on MySQL: tinydj runs it on a connection of its own.
        store = own_store(alias)
        try:
            store.ensure_schema()
            results.create_table(Config(database=store.db, store=store))
        finally:
            store.db.close()
        return
    config = config_for(alias)
    config.store.schema_ready = False  # check for real: this creates the tables
    config.store.ensure_schema()
    results._table(config.store).ready = False
    results.create_table(config)


def drop(apps: Any, schema_editor: Any) -> None:
    from tinydj import results
    from tinydj.models import TABLE

    schema_editor.execute(f"DROP TABLE IF EXISTS {results.TABLE}")
    schema_editor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS tinydj_notify() CASCADE")


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(create, drop)]
