"""What the benchmark scripts share: running one measurement in a child process.

Each measurement runs in a fresh interpreter (``SCRIPT --child NAME PARAMS``)
in a session of its own, so that on a timeout or Ctrl-C the child and every
worker it forked are killed together. The child prints its result as one
JSON line after ``RESULT_MARK``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULT_MARK = "@@BENCH-RESULT "


def child_env() -> dict[str, str]:
    """Environment for benchmark processes: the job modules and tinydj importable."""
    env = dict(os.environ)
    paths = [HERE, ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("TINYDJ_DATABASE_URL", None)
    return env


def child_main(
    scenarios: dict[str, Callable[[dict[str, Any]], dict[str, Any]]], name: str, params: str
) -> int:
    """The child's side: run one scenario and print its result line."""
    result = scenarios[name](json.loads(params))
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run_child(
    script: str,
    name: str,
    params: dict[str, Any],
    *,
    label: str,
    errors: list[str],
    verbose: bool,
    timeout: float = 900,
    quiet_keys: Iterable[str] = (),
    error_lines: int = 8,
    after: Callable[[], None] | None = None,
) -> dict[str, Any] | None:
    """The parent's side: run ``script --child name params``; its result or None.

    A failure is appended to ``errors`` and printed; ``after`` runs whatever
    happens (cleanup of files, leftover processes).
    """
    cmd = [sys.executable, os.path.abspath(script), "--child", name, json.dumps(params)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(timed out after {timeout} s)"
    except BaseException:  # Ctrl-C: the child runs in a session of its own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        # Whatever the child left behind (it should leave nothing).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if after is not None:
            after()
    took = time.perf_counter() - started
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
    if result is None or proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-error_lines:])
        errors.append(f"{label}: exit {proc.returncode}\n{tail}")
        print(f"  !! {label} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return None
    if verbose:
        skip = set(quiet_keys)
        brief = {
            k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in result.items()
            if k not in skip
        }
        print(f"  {label} -> {brief} [{took:.1f} s]", file=sys.stderr)
    return dict(result)
