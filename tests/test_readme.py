"""The README stays true: each of its Python examples runs as written.

Every ```python block of README.md is written to a file in a fresh temporary
directory and run there by a Python of its own (``-W error``), with
``TINYDJ_DATABASE_URL`` pointing at a new SQLite file in that directory and
this checkout first on the path; the test fails if the block exits non-zero
(a traceback's line numbers are the README's).
A block that defines ``test_*`` functions is a pytest example and is run with
pytest instead (it must pass, and collect at least one test).

An HTML comment on the line just before a fence says how to run a block:

- ``<!-- readme-test: postgres -->`` / ``<!-- readme-test: mysql -->``: the
  block needs that server. Its ``postgresql://`` / ``mysql://`` URLs are
  replaced by this session's test database (``TINYDJ_TEST_PG_URL`` /
  ``TINYDJ_TEST_MYSQL_URL``); without one it is skipped, and in CI it fails.
- ``<!-- readme-test: skip (reason) -->``: not run; the reason is required.

The README's first commands (install and run ``examples/quickstart.py``; run
the tests) are checked as well.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MYSQL_URL, PG_URL, drop_table

from tinydj.config import open_database

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Generous: a block runs in well under a second; this only stops a hang.
BLOCK_TIMEOUT = 120

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->$")
_SKIP = re.compile(r"^skip(?:\s*\((.*)\))?$")
#: Fences that would hide a Python example from this test.
_PYTHON_ALIASES = {"py", "py3", "pycon", "python", "python3"}
_DEFINES_TEST = re.compile(r"^(?:async\s+)?def test_\w*\(", re.MULTILINE)

#: Marker -> (URL scheme the block uses, this session's server URL, variable).
SERVERS = {
    "postgres": ("postgresql", PG_URL, "TINYDJ_TEST_PG_URL"),
    "mysql": ("mysql", MYSQL_URL, "TINYDJ_TEST_MYSQL_URL"),
}


class ReadmeError(ValueError):
    """The README is malformed for this test (unclosed fence, bad marker)."""


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    heading: str
    code: str
    marker: str | None  # the text after "readme-test:", if any

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-") or "top"
        return f"{slug}-L{self.line}"

    @property
    def skip_reason(self) -> str | None:
        match = _SKIP.match(self.marker or "")
        return None if match is None else (match.group(1) or "").strip()


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, each with its section and marker.

    Raises ``ReadmeError`` for an unclosed fence, a marker before anything but
    a Python block, an unknown marker, or a skip without a reason.
    """
    blocks: list[Block] = []
    lines = text.splitlines()
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        fence = _FENCE.match(line)
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ReadmeError(f"line {i + 1}: code fence is never closed")
        previous = lines[i - 1].strip() if i > 0 else ""
        found = _MARKER.match(previous)
        marker = found.group(1) if found else None
        if fence.group(1).lower() in _PYTHON_ALIASES and fence.group(1) != "python":
            raise ReadmeError(f"line {i + 1}: write ```python, not ```{fence.group(1)}")
        if fence.group(1) == "python":
            blocks.append(Block(i + 1, heading, "\n".join(lines[i + 1 : end]) + "\n", marker))
        elif marker is not None:
            raise ReadmeError(f"line {i}: readme-test marker before a non-Python block")
        i = end + 1
    for block in blocks:
        _check_marker(block)
    return blocks


def _check_marker(block: Block) -> None:
    if block.marker is None or block.marker in SERVERS:
        return
    if block.skip_reason is None:
        known = ", ".join([*SERVERS, "skip (reason)"])
        raise ReadmeError(
            f"line {block.line - 1}: unknown readme-test marker {block.marker!r} (known: {known})"
        )
    if not block.skip_reason:
        raise ReadmeError(f"line {block.line - 1}: a skip marker must give its reason: skip (...)")


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def _env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TINYDJ_DATABASE_URL"] = database_url
    env.pop("PYTHONSTARTUP", None)
    return env


def _server_code(block: Block) -> str:
    """The block's code pointed at this session's test server (or skip / fail)."""
    scheme, url, variable = SERVERS[block.marker or ""]
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{variable} is not set: in CI the README's {block.marker} blocks must run")
        pytest.skip(f"needs {block.marker}: {variable} not set")
    pattern = re.compile(rf"""{scheme}://[^"'\s]+""")
    if not pattern.search(block.code):
        pytest.fail(f"README line {block.line}: a {block.marker} block without a {scheme}:// URL")
    drop_table(url)
    return pattern.sub(url, block.code)


def run_block(block: Block, directory: Path) -> subprocess.CompletedProcess[str]:
    """Run one block in ``directory`` as a script (or with pytest); return the result."""
    code = _server_code(block) if block.marker in SERVERS else block.code
    is_pytest = _DEFINES_TEST.search(code) is not None
    script = directory / ("test_readme_block.py" if is_pytest else "readme_block.py")
    # Blank lines first: a traceback's line numbers are then the README's.
    script.write_text("\n" * block.line + code, encoding="utf-8")
    command = [sys.executable, "-W", "error"]
    if is_pytest:
        command += ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", script.name]
    else:
        command.append(script.name)
    return subprocess.run(
        command,
        cwd=directory,
        env=_env(f"sqlite:///{directory / 'readme.sqlite3'}"),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.skip_reason:
        pytest.skip(f"README line {block.line}: {block.skip_reason}")
    result = run_block(block, tmp_path)
    if result.returncode != 0:
        pytest.fail(
            f"README.md line {block.line} ({block.heading}) exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    if _DEFINES_TEST.search(block.code):
        assert re.search(r"\b[1-9]\d* passed\b", result.stdout), result.stdout
    if block.marker in SERVERS:  # it ran against the server: it created the table there
        server = open_database(SERVERS[block.marker][1] or "")
        try:
            assert server.table_exists("delayed_jobs")
        finally:
            server.close()


def test_the_readme_has_python_examples_in_its_main_sections() -> None:
    headings = {block.heading for block in BLOCKS}
    assert {"At a glance", "Transactions", "Testing code that uses tinydj"} <= headings
    assert len(BLOCKS) >= 6


def test_a_failing_block_fails(tmp_path: Path) -> None:
    failing = Block(1, "bad", "import tinydj\nraise SystemExit(tinydj.stats()['nope'])\n", None)
    result = run_block(failing, tmp_path)
    assert result.returncode != 0
    assert "KeyError" in result.stderr


def test_a_block_runs_against_its_own_sqlite_file(tmp_path: Path) -> None:
    code = "import tinydj\nprint(tinydj.get_config().url)\n"
    result = run_block(Block(1, "db", code, None), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sqlite:///{tmp_path / 'readme.sqlite3'}"


def test_a_failing_pytest_block_fails(tmp_path: Path) -> None:
    code = "def test_wrong():\n    assert 1 + 1 == 3\n"
    result = run_block(Block(1, "bad", code, None), tmp_path)
    assert result.returncode != 0
    assert "1 failed" in result.stdout


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("skip", "must give its reason"),
        ("skip ()", "must give its reason"),
        ("skip ( )", "must give its reason"),
        ("sqlite-only", "unknown readme-test marker"),
    ],
)
def test_markers_are_checked(marker: str, message: str) -> None:
    text = f"# T\n\n<!-- readme-test: {marker} -->\n```python\nprint(1)\n```\n"
    with pytest.raises(ReadmeError, match=re.escape(message)):
        python_blocks(text)


@pytest.mark.parametrize("language", ["py", "Python", "python3"])
def test_python_under_another_name_is_an_error(language: str) -> None:
    with pytest.raises(ReadmeError, match="write ```python"):
        python_blocks(f"# T\n```{language}\nprint(1)\n```\n")


def test_a_skip_marker_with_a_reason_is_read() -> None:
    text = "# T\n<!-- readme-test: skip (needs a mail server) -->\n```python\nprint(1)\n```\n"
    (block,) = python_blocks(text)
    assert block.skip_reason == "needs a mail server"
    assert block.code == "print(1)\n"
    assert block.id == "t-L3"


def test_an_unclosed_fence_is_an_error() -> None:
    with pytest.raises(ReadmeError, match="never closed"):
        python_blocks("# T\n```python\nprint(1)\n")


def _first_bash_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block is not None, "the README no longer starts with a bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_the_first_commands_name_files_and_extras_that_exist() -> None:
    install, tests = _first_bash_commands()[:2]
    assert "pip install -e ." in install
    assert "python examples/quickstart.py" in install
    assert (ROOT / "examples" / "quickstart.py").is_file()
    assert "pip install -e '.[dev]'" in tests
    assert tests.endswith("python -m pytest")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "dev" in project["optional-dependencies"]


def test_the_quickstart_runs(tmp_path: Path) -> None:
    env = _env("")
    del env["TINYDJ_DATABASE_URL"]  # the quickstart uses the default: ./tinydj.sqlite3
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded=6 failed=1" in result.stdout
    assert "card 0000 0000 was declined" in result.stdout
    assert re.search(r"done \d+\.\d ms after send_later", result.stdout)
    assert (tmp_path / "tinydj.sqlite3").is_file()
