"""Waking idle workers of other processes on the same SQLite file.

SQLite has no NOTIFY. Each worker process that waits for jobs on a SQLite
file binds one Unix datagram socket (a ``Receiver``) in a directory that
belongs to the file::

    <temp dir>/tinydj-<uid>/<16 hex digits of the file's real path>/<pid>.<random>

(``TINYDJ_WAKE_DIR`` replaces ``<temp dir>/tinydj-<uid>``). After an insert
commits, the enqueueing process sends one byte to every socket there
(``Sender.send``): non-blocking; the socket of a process that died is removed
(connection refused); a full socket already holds a wake-up, so that send is
skipped. The directory lives under the temp dir rather than beside the file
so that a read-only directory or a long path (sockets take at most about 100
bytes of path) does not matter, and it is keyed by the real path so that every
spelling of the file's name meets in one place.

Whatever fails here costs latency, never a job: without a channel (no
``AF_UNIX``, an in-memory database, a directory that cannot be created) a
worker watches ``PRAGMA data_version`` at a short tick instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import select
import socket
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["STATS", "ChannelStats", "Receiver", "Sender", "directory_for", "sender_for"]

log = logging.getLogger("tinydj.worker")

#: Longest socket path (bytes) tried: AF_UNIX allows 104 (macOS) to 108 (Linux).
MAX_PATH = 100
#: How often (seconds) a sender looks whether workers came or went.
RECHECK = 0.001
#: A directory listing is trusted only once the directory's mtime is this
#: much (seconds) older than the listing: mtimes are coarse, a change within
#: the same tick would go unseen.
RACY = 1.0
_WAKE = b"\x01"
_GONE = (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK)


@dataclass
class ChannelStats:
    """What the channel did in this process (for tests and diagnostics)."""

    #: Wake-ups received by workers (datagrams drained).
    received: int = 0
    #: Datagrams sent after commits.
    sent: int = 0
    #: Sockets of dead processes removed.
    removed: int = 0


#: This process's counters.
STATS = ChannelStats()
_reported: set[str] = set()


def _once(key: str, message: str, *args: object) -> None:
    if key not in _reported:
        _reported.add(key)
        log.debug(message, *args)


def _file_path(name: object) -> str | None:
    """The file of a SQLite database name; None for an in-memory database."""
    if not isinstance(name, str) or name in ("", ":memory:"):
        return None
    if name.startswith("file:"):
        path, _, query = name[5:].partition("?")
        if "mode=memory" in query:
            return None
        if path.startswith("//"):  # file://host/path: only the local host
            path = "/" + path[2:].partition("/")[2]
        name = unquote(path)
        if name in ("", ":memory:"):
            return None
    return os.path.realpath(name)


def _base() -> str:
    base = os.environ.get("TINYDJ_WAKE_DIR")
    if base:
        return base
    return os.path.join(tempfile.gettempdir(), f"tinydj-{os.getuid()}")


def directory_for(name: object) -> str | None:
    """The channel directory of the SQLite database ``name`` (its file
    name as peewee holds it), or None when it can have none."""
    if not (hasattr(socket, "AF_UNIX") and hasattr(os, "getuid") and hasattr(select, "poll")):
        return None
    path = _file_path(name)
    if path is None:
        return None
    key = hashlib.sha1(os.fsencode(path)).hexdigest()[:16]
    return os.path.join(_base(), key)


def _make_directory(directory: str) -> bool:
    """Create ``directory`` and its parent (mode 0700) unless they exist;
    True if both are directories of this user."""
    base = os.path.dirname(directory)
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        mine = all(_is_own_directory(os.lstat(d)) for d in (base, directory))
    except OSError as exc:
        _once(directory, "no wake channel in %s (%s): watching data_version", directory, exc)
        return False
    if not mine:
        _once(directory, "no wake channel in %s: not a directory of this user", directory)
    return mine


def _is_own_directory(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


class Receiver:
    """One worker's socket, plus a pipe through which the worker's own
    threads interrupt a wait (``poke``).

    Not thread-safe: the owner (``WakeUp``) serializes every call but
    ``wait``, and makes sure nobody closes the receiver during a ``wait``.
    """

    def __init__(self, directory: str) -> None:
        self.pid = os.getpid()
        self.path = os.path.join(directory, f"{self.pid}.{secrets.token_hex(4)}")
        if len(os.fsencode(self.path)) > MAX_PATH:
            raise OSError(errno.ENAMETOOLONG, "socket path too long", self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._poke_r, self._poke_w = os.pipe()
        os.set_blocking(self._poke_r, False)
        os.set_blocking(self._poke_w, False)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._poll.register(self._poke_r, select.POLLIN)

    @classmethod
    def open(cls, name: object) -> Receiver | None:
        """A receiver for the SQLite database ``name``, or None (logged
        once at debug) when there can be none."""
        directory = directory_for(name)
        if directory is None:
            return None
        error: OSError | None = None
        for _ in range(3):  # a worker that stops may remove the empty directory
            if not _make_directory(directory):
                return None
            try:
                return cls(directory)
            except FileNotFoundError as exc:
                error = exc
            except OSError as exc:
                error = exc
                break
        _once(directory, "no wake channel in %s (%s): watching data_version", directory, error)
        return None

    def wait(self, timeout: float) -> bool:
        """Block until a datagram or a poke arrives, or ``timeout`` seconds;
        True unless the time ran out."""
        ready = self._poll.poll(max(timeout, 0.0) * 1000.0)
        if any(fd == self._poke_r for fd, _ in ready):
            self.clear_pokes()
        return bool(ready)

    def drain(self) -> int:
        """Read the datagrams waiting; return how many there were."""
        n = 0
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self._sock.recv(16)
                n += 1
        STATS.received += n
        return n

    def poke(self) -> None:
        """Make a ``wait`` in progress return (from another thread)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.write(self._poke_w, b"p")

    def clear_pokes(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._poke_r, 64):
                pass

    @property
    def inherited(self) -> bool:
        """True in a child forked after the receiver was opened."""
        return os.getpid() != self.pid

    def close(self) -> None:
        """Close the socket and the pipe; remove the socket file (unless
        inherited: the parent still uses it)."""
        if not self.inherited:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):  # the last one out
                os.rmdir(os.path.dirname(self.path))
        self._sock.close()
        for fd in (self._poke_r, self._poke_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Sender:
    """Sends the wake-ups of one channel directory (shared by the threads of
    a process: see ``sender_for``)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._targets: tuple[str, ...] = ()
        self._next_check = 0.0
        self._mtime: int | None = None
        self._listed_at = 0.0

    def active(self) -> bool:
        """True if some worker may listen (cheap: the directory is looked at
        once per ``RECHECK``)."""
        if time.monotonic() >= self._next_check:
            self._refresh()
        return bool(self._targets)

    def send(self, skip: frozenset[str] = frozenset()) -> None:
        """One byte to each worker's socket but those in ``skip`` (a commit
        may have made jobs due)."""
        if time.monotonic() >= self._next_check:
            self._refresh()
        for path in self._targets:
            if path in skip:
                continue
            try:
                self._sock.sendto(_WAKE, path)
                STATS.sent += 1
            except OSError as exc:
                if exc.errno in _GONE:
                    self._remove(path, exc.errno)
                # A full socket (EAGAIN, ENOBUFS) already holds a wake-up.

    def _refresh(self) -> None:
        self._next_check = time.monotonic() + RECHECK
        try:
            st = os.stat(self.directory)
        except OSError:
            self._targets, self._mtime = (), None
            return
        if st.st_uid != os.getuid():
            self._targets, self._mtime = (), None
            return
        if st.st_mtime_ns == self._mtime and self._listed_at - st.st_mtime > RACY:
            return
        try:
            names = os.listdir(self.directory)
        except OSError:
            names = []
        self._mtime, self._listed_at = st.st_mtime_ns, time.time()
        self._targets = tuple(os.path.join(self.directory, n) for n in names)

    def _remove(self, path: str, code: int) -> None:
        self._targets = tuple(p for p in self._targets if p != path)
        if code == errno.ECONNREFUSED:  # nobody reads it: its process died
            try:
                os.unlink(path)
            except OSError:
                return
            STATS.removed += 1


_senders: dict[str, Sender] = {}
_senders_lock = threading.Lock()


def sender_for(name: object) -> Sender | None:
    """The sender for the SQLite database ``name``, or None (no channel)."""
    directory = directory_for(name)
    if directory is None:
        return None
    sender = _senders.get(directory)
    if sender is None:
        with _senders_lock:
            sender = _senders.get(directory)
            if sender is None:
                sender = _senders[directory] = Sender(directory)
    return sender
