"""Values that only mean something inside the process that holds them.

An open file, a socket, a lock or a database connection cannot be written to
the table and opened again in a worker: a pickled copy would be a dead handle
or a snapshot of another process. ``refusal(value)`` says why such a value
cannot be a job argument and what to pass instead; ``serialize`` raises it as
a ``SerializationError`` (a ``TypeError``) before anything is written.

Optional drivers (psycopg, pymysql, SQLAlchemy...) are looked up in
``sys.modules`` only: a value cannot be an instance of a module that was
never imported, so nothing is imported here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import mmap
import queue
import selectors
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import types

import peewee

__all__ = ["refusal"]

_DATABASE = (
    "a database connection",
    "pass the ids of the rows (or the model instances) and query in the job, "
    "which runs with the database of configure()",
)
_FILE = ("an open file", "pass its path (a str or Path) and open it in the job")
_LOCK = (
    "a lock or other synchronization primitive",
    "it works within one process only; leave it out, or take a lock in the job "
    "(a database row lock, for example)",
)
_MODULE = ("a module", "pass its name and import it in the job")

#: (types, what the value is, what to pass instead), checked in order.
_KNOWN: tuple[tuple[tuple[type, ...], tuple[str, str]], ...] = (
    ((io.BytesIO, io.StringIO), ("", "")),  # in-memory buffers are plain data
    ((io.IOBase, tempfile._TemporaryFileWrapper, mmap.mmap), _FILE),
    (
        (socket.socket, selectors.BaseSelector),
        ("a socket", "pass its address and connect in the job"),
    ),
    ((sqlite3.Connection, sqlite3.Cursor, peewee.Database), _DATABASE),
    ((type(threading.Lock()), type(threading.RLock()), threading.Condition), _LOCK),
    ((threading.Semaphore, threading.Event, threading.Barrier), _LOCK),
    ((threading.Thread,), ("a thread", "pass the data it works on; the job runs in a worker")),
    ((queue.Queue,), ("a queue of this process", "pass its items")),
    ((subprocess.Popen,), ("a running process", "pass its pid, or the command to run")),
    (
        (types.GeneratorType, types.AsyncGeneratorType),
        ("a generator", "pass a list of its items, or the arguments that create it"),
    ),
    (
        (types.CoroutineType, asyncio.Future, concurrent.futures.Future),
        (
            "a coroutine or future",
            "pass the function and its arguments (async def jobs are awaited in the worker)",
        ),
    ),
    (
        (asyncio.AbstractEventLoop, concurrent.futures.Executor),
        ("an event loop or executor", "leave it out: each async job gets an event loop of its own"),
    ),
    ((types.ModuleType,), _MODULE),
    (
        (types.FrameType, types.TracebackType),
        ("a stack frame or traceback", "pass the text (traceback.format_exc())"),
    ),
)

#: Classes of optional modules, by module name: (class names, what, instead).
_OPTIONAL: tuple[tuple[str, tuple[str, ...], tuple[str, str]], ...] = (
    ("psycopg2.extensions", ("connection", "cursor"), _DATABASE),
    ("psycopg", ("Connection", "AsyncConnection", "Cursor", "AsyncCursor"), _DATABASE),
    ("pymysql.connections", ("Connection",), _DATABASE),
    ("pymysql.cursors", ("Cursor",), _DATABASE),
    ("MySQLdb.connections", ("Connection",), _DATABASE),
    ("sqlalchemy.engine", ("Engine", "Connection"), _DATABASE),
    ("sqlalchemy.orm", ("Session",), _DATABASE),
    ("multiprocessing.process", ("BaseProcess",), ("a process", "pass its pid")),
    ("multiprocessing.connection", ("Connection",), ("a pipe", "pass the data")),
    ("multiprocessing.synchronize", ("SemLock", "Condition", "Event", "Barrier"), _LOCK),
    ("multiprocessing.pool", ("Pool",), ("a process pool", "leave it out")),
)


def _optional_types(module: str, names: tuple[str, ...]) -> tuple[type, ...]:
    found = sys.modules.get(module)
    if found is None:
        return ()
    return tuple(t for t in (getattr(found, n, None) for n in names) if isinstance(t, type))


def refusal(value: object) -> str | None:
    """Why ``value`` cannot be stored, with what to pass instead; None if it may be.

    >>> refusal(threading.Lock())  # doctest: +ELLIPSIS
    'cannot store a lock or other synchronization primitive (_thread.lock) as a job ...'
    """
    kind: tuple[str, str] | None = None
    for classes, what in _KNOWN:
        if isinstance(value, classes):
            kind = what
            break
    else:
        for module, names, what in _OPTIONAL:
            classes = _optional_types(module, names)
            if classes and isinstance(value, classes):
                kind = what
                break
    if kind is None or not kind[0]:
        return None
    cls = type(value)
    detail = f"{cls.__module__}.{cls.__qualname__}"
    attribute = "name" if kind is _FILE else "__name__" if kind is _MODULE else None
    name = getattr(value, attribute, None) if attribute else None
    if isinstance(name, str):
        detail += f" {name!r}"
    return f"cannot store {kind[0]} ({detail}) as a job argument: {kind[1]}"
