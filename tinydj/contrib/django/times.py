"""Times between the table (naive UTC) and Django (aware while ``USE_TZ``)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone

from ...schedule import to_naive_utc

__all__ = ["aware", "naive_utc"]


def aware(when: datetime | None) -> datetime | None:
    """A naive-UTC time from the table as Django expects it (aware if USE_TZ)."""
    if when is None:
        return None
    moment = when.replace(tzinfo=UTC)
    from django.conf import settings

    return moment if settings.USE_TZ else timezone.make_naive(moment)


def naive_utc(when: datetime) -> datetime:
    """A time from Django (naive ones are in its current time zone) as naive UTC."""
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    return to_naive_utc(when)
