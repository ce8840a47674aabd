"""Django model instances in job arguments: stored as references, loaded fresh.

``!tinydj/django {model: shop.Order, pk: 5}`` in the handler (plus ``db``
when the row came from another database than ``default``); the worker loads
the row again (``Order._base_manager.get(pk=5)``) when the job runs, and a row
deleted meanwhile fails the job with a clear ``last_error``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models

from ... import serialize
from ...errors import HandlerError, SerializationError

__all__ = ["TAG", "reference", "register"]

TAG = "!tinydj/django"
_registered = False


def reference(obj: models.Model) -> dict[str, Any]:
    """``{"model": "app_label.Model", "pk": pk}`` of a saved instance."""
    if obj.pk is None:
        raise SerializationError(
            f"cannot store an unsaved {type(obj).__name__}: save it first, "
            "the job loads it fresh by primary key"
        )
    pk = obj.pk
    if not isinstance(pk, int | str):
        pk = str(pk)  # UUID and other keys travel as text
    spec: dict[str, Any] = {"model": obj._meta.label, "pk": pk}
    if obj._state.db not in (None, "default"):
        spec["db"] = obj._state.db  # loaded again from the database it came from
    return spec


def _load(spec: dict[str, Any], allowed: tuple[str, ...] | None) -> Any:
    label, pk, db = spec.get("model"), spec.get("pk"), spec.get("db") or "default"
    if not isinstance(label, str):
        raise HandlerError(f"invalid Django model reference: {spec!r}")
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise HandlerError(f"unknown Django model {label!r}: {exc}") from None
    if allowed is not None:
        serialize.check_allowed(f"{model.__module__}:{model.__qualname__}", allowed)
    try:
        return model._base_manager.using(db).get(pk=pk)
    except model.DoesNotExist:
        raise HandlerError(
            f"{label} with primary key {pk!r} no longer exists (deleted before the job ran)"
        ) from None


def register() -> None:
    """Teach tinydj's handler format Django models (idempotent)."""
    global _registered
    if not _registered:
        serialize.register_tag(models.Model, TAG, reference, _load)
        _registered = True
