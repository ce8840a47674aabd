"""The dashboard's HTTP plumbing: requests, responses, cookies, forms.

Nothing here knows about jobs; ``app`` routes, ``security`` guards,
``actions`` changes the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "MAX_BODY",
    "Environ",
    "HTTPError",
    "Request",
    "Response",
    "StartResponse",
    "cookie",
    "number",
    "parse_request",
    "read_form",
]

#: Largest form body read (bulk actions send at most a page of ids).
MAX_BODY = 256 * 1024

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class HTTPError(Exception):
    """Answered as an error page with this status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    environ: Environ
    #: ``PATH_INFO`` below the mount point, without the outer slashes.
    path: str
    #: The mount point: every link starts with it.
    base: str
    query: dict[str, list[str]]
    cookies: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        """A query or form value, stripped; None when absent or blank."""
        values = self.query.get(name) or self.form.get(name)
        value = values[0].strip() if values else ""
        return value or None


@dataclass
class Response:
    status: str = "200 OK"
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def parse_request(environ: Environ, prefix: str) -> Request:
    """The request, its path taken below ``SCRIPT_NAME`` and ``prefix``."""
    base = environ.get("SCRIPT_NAME", "").rstrip("/")
    path = environ.get("PATH_INFO", "") or "/"
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :] or "/"
        base += prefix
    elif prefix and not base.endswith(prefix):
        base += prefix
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return Request(environ, path.strip("/"), base, query, _cookies(environ))


def _cookies(environ: Environ) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def cookie(name: str, value: str, path: str, *, max_age: int | None = None) -> tuple[str, str]:
    """A ``Set-Cookie`` header: HttpOnly, SameSite=Strict."""
    jar: SimpleCookie = SimpleCookie()
    jar[name] = value
    morsel = jar[name]
    morsel["path"] = path
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if max_age is not None:
        morsel["max-age"] = max_age
    return ("Set-Cookie", morsel.OutputString())


def number(value: str | None, name: str) -> int | None:
    """A job id or cursor from the request (``#`` allowed); 400 when it is not one."""
    if value is None:
        return None
    try:
        n = int(value.lstrip("#"))
    except ValueError:
        raise HTTPError("400 Bad Request", f"{name} must be a number, not {value!r}") from None
    if not 0 <= n < 2**63:
        raise HTTPError("400 Bad Request", f"{name} is out of range")
    return n


def read_form(environ: Environ) -> dict[str, list[str]]:
    """The url-encoded body; 413 beyond ``MAX_BODY``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise HTTPError("413 Content Too Large", "The form is too large.")
    data = environ["wsgi.input"].read(length) if length > 0 else b""
    return parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True)
