"""pytest fixtures for code that uses tinydj. Opt in, in your ``conftest.py``::

    pytest_plugins = ["tinydj.pytest_plugin"]

It is not registered by installing tinydj (no entry point), so it never
changes the test runs of applications that did not ask for it.

- ``tinydj_config``: tinydj on a fresh SQLite file of the test's
  ``tmp_path``, with a ``FakeClock`` (``tinydj_config.clock``).
- ``tinydj_immediate``: the same in immediate mode (jobs run in the caller).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .config import Config, configure
from .testing import FakeClock

__all__ = ["tinydj_config", "tinydj_immediate"]


def _configure(tmp_path: Path, immediate: bool) -> Iterator[Config]:
    config = configure(
        f"sqlite:///{tmp_path / 'tinydj.sqlite3'}", clock=FakeClock(), immediate=immediate
    )
    yield config
    config.store.close()


@pytest.fixture
def tinydj_config(tmp_path: Path) -> Iterator[Config]:
    """tinydj on a fresh SQLite file with a ``FakeClock`` (``config.clock``)."""
    yield from _configure(tmp_path, immediate=False)


@pytest.fixture
def tinydj_immediate(tmp_path: Path) -> Iterator[Config]:
    """tinydj in immediate mode: ``send_later`` and friends run the job at once."""
    yield from _configure(tmp_path, immediate=True)
