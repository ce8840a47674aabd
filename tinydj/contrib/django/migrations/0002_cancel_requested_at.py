"""Bring ``delayed_jobs`` up to date: the ``cancel_requested_at`` column.

tinydj's own schema check adds what an older table lacks (``Schema._migrate``);
Django's stores skip that check (``manage.py migrate`` owns the schema), so
this migration runs it once.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def upgrade(apps: Any, schema_editor: Any) -> None:
    from importlib import import_module

    # The initial migration's create() is idempotent: it creates what is
    # missing and adds the columns an older table lacks.
    import_module("tinydj.contrib.django.migrations.0001_initial").create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("tinydj", "0001_initial")]
    operations = [migrations.RunPython(upgrade, migrations.RunPython.noop)]
