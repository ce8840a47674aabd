"""The Django app of tinydj: its migration creates the tables."""

from __future__ import annotations

from django.apps import AppConfig


class TinyDJConfig(AppConfig):
    name = "tinydj.contrib.django"
    label = "tinydj"
    verbose_name = "tinydj"

    def ready(self) -> None:
        from . import refs

        refs.register()
