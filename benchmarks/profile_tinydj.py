#!/usr/bin/env python
"""Where tinydj's time goes: cProfile of a 1-thread drain, single and bulk enqueue.

    python benchmarks/profile_tinydj.py                 # all three, top 25 by own time
    python benchmarks/profile_tinydj.py drain -n 20000 --sort cumulative --top 40
    python benchmarks/profile_tinydj.py single --dump single.prof   # for snakeviz etc.
    python benchmarks/profile_tinydj.py drain -n 20000 --callgrind  # instructions per job

``--callgrind`` counts the instructions of the drain under valgrind (a figure
that barely moves when other processes load the machine, unlike a time): it
runs the same script twice under ``valgrind --tool=callgrind``, once with the
drain and once stopping just before it (``--setup-only``), and divides the
difference by the number of jobs, with the batch size fixed at 128 (see
``callgrind_drain``). ``--bare`` runs without cProfile.

The drain is profiled through ``Worker.work_off(n)`` in the main thread
(cProfile sees only the thread that enables it): the same reserve / run /
acknowledge code as a ``Worker(threads=1)`` runner thread, where the finished
job is deleted in the transaction that reserves the next one. Each profile uses
a fresh SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_jobs  # noqa: E402

import tinydj  # noqa: E402


def _configure(tmp: str, name: str) -> tinydj.Config:
    config = tinydj.configure("sqlite:///" + os.path.join(tmp, name + ".db"))
    tinydj.create_tables()
    return config


def profile_drain(tmp: str, n: int) -> tuple[cProfile.Profile, float]:
    config = _configure(tmp, "drain")
    for k in range(0, n, 1000):
        bench_jobs.noop.send_later_many([(i,) for i in range(k, min(n, k + 1000))])
    worker = tinydj.Worker(threads=1, config=config, batch_size=BATCH_SIZE)
    bench_jobs.noop.send_later(-1)
    worker.work_off(1)  # warm-up: imports, @every rows, first connection
    prof = cProfile.Profile()
    if SETUP_ONLY:
        return prof, 0.0
    started = time.perf_counter()
    if BARE:
        done = worker.work_off(n)
    else:
        prof.enable()
        done = worker.work_off(n)
        prof.disable()
    took = time.perf_counter() - started
    assert done == (n, 0), done
    return prof, took


def profile_single(tmp: str, n: int) -> tuple[cProfile.Profile, float]:
    _configure(tmp, "single")
    bench_jobs.noop.send_later(-1)
    prof = cProfile.Profile()
    started = time.perf_counter()
    prof.enable()
    for i in range(n):
        bench_jobs.noop.send_later(i)
    prof.disable()
    return prof, time.perf_counter() - started


def profile_bulk(tmp: str, n: int) -> tuple[cProfile.Profile, float]:
    _configure(tmp, "bulk")
    bench_jobs.noop.send_later_many([(-1,)])
    prof = cProfile.Profile()
    started = time.perf_counter()
    prof.enable()
    for k in range(0, n, 1000):
        bench_jobs.noop.send_later_many([(i,) for i in range(k, min(n, k + 1000))])
    prof.disable()
    return prof, time.perf_counter() - started


#: Set by ``--setup-only`` / ``--bare`` / ``--batch-size`` (drain only).
SETUP_ONLY = False
BARE = False
BATCH_SIZE: int | None = None


def _instructions(argv: list[str]) -> int:
    """Instructions valgrind's callgrind counts for ``python argv``."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, os.path.abspath(__file__), *argv,
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    found = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
    if found is None:
        raise RuntimeError("no instruction count in valgrind's output:\n" + run.stderr[-2000:])
    return int(found.group(1))


def callgrind_drain(n: int) -> int:
    """Print and return the instructions per job of a drain of ``n`` jobs.

    The batch size is fixed at ``MAX_BATCH``, what the adaptive size reaches
    for no-op jobs at full speed: under valgrind jobs take fifty times as
    long, and the adaptive size would shrink with them (and with the load).
    """
    fixed = ["drain", "-n", str(n), "--batch-size", str(tinydj.worker.MAX_BATCH)]
    base = _instructions([*fixed, "--setup-only"])
    full = _instructions([*fixed, "--bare"])
    per_job = (full - base) // n
    print(f"drain of {n:,} jobs: {full - base:,} instructions, {per_job:,} per job")
    return per_job


PROFILES = {"drain": profile_drain, "single": profile_single, "bulk": profile_bulk}
DEFAULT_N = {"drain": 10_000, "single": 5_000, "bulk": 20_000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", choices=[*PROFILES, []], default=list(PROFILES))
    parser.add_argument("-n", type=int, help="jobs (drain 10,000; single 5,000; bulk 20,000)")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dump", metavar="PATH", help="also write the raw profile (one only)")
    parser.add_argument("--callgrind", action="store_true", help="drain: instructions per job")
    parser.add_argument("--bare", action="store_true", help="drain: time it without cProfile")
    parser.add_argument("--batch-size", type=int, help="drain: Worker(batch_size=N)")
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global SETUP_ONLY, BARE, BATCH_SIZE
    SETUP_ONLY, BARE, BATCH_SIZE = args.setup_only, args.bare, args.batch_size
    if args.callgrind:
        callgrind_drain(args.n or DEFAULT_N["drain"])
        return 0
    with tempfile.TemporaryDirectory(prefix="tinydj-profile-") as tmp:
        for what in args.what:
            n = args.n or DEFAULT_N[what]
            prof, took = PROFILES[what](tmp, n)
            if SETUP_ONLY:
                continue
            if BARE:
                print(f"{what}: {n:,} jobs in {took:.3f} s ({n / took:,.0f}/s)")
                continue
            # Profiling slows Python code down (a lot more than C code): the
            # rate below is not the benchmark figure, the proportions are.
            print(f"\n=== {what}: {n:,} jobs in {took:.2f} s under cProfile ({n / took:,.0f}/s)")
            stream = io.StringIO()
            stats = pstats.Stats(prof, stream=stream)
            stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
            text = stream.getvalue()
            print(text[text.find("   ncalls") :].rstrip())
            if args.dump:
                prof.dump_stats(args.dump)
            tinydj.get_config().store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
