"""tinydj's dashboard: see the queue and act on it from a browser.

Server-rendered HTML and a little plain JavaScript, standard library only: no
CDN, no build step, works offline.

>>> from tinydj import dashboard
>>> dashboard.serve()  # doctest: +SKIP
tinydj dashboard on http://127.0.0.1:8642/ (Ctrl-C to stop)

``make_app()`` returns the WSGI application, to mount under a prefix of a
Flask or Django project behind its own authentication.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import peewee

from ..config import Config
from .app import ENV_TOKEN, Dashboard, make_app

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ENV_TOKEN",
    "Dashboard",
    "make_app",
    "make_server_for",
    "serve",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the ``tinydj.dashboard`` logger, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server_for(
    database: str | peewee.Database | Config | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    read_only: bool = False,
    token: str | None = None,
) -> WSGIServer:
    """A ready (not yet serving) HTTP server for the dashboard; port 0 picks one."""
    app = make_app(database, read_only=read_only, token=token)
    return make_server(host, port, app, handler_class=_QuietHandler)


def serve(
    database: str | peewee.Database | Config | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    read_only: bool = False,
    token: str | None = None,
    *,
    out: TextIO | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C; prints its URL first.

    Binds 127.0.0.1 unless told otherwise. On another interface without a
    token (``token=`` or ``$TINYDJ_DASHBOARD_TOKEN``) it warns: anyone who can
    reach the port can retry and delete jobs (unless ``read_only``).
    """
    out = out or sys.stdout
    server = make_server_for(database, host, port, read_only=read_only, token=token)
    app = server.get_app()
    assert isinstance(app, Dashboard)
    shown = f"[{host}]" if ":" in host else host
    mode = " read-only" if read_only else ""
    print(
        f"tinydj{mode} dashboard on http://{shown}:{server.server_port}/ (Ctrl-C to stop)", file=out
    )
    if not _is_loopback(host) and not app.token:
        print(
            f"warning: {host} is reachable from other machines and no token is set "
            f"(--token or ${ENV_TOKEN})",
            file=out,
        )
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
