"""tinydj as Django's task backend (``django.tasks``, Django 6+).

.. code-block:: python

    INSTALLED_APPS += ["tinydj.contrib.django"]
    TASKS = {"default": {"BACKEND": "tinydj.contrib.django.TaskBackend"}}

Jobs are rows of ``delayed_jobs`` in the Django database of the backend's
``database`` option (default ``"default"``), created by ``manage.py migrate``;
``enqueue()`` writes them through Django's own connection, so they join
``transaction.atomic()``. ``manage.py tinydj work`` runs a worker.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TaskBackend", "every"]


def __getattr__(name: str) -> Any:
    # Lazy, so that listing the app in INSTALLED_APPS imports no task machinery
    # before Django's app registry is ready.
    if name == "TaskBackend":
        from .backend import TaskBackend

        return TaskBackend
    if name == "every":
        from .recurring import every

        return every
    raise AttributeError(name)
