"""Keeping passwords out of everything tinydj prints.

Database URLs reach error messages, log lines, ``repr(config)`` and the
command line's output; each passes through ``mask`` first.

>>> mask("mysql://root:secret@db.example/app")
'mysql://root:***@db.example/app'
"""

from __future__ import annotations

import re

__all__ = ["mask"]

# scheme://user:password@host  (the password may hold anything but "@" and "/")
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)([^@/\s]+)(@)")
# password=secret / password: secret / "password": "secret" (DSNs, dicts, kwargs)
_KEY_PASSWORD = re.compile(
    r"""(\b(?:password|passwd|pwd)['"]?\s*[=:]\s*['"]?)([^'"\s,;&)}]+)""", re.IGNORECASE
)


def mask(text: str) -> str:
    """``text`` with every password in URLs and ``password=...`` pairs as ``***``."""
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    return _KEY_PASSWORD.sub(r"\1***", text)
