"""Django's connection of one database alias, as a ``tinydj.connections.Source``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import quote, urlencode

from django.db import connections, transaction

from ... import results
from ...config import Config, open_database
from ...connections import borrowed_store
from ...errors import ConfigurationError
from ...store import Store

__all__ = ["DjangoSource", "database_url", "store_for"]


class DjangoSource:
    """Statements run on ``connections[alias]`` of the calling thread, inside
    its ``transaction.atomic()`` if one is open."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.key: Hashable = ("django", alias)
        self.vendor: str = connections[alias].vendor

    def raw(self) -> Any:
        connection = connections[self.alias]
        connection.ensure_connection()
        return connection.connection

    def in_transaction(self) -> bool:
        return bool(connections[self.alias].in_atomic_block)

    def on_commit(self, fn: Callable[[], None]) -> None:
        transaction.on_commit(fn, using=self.alias)

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        atomic: contextlib.AbstractContextManager[Any] = transaction.atomic(using=self.alias)
        return atomic


def store_for(alias: str) -> Store:
    """The Store that writes through Django's connection of ``alias``."""
    source = DjangoSource(alias)
    store = borrowed_store(source, lambda: source)
    # manage.py migrate created the tables: no schema checks at each enqueue
    # (inside transaction.atomic() the Store could never know they committed).
    store.schema_ready = True
    results.table_ready(store)
    return store


def config_for(alias: str, **options: Any) -> Config:
    """A tinydj configuration on Django's connection of ``alias``."""
    store = store_for(alias)
    return Config(database=store.db, store=store, **options)


# Connection options Django understands but the database driver does not.
_DJANGO_ONLY = {
    "pool",
    "server_side_binding",
    "isolation_level",
    "assume_role",
    "init_command",
    "transaction_mode",
    "timeout",
    "charset",
}


def database_url(alias: str) -> str:
    """A tinydj database URL for the Django database ``alias`` (for workers)."""
    settings = connections[alias].settings_dict
    engine: str = settings["ENGINE"]
    name = str(settings.get("NAME") or "")
    if engine.endswith("sqlite3"):
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigurationError(
                f"Django database {alias!r} is in memory: workers need a file or a server"
            )
        from pathlib import Path

        return f"sqlite:///{Path(name).resolve()}"
    if "postgresql" in engine:
        scheme = "postgresql"
    elif "mysql" in engine:
        scheme = "mysql"
    else:
        raise ConfigurationError(f"tinydj does not support the Django database engine {engine}")
    user, password = settings.get("USER") or "", settings.get("PASSWORD") or ""
    auth = quote(str(user), safe="")
    if password:
        auth += ":" + quote(str(password), safe="")
    host = settings.get("HOST") or "localhost"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    options = {
        k: v for k, v in (settings.get("OPTIONS") or {}).items() if k.lower() not in _DJANGO_ONLY
    }
    query = f"?{urlencode(options)}" if options else ""
    return f"{scheme}://{auth}{'@' if auth else ''}{host}{port}/{quote(name)}{query}"


def own_store(alias: str) -> Store:
    """A Store on a connection of its own to ``alias``'s database."""
    return Store(open_database(database_url(alias)))
