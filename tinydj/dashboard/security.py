"""Who may see the dashboard, and which POSTs it accepts.

- the token: sent once as ``?token=...`` (or an ``Authorization: Bearer``
  header), then kept in an HttpOnly, SameSite=Strict cookie holding an HMAC
  of it, not the token;
- every POST carries a CSRF token equal to the ``tinydj_csrf`` cookie (double
  submit), and is refused when ``Origin`` (or ``Referer``) names another host
  or ``Sec-Fetch-Site`` says cross-site, or when the dashboard is read-only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from urllib.parse import urlencode, urlsplit

from ..schedule import utcnow
from .render import Ctx, esc, frame
from .web import HTTPError, Request, Response, cookie

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "check_post", "csrf", "login"]

SESSION_COOKIE = "tinydj_session"
CSRF_COOKIE = "tinydj_csrf"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _session(token: str) -> str:
    return hmac.new(token.encode(), b"tinydj-dashboard", hashlib.sha256).hexdigest()


def login(req: Request, token: str | None) -> Response | None:
    """None when the request may go on; else the answer: the login form, or a
    redirect that keeps a just-given token in the session cookie."""
    if not token:
        return None
    auth = req.environ.get("HTTP_AUTHORIZATION", "")
    if auth.lower().startswith("bearer ") and _same(auth[7:].strip(), token):
        return None
    given = req.query.get("token", [None])[0]
    if given is not None and _same(given, token):
        return _keep_session(req, token)
    session = req.cookies.get(SESSION_COOKIE, "")
    if session and _same(session, _session(token)):
        return None
    return _login_page(req, wrong=given is not None)


def _keep_session(req: Request, token: str) -> Response:
    """Keep the token in a cookie and drop it from the address bar."""
    rest = {k: v for k, v in req.query.items() if k != "token"}
    location = req.base + "/" + req.path
    if rest:
        location += "?" + urlencode(rest, doseq=True)
    headers = [("Location", location), cookie(SESSION_COOKIE, _session(token), req.base + "/")]
    return Response("303 See Other", headers=headers)


def _login_page(req: Request, *, wrong: bool) -> Response:
    flash = '<p class="flash bad">That token is not right.</p>' if wrong else ""
    body = (
        f'{flash}<form class="login" method="get" action="{esc(req.base + "/" + req.path)}">'
        '<label>Dashboard token<input type="password" name="token" autofocus required></label>'
        '<button class="btn primary" type="submit">Open</button></form>'
    )
    page = frame(Ctx(req.base, utcnow(), True, "", ""), "", "Token required", body)
    return Response("401 Unauthorized", page.encode(), headers=[("WWW-Authenticate", "Bearer")])


def check_post(req: Request, *, read_only: bool) -> None:
    """Raise 403 unless this POST may change something."""
    if read_only:
        raise HTTPError("403 Forbidden", "This dashboard is read-only.")
    env = req.environ
    if env.get("HTTP_SEC_FETCH_SITE", "") == "cross-site":
        raise HTTPError("403 Forbidden", "Cross-site request refused.")
    host = env.get("HTTP_HOST") or f"{env.get('SERVER_NAME', '')}:{env.get('SERVER_PORT', '')}"
    origin = env.get("HTTP_ORIGIN") or env.get("HTTP_REFERER")
    if origin and origin != "null" and urlsplit(origin).netloc != host:
        raise HTTPError("403 Forbidden", "Cross-site request refused (Origin does not match).")
    sent = (req.form.get("csrf") or [""])[0]
    kept = req.cookies.get(CSRF_COOKIE, "")
    if not kept or not _same(sent, kept):
        raise HTTPError(
            "403 Forbidden", "Missing or wrong CSRF token: reload the page and try again."
        )


def csrf(req: Request) -> tuple[str, list[tuple[str, str]]]:
    """The CSRF token for the forms of a page, and the header setting it if new."""
    token = req.cookies.get(CSRF_COOKIE, "")
    if re.fullmatch(r"[\w-]{32,64}", token):
        return token, []
    token = secrets.token_urlsafe(32)
    return token, [cookie(CSRF_COOKIE, token, req.base + "/")]
