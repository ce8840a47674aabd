"""Reading rows of ``delayed_jobs``, whoever wrote them.

Other programs write rows too (a Node.js service, a migration, a hand-written
INSERT): a handler bound as bytes or written as Latin-1, ``run_at`` as
JavaScript's ``toISOString()`` or ``''``, a priority as text. ``read`` turns a
raw row into a ``Job`` or raises ``UnreadableRow`` naming each column it
could not read; the store then fails that row on its own. ``read_lenient``
never raises (for listing and inspection): what cannot be read becomes a
placeholder (0, the epoch, text with U+FFFD).

Times written with an offset or ``Z`` are converted to naive UTC; ``T`` or a
space, with or without fractions, are both read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from . import recurrence
from .job import COLUMNS, RESERVED_COLUMNS, Job, assemble

__all__ = ["UnreadableRow", "read", "read_lenient", "read_reserved"]

#: Longest value quoted in an error message.
_SHOWN = 60
_EPOCH = datetime(1970, 1, 1)
_valid_schedules: set[str] = set()


class UnreadableRow(ValueError):
    """A row whose columns cannot be read; ``problems`` are (column, reason)."""

    def __init__(self, job_id: object, problems: Sequence[tuple[str, str]]) -> None:
        self.job_id = job_id
        self.problems = list(problems)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        detail = "; ".join(f"column {c} {why}" for c, why in self.problems)
        return f"Unreadable row: {detail}. Fix the row, then retry it."


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def shorten(value: object) -> str:
    """``repr`` of a value, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 5] + "...'" + f" ({len(text)} chars)"


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"holds bytes that are not UTF-8 text: {shorten(value)}") from None
    raise _Bad(f"holds {shorten(value)}, not text")


def _integer(value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bytes | str) and value.strip():
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Bad(f"holds {shorten(value)}, not an integer")


def _time(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        text = _text(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _Bad(f"holds {shorten(value)}, not an ISO 8601 time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _interval(value: object) -> str:
    spec = _text(value)
    if spec not in _valid_schedules:
        try:
            recurrence.parse(spec)
        except (TypeError, ValueError):
            raise _Bad(
                f"holds {shorten(value)}, not an interval such as '1h' or a cron spec"
            ) from None
        if len(_valid_schedules) < 1000:
            _valid_schedules.add(spec)
    return spec


def _nullable(read: Callable[[object], object]) -> Callable[[object], object]:
    return lambda value: None if value is None else read(value)


#: Placeholder of a text column in ``read_lenient``: its bytes, decoded with U+FFFD.
_DECODED = object()

# How each column is read, in ``COLUMNS`` order, with the placeholder that
# ``read_lenient`` puts in place of a value that cannot be read.
_READERS: dict[str, tuple[Callable[[object], object], object]] = {
    "id": (_integer, 0),
    "priority": (_integer, 0),
    "attempts": (_integer, 0),
    "handler": (_text, _DECODED),
    "last_error": (_nullable(_text), _DECODED),
    "run_at": (_time, _EPOCH),
    "locked_at": (_nullable(_time), None),
    "locked_by": (_nullable(_text), _DECODED),
    "failed_at": (_nullable(_time), None),
    "reoccur_in": (_nullable(_interval), None),
    "last_run_at": (_nullable(_time), None),
    "created_at": (_time, _EPOCH),
    "updated_at": (_time, _EPOCH),
    "queue": (_text, _DECODED),
    "key": (_nullable(_text), _DECODED),
    "interruptions": (_integer, 0),
    "concurrency_key": (_nullable(_text), _DECODED),
}
_PLAN = tuple((*_READERS[c], c) for c in COLUMNS)


def _placeholder(value: object, placeholder: object) -> object:
    if placeholder is _DECODED:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)
    return placeholder


def _convert(row: Sequence[object], lenient: bool) -> Job:
    values: list[object] = []
    problems: list[tuple[str, str]] = []
    for (reader, placeholder, column), value in zip(_PLAN, row, strict=True):
        try:
            values.append(reader(value))
        except _Bad as bad:
            problems.append((column, bad.reason))
            values.append(_placeholder(value, placeholder))
    if problems and not lenient:
        raise UnreadableRow(values[0], problems)
    return Job(*values)  # type: ignore[arg-type]


class _Slow(Exception):
    """The fast path met something unusual: read the row column by column."""


_fromiso = datetime.fromisoformat


def _s(value: Any) -> Any:
    return value.decode() if type(value) is bytes else value


def _t(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is bytes:
        value = _fromiso(value.decode())
    elif type(value) is str:
        value = _fromiso(value)
    if value.tzinfo is not None:
        raise _Slow
    return value


#: The last ``run_at`` converted, as read and as a datetime: jobs enqueued
#: together (``send_later_many``, a burst) share it, and are reserved together.
_last_run_at: tuple[Any, Any] = (None, None)


def _times(run_at: Any, created_at: Any, updated_at: Any) -> tuple[datetime, datetime, datetime]:
    """The three times every row has, or ``_Slow``; equal values (a row
    never updated, due when it was made) are converted once."""
    global _last_run_at
    seen, run = _last_run_at
    if type(run_at) is not type(seen) or run_at != seen or run is None:
        run = _t(run_at)
        _last_run_at = (run_at, run)
    created = run if created_at == run_at else _t(created_at)
    updated = created if updated_at == created_at else _t(updated_at)
    if run is None or created is None or updated is None:
        raise _Slow
    return run, created, updated


def _checked(
    integers: tuple[Any, Any, Any],
    handler: Any,
    queue: Any,
    reoccur_in: Any,
) -> tuple[str, str, str | None]:
    """The text columns both fast readers convert, or ``_Slow``."""
    priority, attempts, interruptions = integers
    if type(priority) is not int or type(attempts) is not int or type(interruptions) is not int:
        raise _Slow
    if type(handler) is bytes:
        handler = handler.decode()
    if type(queue) is bytes:
        queue = queue.decode()
    if type(handler) is not str or type(queue) is not str:
        raise _Slow
    if reoccur_in is not None:
        reoccur_in = _s(reoccur_in)
        if reoccur_in not in _valid_schedules:
            raise _Slow
    return handler, queue, reoccur_in


def _fast(row: Sequence[Any]) -> Job:
    """The common case, well-formed rows, in one pass."""
    i, priority, attempts, handler, error, run_at, locked_at, locked_by = row[:8]
    failed_at, reoccur_in, last_run_at, created_at, updated_at, queue, key, stops, limit = row[8:]
    handler, queue, reoccur_in = _checked((priority, attempts, stops), handler, queue, reoccur_in)
    run_at, created_at, updated_at = _times(run_at, created_at, updated_at)
    return assemble(
        i,
        priority,
        attempts,
        handler,
        _s(error),
        run_at,
        _t(locked_at),
        _s(locked_by),
        _t(failed_at),
        reoccur_in,
        _t(last_run_at),
        created_at,
        updated_at,
        queue,
        _s(key),
        stops,
        _s(limit),
    )


#: Where each of ``RESERVED_COLUMNS`` goes in a full row.
_RESERVED_AT = tuple(COLUMNS.index(c) for c in RESERVED_COLUMNS)


def read_reserved(row: Sequence[Any], worker: str, now: datetime) -> Job:
    """The ``Job`` of a row the worker's reservation returned
    (``RESERVED_COLUMNS``): ``locked_at`` is ``now``, ``locked_by`` is
    ``worker``, ``failed_at`` and ``concurrency_key`` are None (the reservation
    takes only such rows). ``UnreadableRow`` like ``read``."""
    try:  # the common case, well-formed rows, in one pass (as ``_fast``)
        (i, priority, attempts, handler, error, run_at, reoccur_in, last_run_at, created_at,
         updated_at, queue, key, stops) = row  # fmt: skip
        handler, queue, reoccur_in = _checked(
            (priority, attempts, stops), handler, queue, reoccur_in
        )
        run_at, created_at, updated_at = _times(run_at, created_at, updated_at)
        return assemble(
            i,
            priority,
            attempts,
            handler,
            None if error is None else _s(error),
            run_at,
            now,
            worker,
            None,
            reoccur_in,
            None if last_run_at is None else _t(last_run_at),
            created_at,
            updated_at,
            queue,
            None if key is None else _s(key),
            stops,
            None,
        )
    except Exception:  # the careful path, on the full row
        return _careful_reserved(row, worker, now)


def _careful_reserved(row: Sequence[Any], worker: str, now: datetime) -> Job:
    """``read_reserved`` column by column (``read``'s careful path)."""
    full: list[object] = [None] * len(COLUMNS)
    for at, value in zip(_RESERVED_AT, row, strict=True):
        full[at] = value
    full[_LOCKED_AT], full[_LOCKED_BY] = now, worker
    return _convert(full, lenient=False)


_LOCKED_AT, _LOCKED_BY = COLUMNS.index("locked_at"), COLUMNS.index("locked_by")


def read(row: Sequence[object]) -> Job:
    """The ``Job`` of a raw row (``COLUMNS`` order); ``UnreadableRow`` if a column
    holds what tinydj cannot use."""
    try:
        return _fast(row)
    except Exception:  # anything unusual: the careful path says what, or copes
        return _convert(row, lenient=False)


def read_lenient(row: Sequence[object]) -> Job:
    """Like ``read``, with placeholders for what cannot be read; never raises."""
    try:
        return _fast(row)
    except Exception:
        return _convert(row, lenient=True)
