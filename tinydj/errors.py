"""Exceptions raised by tinydj.

Every error tinydj raises on purpose derives from one root::

    TinyDJError
    ├── ConfigurationError      bad database URL, missing driver, bad option
    ├── SerializationError      an argument cannot be stored (also a TypeError)
    ├── HandlerError            a stored job cannot be loaded (bad YAML, missing
    │                           function, deleted model row, refused pickle)
    ├── DatabaseBusy            SQLite stayed locked beyond the retry budget
    ├── DatabaseUnavailable     the database cannot be reached (also a
    │                           peewee.OperationalError)
    ├── JobRunning              an operation refused because a live worker runs
    │                           the job (``retry_job``)
    └── JobTimeout              a job ran longer than its ``timeout`` (also a
                                TimeoutError); recorded as a failed attempt

The docstring of each class is its default message.
"""

from __future__ import annotations

import peewee


class TinyDJError(Exception):
    """A tinydj error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(TinyDJError):
    """tinydj is not configured correctly."""


class SerializationError(TinyDJError, TypeError):
    """The job cannot be stored: an argument can be neither YAML nor pickled."""


class HandlerError(TinyDJError):
    """The stored job cannot be loaded."""


class DatabaseBusy(TinyDJError):
    """The database stayed locked for longer than tinydj is willing to wait."""


class DatabaseUnavailable(TinyDJError, peewee.OperationalError):
    """The database cannot be reached."""

    def __init__(self, message: str | None = None) -> None:
        TinyDJError.__init__(self, message)


class JobTimeout(TinyDJError, TimeoutError):
    """The job ran longer than its timeout."""


class JobRunning(TinyDJError):
    """A live worker is running this job; it was left alone."""
