"""Property-based tests: random and mutated handler text, fed to the loader and
to a worker.

Mutations start from real handlers (``serialize.dump_call`` / ``dump_object``)
and flip characters, cut, duplicate and insert text: random unicode, YAML
syntax, YAML and tinydj tags (``!!python/object/apply:os.system`` among them).
Whatever comes out, ``serialize.load`` either returns a ``Call`` or raises
``HandlerError``, and a worker never dies: each job ends deleted (it still
loaded and ran), failed, or rescheduled, with a readable ``last_error``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sample_jobs
from conftest import DATABASES, PG_URL, START, drop_table
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tinydj
from tinydj import HandlerError, serialize
from tinydj.store import NewJob
from tinydj.testing import FakeClock

# -- real handlers and their mutations -----------------------------------------------


def _real_handlers() -> list[str]:
    dump = serialize.dump_call
    report = sample_jobs.Report("Quarterly", 3)
    return [
        dump(sample_jobs.record, ("a.png",), {"width": 300}),
        dump(sample_jobs.record, (1, -2.5, None, True, [1, [2]], {"k": "v"}), {}),
        dump(sample_jobs.record, ("multi\nline", "ünïcødé", "", "yes", "~"), {"n": 2**70}),
        dump(sample_jobs.record, ((1, 2), Decimal("1.10"), uuid.UUID(int=7)), {}),
        dump(sample_jobs.record, (datetime(2030, 1, 2, 3, 4, 5), b"\x00\xff", {1, 2}), {}),
        dump(sample_jobs.send_mail, ("ann@example.com",), {"body": "hi"}, max_attempts=3),
        dump(sample_jobs.always_fails, (1,), {}, max_attempts=2),
        dump(sample_jobs.flaky, ("k", 1), {}),
        dump(sample_jobs.async_record, ({"x": [1, 2]},), {}),
        dump(sample_jobs.takes_when, ("when",), {"delay": 1.5}),
        dump(sample_jobs.record, (sample_jobs.record, sample_jobs.Report), {}),
        dump(sample_jobs.record, ("t",), {}, timeout=5.0),
        dump(report.render, ("pdf",), {}),
        serialize.dump_object(report),
        serialize.dump_object(sample_jobs.Hooked(fail=True)),
        serialize.dump_object(sample_jobs.Rescheduled()),
    ]


REAL = _real_handlers()
#: A pickled call (a lambda): only for the loader, never run by a worker (a
#: corrupted pickle may build code objects that must not be executed).
PICKLED = serialize.dump_call(lambda x: x, (1,), {})
assert "!tinydj/pickle" in PICKLED

SNIPPETS = [
    "!!python/object/apply:os.system ['touch PWNED']",
    "!!python/object/apply:os.system\n- touch PWNED\n",
    "!!python/name:os.system",
    "!!python/object/new:sample_jobs.Report {}",
    "!!python/module:os",
    "!tinydj/pickle gASVAAAAAAAAAACMBWJ1aWx0aW5zlIwFcHJpbnSUk5Qu",
    "!tinydj/pickle '@@@'",
    "!tinydj/ref sample_jobs:record",
    "!tinydj/ref sample_jobs:nope",
    "!tinydj/ref .relative:x",
    "!tinydj/model {model: sample_jobs:Report, pk: 1}",
    "!tinydj/model {model: nope_mod:M, pk: 1}",
    "!tinydj/object {class: builtins:int}",
    "!tinydj/object {class: sample_jobs:Report, attributes: [1]}",
    "!tinydj/tuple 3",
    "!tinydj/decimal nan",
    "!tinydj/decimal zz",
    "!tinydj/uuid zz",
    "!!binary '@@'",
    "!!timestamp 2030-13-45",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!float .inf",
    "!!int 0x_",
    "&a [*a]",
    "*undefined",
    "&x 1\nagain: *x",
    "%YAML 1.1\n---\n",
    "---\n",
    "...\n",
    "? [1]\n: 2\n",
    "{",
    "]",
    ": ",
    "\n  - ",
    "\t",
    "\x00",
    "\ufeff",
    "\u2028",
    "\r",
    "'",
    '"\\x',
    "function: .rel:x\n",
    "function: sample_jobs:calls\n",
    "function: nocolon\n",
    "object: plain text\nmethod: upper\n",
    "method: __class__\n",
    "args: {a: 1}\n",
    "kwargs: [1]\n",
    "kwargs: {1: 2}\n",
    "max_attempts: 0\n",
    "max_attempts: -1\n",
    "max_attempts: 1.5\n",
    "timeout: .inf\n",
    "timeout: .nan\n",
    "timeout: -1\n",
    "timeout: 1e-9\n",
    "tinydj: 2\n",
    "tinydj: 1.0\n",
    "args: [" + "[" * 300 + "]" * 300 + "]\n",
    "args: [123456789" + "0" * 5000 + "]\n",
    "args: [NaN, Infinity, -Infinity]\n",
    'args: ["\\ud800", "\\ud83d\\ude00", "\\/"]\n',
]


@st.composite
def mutated(draw: st.DrawFn, sources: list[str] = REAL) -> str:
    """A real handler with 1 to 4 random edits."""
    text = draw(st.sampled_from(sources))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "truncate", "insert", "tag", "line"]))
        i = draw(st.integers(0, len(text)))
        if op == "flip" and text:
            i = min(i, len(text) - 1)
            text = text[:i] + draw(st.characters()) + text[i + 1 :]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 20)) :]
        elif op == "truncate":
            text = text[:i]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=12)) + text[i:]
        elif op == "tag":
            text = text[:i] + draw(st.sampled_from(SNIPPETS)) + text[i:]
        else:  # duplicate or drop a whole line
            lines = text.split("\n")
            j = draw(st.integers(0, len(lines) - 1))
            if draw(st.booleans()):
                lines.insert(j, lines[j])
            else:
                del lines[j]
            text = "\n".join(lines)
    return text


handlers = st.one_of(
    mutated(),
    mutated([*REAL, PICKLED]),
    st.text(max_size=200),
    st.sampled_from(SNIPPETS).map(lambda s: "tinydj: 1\nfunction: sample_jobs:record\n" + s),
)

# Deterministic examples found by these properties (or close to them): every run
# tries them first.
KNOWN = [
    'tinydj: 1\nfunction: sample_jobs:always_fails\nargs: ["\\ud800"]\n',
    "tinydj: 1\nfunction: .relative:x\n",
    "tinydj: 1\nfunction: ..:x\n",
    "tinydj: 1\nfunction: sample_jobs:record\ntimeout: .inf\n",
    "tinydj: 1\nfunction: sample_jobs:record\ntimeout: Infinity\n",
    "tinydj: 1\nfunction: sample_jobs:record\nargs: [!!python/object/apply:os.system ['x']]\n",
]


def with_known(test: Any) -> Any:
    for handler in KNOWN:
        test = example(handler=handler)(test)
    return test


# -- the loader --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@with_known
@given(handler=handlers)
def test_load_returns_a_call_or_raises_handler_error(handler: str) -> None:
    for allow_pickle in (True, False):
        try:
            call = serialize.load(handler, allow_pickle=allow_pickle)
        except HandlerError as exc:
            assert str(exc).strip(), "a HandlerError must say what is wrong"
            continue
        assert isinstance(call, serialize.Call)
        assert callable(call.fn)
        assert isinstance(call.args, list) and isinstance(call.kwargs, dict)
        assert call.max_attempts is None or (
            isinstance(call.max_attempts, int) and call.max_attempts >= 1
        )
        assert call.timeout is None or (call.timeout > 0 and math.isfinite(call.timeout)), (
            f"timeout {call.timeout!r} accepted: a job would fail with an OverflowError "
            "at run time instead of failing to load"
        )


# Handlers in the shape tinydj writes for plain calls (``args: [...]`` as JSON
# flow collections), built from tokens where JSON and YAML 1.1 tend to differ:
# number forms, escapes, raw line separators and control characters.
_NUMBERS = ["0", "-0", "1.0", "-0.0", "1.5", "10", "007", "1e5", "1E+2", "0.1", "2" * 30]
_NUMBERS += ["NaN", "Infinity", "-Infinity", "1_000", ".5", "5.", "0x10", "+1"]
_ESCAPES = ["\\/", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "\\b", "\\f", "\\t"]
_ESCAPES += ["\\u2028", "\\u0085", "\\\\", '\\"', "\\u0000", "\\x41", "\\e"]
_RAW = ["\u2028", "\u2029", "\x85", "\x80", "\x7f", "\ufeff", "\t", "#", ": ", "'", "&", "*"]


@st.composite
def json_string(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.text(max_size=6).map(
                    lambda t: json.dumps(t, ensure_ascii=False)[1:-1].replace("/", "\\/")
                ),
                st.sampled_from(_ESCAPES),
                st.sampled_from(_RAW),
            ),
            max_size=4,
        )
    )
    return '"' + "".join(parts) + '"'


json_token = st.recursive(
    st.one_of(
        st.sampled_from(_NUMBERS),
        st.sampled_from(["true", "false", "null", "True", "yes", "~"]),
        json_string(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(json_string(), inner), max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=6,
)


@st.composite
def plain_shaped(draw: st.DrawFn) -> str:
    text = "tinydj: 1\nfunction: sample_jobs:record\n"
    text += f"args: [{', '.join(draw(st.lists(json_token, max_size=3)))}]\n"
    if draw(st.booleans()):
        text += f"kwargs: {{{draw(json_string())}: "
        text += f"{draw(json_token)}}}\n"
    if draw(st.booleans()):
        text += f"timeout: {draw(st.sampled_from(_NUMBERS))}\n"
    if draw(st.booleans()):
        text += f"max_attempts: {draw(st.sampled_from(_NUMBERS))}\n"
    return text


def _meaning(call: serialize.Call) -> tuple[Any, ...]:
    return (call.fn, repr(call.args), repr(call.kwargs), call.max_attempts, repr(call.timeout))


@settings(max_examples=300, deadline=None, database=None)
@with_known
@given(handler=st.one_of(plain_shaped(), mutated(REAL[:3]), mutated(REAL[5:8])))
def test_a_leading_yaml_comment_does_not_change_what_a_handler_means(handler: str) -> None:
    """A handler is YAML: a comment line in front of it changes nothing. (tinydj
    reads the common shape of handler with a faster parser of its own; the
    comment sends the same text through PyYAML, so the two must agree.)"""

    def meaning(text: str) -> Any:
        try:
            return _meaning(serialize.load(text))
        except HandlerError:
            return HandlerError
        except Exception as exc:  # reported by the property above
            return type(exc)

    assert meaning(handler) == meaning("# a comment\n" + handler)


def test_python_object_tags_are_refused_and_never_run(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    for snippet in SNIPPETS[:4]:
        handler = f"tinydj: 1\nfunction: sample_jobs:record\nargs: [{snippet}]\n"
        with pytest.raises(HandlerError):
            serialize.load(handler)
        handler = f"tinydj: 1\nfunction: {snippet}\n"
        with pytest.raises(HandlerError):
            serialize.load(handler)
    assert not (tmp_path / "PWNED").exists()


def test_a_module_that_fails_to_import_is_a_handler_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's module that raises on import (a syntax error, a bad setting at
    import time) is a load failure like a missing module, not an exception
    that escapes the loader (and from there, the worker)."""
    (tmp_path / "tinydj_fuzz_broken_mod.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "tinydj_fuzz_syntax_mod.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = []
    for module in ("tinydj_fuzz_broken_mod", "tinydj_fuzz_syntax_mod", ".relative"):
        try:
            serialize.load(f"tinydj: 1\nfunction: {module}:f\n")
        except HandlerError:
            pass
        except Exception as exc:
            problems.append(f"{module}: {type(exc).__name__}: {exc}")
    assert not problems, problems


# -- the worker ----------------------------------------------------------------------------


@pytest.fixture
def fuzz_config(sqlite_url: str) -> Iterator[tinydj.Config]:
    sample_jobs.reset()
    cfg = tinydj.configure(sqlite_url, clock=FakeClock(START))
    cfg.store.ensure_schema()
    yield cfg
    cfg.store.close()


SENTINEL = serialize.dump_call(sample_jobs.record, ("sentinel",), {})


def _work_off_garbage(cfg: tinydj.Config, garbage: list[str]) -> None:
    """Insert ``garbage`` handlers and a good job; a worker must run through all."""
    store = cfg.store
    store.clear()
    sample_jobs.reset()
    now = cfg.clock()
    jobs = store.insert([NewJob(h, "default", 0, now) for h in [*garbage, SENTINEL]], now)
    worker = tinydj.Worker(config=cfg, lock_timeout=30.0)
    try:
        succeeded, failed = worker.work_off(len(jobs) + 5)
    except BaseException as exc:
        rows = [(r.id, r.locked_by, r.attempts, r.last_error) for r in store.select()]
        raise AssertionError(
            f"work_off raised {type(exc).__name__}: {exc}; rows: {rows}; handlers: {garbage!r}"
        ) from exc
    assert succeeded + failed == len(jobs), (succeeded, failed, garbage)
    assert (("sentinel",), {}) in sample_jobs.calls, "the good job after the garbage did not run"
    left = {r.id: r for r in store.select()}
    for job in jobs:
        row = left.get(job.id)
        if row is None:
            continue  # the mutation still loaded, and ran fine: deleted
        assert row.locked_by is None and row.locked_at is None, f"left locked: {row}"
        error = row.last_error or ""
        assert error.strip(), f"no last_error on {row}"
        assert error.isprintable() or "\n" in error, "last_error must be text"
        assert row.attempts >= 1, row
        if row.failed_at is None:  # a failed attempt: retried later
            assert row.run_at > now, row


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@with_known
@given(handler=st.one_of(mutated(), st.text(max_size=200)))
def test_worker_survives_garbage_handlers(fuzz_config: tinydj.Config, handler: str) -> None:
    _work_off_garbage(fuzz_config, [handler])


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(garbage=st.lists(mutated(), min_size=2, max_size=6))
def test_worker_survives_a_batch_of_garbage(fuzz_config: tinydj.Config, garbage: list[str]) -> None:
    _work_off_garbage(fuzz_config, garbage)


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(garbage=st.lists(mutated().filter(lambda h: "\x00" not in h), min_size=1, max_size=4))
def test_worker_survives_garbage_handlers_on_every_database(
    config: tinydj.Config, garbage: list[str]
) -> None:
    """The same on each database (without NUL characters, which PostgreSQL
    refuses in text columns)."""
    _work_off_garbage(config, garbage)


@pytest.mark.parametrize("kind", ["surrogate", "nul"])
def test_failure_messages_the_database_cannot_store_do_not_jam_the_worker(
    config: tinydj.Config, kind: str
) -> None:
    """A job's exception message may hold text a database column cannot: a lone
    surrogate (a file name decoded with ``surrogateescape``) or a NUL character
    (PostgreSQL). Recording the failure must still work: the worker goes on,
    and the row shows the attempt with a readable error, unlocked."""
    handler = serialize.dump_call(sample_jobs.fails_with, (kind,), {})
    _work_off_garbage(config, [handler])
    (row,) = config.store.select()
    assert row.attempts == 1 and "no such file" in (row.last_error or "")


# -- every column of a row written by another program ------------------------------------

#: Columns another program may write, and the ones NOT NULL in the table.
_ROW_COLUMNS = (
    "priority",
    "attempts",
    "handler",
    "run_at",
    "locked_at",
    "locked_by",
    "queue",
    "reoccur_in",
    "interruptions",
    "created_at",
    "updated_at",
)
_NOT_NULL = {"priority", "attempts", "handler", "run_at", "queue", "interruptions"}
_NOT_NULL |= {"created_at", "updated_at"}
_SMALL = st.integers(-(10**6), 10**6)
_TIMES = st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31))
_ISO_TEXT = st.one_of(
    _TIMES.map(lambda t: t.isoformat(" ", "microseconds")),
    _TIMES.map(lambda t: t.isoformat("T", "milliseconds") + "Z"),
    st.tuples(_TIMES, st.integers(-14, 14)).map(lambda p: p[0].isoformat() + f"{p[1]:+03d}:00"),
    st.sampled_from(["", " ", "now", "2030-13-45", "2030-01-01T25:00", "infinity"]),
)
_INTERVALS = st.one_of(st.sampled_from(["1h", "30s", "1d", "0s", "-1h", "1 fortnight"]), st.text())


def _sqlite_value(column: str) -> st.SearchStrategy[Any]:
    """Anything SQLite stores: text, bytes (UTF-8 or not), numbers, NULL."""
    anything = st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40),
        _SMALL,
        st.floats(allow_nan=False, allow_infinity=False),
        _ISO_TEXT,
    )
    typical = {
        "priority": _SMALL,
        "attempts": _SMALL,
        "interruptions": _SMALL,
        "handler": st.sampled_from(REAL[:8]).map(lambda h: h),
        "reoccur_in": _INTERVALS,
        "queue": st.just("default"),
    }.get(column, _ISO_TEXT)
    value = st.one_of(typical, typical, anything)
    return value if column in _NOT_NULL else st.one_of(st.none(), value)


def _pg_value(column: str) -> st.SearchStrategy[Any]:
    """What a typed Postgres column accepts: in-range values of its type."""
    text = st.text(st.characters(blacklist_characters="\x00"), max_size=40)
    strategy: st.SearchStrategy[Any] = {
        "priority": _SMALL,
        "attempts": _SMALL,
        "interruptions": _SMALL,
        "handler": st.one_of(st.sampled_from(REAL[:8]), text),
        "reoccur_in": _INTERVALS.filter(lambda s: "\x00" not in s).map(lambda s: s[:60]),
        "queue": st.one_of(st.just("default"), text),
        "locked_by": text,
    }.get(column, _TIMES)
    return strategy if column in _NOT_NULL else st.one_of(st.none(), strategy)


def _garbage_rows(value: Any) -> st.SearchStrategy[list[dict[str, Any]]]:
    row = st.fixed_dictionaries({c: value(c) for c in _ROW_COLUMNS})
    return st.lists(row, min_size=1, max_size=4)


@pytest.fixture(params=DATABASES[:2])
def sqlite_or_pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tinydj.Config]:
    sample_jobs.reset()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        if not PG_URL:
            pytest.fail("TINYDJ_TEST_PG_URL is not set: in CI the postgres tests must run")
        drop_table(PG_URL)
        url = PG_URL
    cfg = tinydj.configure(url, clock=FakeClock(START))
    cfg.store.ensure_schema()
    yield cfg
    cfg.store.close()
    cfg.database.close()


def _insert_raw(cfg: tinydj.Config, row: dict[str, Any]) -> None:
    marks = ", ".join(["?"] * len(_ROW_COLUMNS))
    sql = f"INSERT INTO delayed_jobs ({', '.join(_ROW_COLUMNS)}) VALUES ({marks})"
    cfg.database.execute_sql(cfg.store._q(sql), [row[c] for c in _ROW_COLUMNS])


def _work_off_foreign_rows(cfg: tinydj.Config, garbage: list[dict[str, Any]]) -> None:
    store = cfg.store
    store.clear()
    sample_jobs.reset()
    for row in garbage:
        _insert_raw(cfg, row)
    now = cfg.clock()
    (sentinel,) = store.insert([NewJob(SENTINEL, "default", 0, now)], now)
    worker = tinydj.Worker(config=cfg, lock_timeout=30.0, batch_size=8)
    try:
        worker.work_off(len(garbage) + 5)
    except BaseException as exc:
        raise AssertionError(
            f"work_off raised {type(exc).__name__}: {exc}; rows {garbage!r}"
        ) from exc
    assert (("sentinel",), {}) in sample_jobs.calls, f"the good job did not run: {garbage!r}"
    for job in store.select():  # never raises, whatever the rows hold
        assert job.locked_by != worker.name, f"left locked: {job}"
        if job.failed:
            assert (job.last_error or "").strip(), job
    assert store.get(sentinel.id) is None


_ROW_FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_ROW_FUZZ
@given(data=st.data())
def test_worker_survives_rows_written_by_other_programs(
    sqlite_or_pg: tinydj.Config, data: st.DataObject
) -> None:
    """Every column a reservation reads, with values of the wrong type or form
    (SQLite stores anything anywhere; Postgres what its types accept): the
    worker goes on, the good job runs, nothing is left locked, and a failed
    row says why."""
    cfg = sqlite_or_pg
    value = _sqlite_value if cfg.store.dialect.name == "sqlite" else _pg_value
    _work_off_foreign_rows(cfg, data.draw(_garbage_rows(value)))
