"""Settings of the tiny Django project the integration tests run.

Databases: ``default`` is SQLite (``TINYDJ_DJANGO_SQLITE``, a file path);
``pg`` is PostgreSQL when ``TINYDJ_DJANGO_PG`` (a URL) is set, with its own
schema (``TINYDJ_DJANGO_PG_SCHEMA``). Each has a tinydj task backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tinydj-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Paris"  # not UTC, so that time zone slips show
INSTALLED_APPS = ["tinydj.contrib.django", "shop"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TINYDJ_DJANGO_SQLITE", str(BASE_DIR / "db.sqlite3")),
    }
}
TASKS = {
    "default": {
        "BACKEND": "tinydj.contrib.django.TaskBackend",
        "QUEUES": ["default", "mail"],
        "OPTIONS": {"max_attempts": 2},
    }
}

_pg = os.environ.get("TINYDJ_DJANGO_PG")
if _pg:
    url = urlparse(_pg)
    DATABASES["pg"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname or "localhost",
        "PORT": str(url.port or 5432),
        "OPTIONS": {
            "options": f"-c search_path={os.environ.get('TINYDJ_DJANGO_PG_SCHEMA', 'public')}"
        },
    }
    TASKS["pg"] = {
        "BACKEND": "tinydj.contrib.django.TaskBackend",
        "QUEUES": ["default", "mail"],
        "OPTIONS": {"database": "pg", "max_attempts": 2},
    }
