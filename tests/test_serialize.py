from __future__ import annotations

import collections
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import peewee
import pytest
import sample_jobs
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tinydj import serialize
from tinydj.errors import HandlerError, SerializationError


def tinydj_config() -> Any:
    import tinydj

    return tinydj.configure("sqlite:///:memory:")


def round_trip(*args: Any, **kwargs: Any) -> serialize.Call:
    text = serialize.dump_call(sample_jobs.record, args, kwargs)
    return serialize.load(text)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2**70,
        1.5,
        "text",
        "multi\nline",
        "ünïcødé",
        b"\x00\xff",
        [1, [2, 3]],
        {"a": {"b": [1]}},
        {1: "int key"},
        (1, 2),
        ((1, 2), [3]),
        {1, 2},
        datetime(2030, 1, 2, 3, 4, 5, 678),
        datetime(2030, 1, 1, tzinfo=UTC),
        date(2030, 1, 1),
        Decimal("1.10"),
        uuid.UUID(int=5),
        "",
        "yes",
        "null",
        "1.0",
        "~",
    ],
)
def test_plain_values_round_trip_with_their_types(value: Any) -> None:
    call = round_trip(value, key=value)
    assert call.args == [value] and call.kwargs == {"key": value}
    assert type(call.args[0]) is type(value)


def test_handler_is_readable_yaml() -> None:
    text = serialize.dump_call(
        sample_jobs.send_mail, ("ann@example.com",), {"body": "hi"}, max_attempts=3
    )
    assert text == (
        'tinydj: 1\nfunction: sample_jobs:send_mail\nargs: ["ann@example.com"]\n'
        'kwargs: {"body": "hi"}\nmax_attempts: 3\n'
    )
    assert yaml.safe_load(text)["function"] == "sample_jobs:send_mail"


def test_function_is_stored_by_path_and_runs() -> None:
    call = serialize.load(sample_jobs.send_mail._handler(tinydj_config(), ("a@b.c",), {}))
    assert call.fn is sample_jobs.send_mail
    assert call.max_attempts == 3
    assert call.name == "sample_jobs:send_mail"


def test_object_job_is_stored_as_attributes() -> None:
    text = serialize.dump_object(sample_jobs.Report("Q3", pages=4))
    assert "!tinydj/object" in text and "class: sample_jobs:Report" in text
    assert "pickle" not in text
    call = serialize.load(text)
    assert isinstance(call.target, sample_jobs.Report)
    assert (call.target.title, call.target.pages) == ("Q3", 4)
    call.fn()
    assert sample_jobs.calls[-1] == ("report", "Q3", 4)


def test_bound_method_keeps_its_object() -> None:
    text = serialize.dump_call(sample_jobs.Report("x").render, ("pdf",), {})
    call = serialize.load(text)
    assert call.fn("pdf") == "pdf"
    assert call.name.endswith("Report.render")


def test_lambda_and_closure_fall_back_to_pickle() -> None:
    captured = 41
    text = serialize.dump_call(lambda n: n + captured, (1,), {})
    assert "!tinydj/pickle" in text
    call = serialize.load(text)
    assert call.fn(*call.args) == 42


def test_unrepresentable_object_argument_is_pickled() -> None:
    class Local:  # not importable: pickled by value
        def __init__(self) -> None:
            self.v = 3

    call = round_trip(Local())
    assert call.args[0].v == 3


def test_functions_and_classes_as_arguments_are_references() -> None:
    text = serialize.dump_call(sample_jobs.record, (sample_jobs.Report, Path), {})
    assert "!tinydj/ref 'sample_jobs:Report'" in text
    assert serialize.load(text).args == [sample_jobs.Report, Path]


@pytest.mark.parametrize("bad", [threading.Lock(), (x for x in [1])])
def test_unstorable_argument_raises_type_error(bad: Any) -> None:
    with pytest.raises(TypeError) as info:
        serialize.dump_call(sample_jobs.record, (bad,), {})
    assert isinstance(info.value, SerializationError)


def test_strict_mode_refuses_pickle_on_both_sides() -> None:
    with pytest.raises(TypeError, match="pickle is disabled"):
        serialize.dump_call(lambda: None, (), {}, allow_pickle=False)
    text = serialize.dump_call(lambda: None, (), {})
    with pytest.raises(HandlerError, match="pickle is disabled"):
        serialize.load(text, allow_pickle=False)
    # plain data and importable functions are fine in strict mode
    plain = serialize.dump_call(sample_jobs.record, (1, "a"), {}, allow_pickle=False)
    assert serialize.load(plain, allow_pickle=False).args == [1, "a"]


def test_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        serialize.dump_call(42, (), {})  # type: ignore[arg-type]


def test_enqueue_object_without_perform_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="perform"):
        serialize.dump_object(object())


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (
            "tinydj: 1\nfunction: no_such_module_xyz:fn\n",
            "cannot import module 'no_such_module_xyz'",
        ),
        ("tinydj: 1\nfunction: sample_jobs:nope\n", "has no attribute 'nope'"),
        ("tinydj: 1\nfunction: [unclosed\n", "not valid YAML"),
        ("just text", "not a tinydj job"),
        ("tinydj: 99\nfunction: sample_jobs:record\n", "unknown handler format"),
        ("tinydj: 1\n", "neither a function"),
        ("tinydj: 1\nfunction: sample_jobs:calls\n", "not callable"),
        ("tinydj: 1\nfunction: nocolon\n", "invalid import path"),
        ("tinydj: 1\nfunction: sample_jobs:record\nargs: {a: 1}\n", "args must be a list"),
        ("tinydj: 1\nfunction: !!python/name:os.system\n", "could not determine a constructor"),
        ("tinydj: 1\nfunction: !tinydj/pickle '@@@'\n", "unpickle"),
        (
            "tinydj: 1\nobject: !tinydj/object {class: sample_jobs:Report}\nmethod: nope\n",
            "no method",
        ),
    ],
)
def test_bad_handlers_raise_readable_handler_errors(handler: str, message: str) -> None:
    with pytest.raises(HandlerError) as info:
        serialize.load(handler)
    assert message in str(info.value)


def test_python_tags_are_never_constructed() -> None:
    evil = "tinydj: 1\nfunction: sample_jobs:record\nargs: [!!python/object/apply:os.getcwd []]\n"
    with pytest.raises(HandlerError):
        serialize.load(evil)


class _Base(peewee.Model):
    pass


db = peewee.SqliteDatabase(":memory:")


class Author(peewee.Model):
    name = peewee.CharField()

    class Meta:
        database = db

    def greet(self, greeting: str) -> str:
        return f"{greeting} {self.name}"


@pytest.fixture
def authors() -> Any:
    db.connect(reuse_if_open=True)
    db.create_tables([Author])
    yield Author
    db.drop_tables([Author])
    db.close()


def test_model_instances_are_references_loaded_fresh(authors: Any) -> None:
    ann = Author.create(name="Ann")
    text = serialize.dump_call(sample_jobs.record, (ann,), {"who": [ann]})
    assert "!tinydj/model" in text and f"pk: {ann.id}" in text
    Author.update(name="Annabel").where(Author.id == ann.id).execute()
    call = serialize.load(text)
    assert call.args[0].name == "Annabel"  # fresh from the database
    assert call.kwargs["who"][0].id == ann.id


def test_bound_method_of_a_model_reloads_self(authors: Any) -> None:
    bob = Author.create(name="Bob")
    call = serialize.load(serialize.dump_call(bob.greet, ("Hi",), {}))
    assert call.fn(*call.args) == "Hi Bob"


def test_deleted_row_fails_loading_with_a_clear_error(authors: Any) -> None:
    gone = Author.create(name="Gone")
    text = serialize.dump_call(sample_jobs.record, (gone,), {})
    gone.delete_instance()
    with pytest.raises(HandlerError, match="no longer exists"):
        serialize.load(text)


def test_unsaved_model_is_a_type_error(authors: Any) -> None:
    with pytest.raises(TypeError, match="unsaved"):
        serialize.dump_call(sample_jobs.record, (Author(name="new"),), {})


def test_dump_is_deterministic() -> None:
    args = ({"b": 1, "a": timedelta(seconds=3).total_seconds()},)
    assert serialize.dump_call(sample_jobs.record, args, {}) == serialize.dump_call(
        sample_jobs.record, args, {}
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(json_values, max_size=4), kwargs=st.dictionaries(st.text(), json_values))
def test_fast_lane_and_yaml_agree(args: list[Any], kwargs: dict[str, Any]) -> None:
    """Whatever lane a handler takes, YAML reads it the same as tinydj does."""
    text = serialize.dump_call(sample_jobs.record, args, kwargs)
    call = serialize.load(text)
    assert call.args == args and call.kwargs == kwargs
    doc = yaml.safe_load(text)
    assert doc.get("args", []) == args and doc.get("kwargs", {}) == kwargs


@settings(max_examples=200, deadline=None)
@given(args=st.lists(json_values, max_size=4), kwargs=st.dictionaries(st.text(), json_values))
def test_plain_call_reads_what_load_reads(args: list[Any], kwargs: dict[str, Any]) -> None:
    """The executor's shortcut (``plain_call``) agrees with ``load`` or steps aside."""
    text = serialize.dump_call(sample_jobs.record, args, kwargs)
    call = serialize.load(text)
    plain = serialize.plain_call(text)
    assert plain is None or plain == (call.fn, call.args, call.kwargs)
    if serialize._fast_load(text) is not None and call.max_attempts is None:
        assert plain is not None  # what tinydj writes for a plain call takes the shortcut


@pytest.mark.parametrize(
    "handler",
    [
        "tinydj: 1\nfunction: sample_jobs:record\nargs: null\n",
        "tinydj: 1\nfunction: sample_jobs:record\nargs: 5\n",
        "tinydj: 1\nfunction: sample_jobs:record\nmax_attempts: 2\n",
        "tinydj: 1\nfunction: sample_jobs:record\nargs: [1]\ntimeout: 5\n",
        "tinydj: 1\nfunction: sample_jobs:record\nkwargs: {}\nargs: [1]\n",
        "tinydj: 1\nfunction: sample_jobs:record\nargs: [1e5]\n",
        "tinydj: 1\nfunction: sample_jobs:record\nargs: [1]",
        "tinydj: 2\nfunction: sample_jobs:record\n",
        "tinydj: 1\nfunction: 'sample_jobs:record'\n",
    ],
)
def test_plain_call_leaves_other_handlers_to_load(handler: str) -> None:
    assert serialize.plain_call(handler) is None


def test_plain_call_refuses_what_load_refuses() -> None:
    for handler in ("tinydj: 1\nfunction: sample_jobs:nothing\n", "tinydj: 1\nfunction: os:sep\n"):
        with pytest.raises(HandlerError):
            serialize.load(handler)
        with pytest.raises(HandlerError):
            serialize.plain_call(handler)
    with pytest.raises(HandlerError, match="outside the allowed modules"):
        serialize.plain_call('tinydj: 1\nfunction: os:system\nargs: ["true"]\n', ("sample_jobs",))


def test_fast_lane_is_used_for_plain_calls() -> None:
    text = serialize.dump_call(sample_jobs.record, (1, "a", [None, True]), {"k": 1.5})
    assert serialize._fast_load(text) is not None
    for unusual in ((1, 2), 1e300, "line\u2028separator", float("nan")):
        text = serialize.dump_call(sample_jobs.record, (unusual,), {})
        assert serialize._fast_load(text) is None
        loaded = serialize.load(text).args[0]
        assert loaded == unusual or (loaded != loaded and unusual != unusual)


def test_allowed_modules_limit_what_a_handler_can_name() -> None:
    allowed = ("sample_jobs",)
    ok = serialize.dump_call(sample_jobs.record, (sample_jobs.Report("r"),), {})
    assert serialize.load(ok, allowed_modules=allowed).fn is sample_jobs.record
    for handler in (
        'tinydj: 1\nfunction: os:system\nargs: ["true"]\n',
        'tinydj: 1\nfunction: builtins:eval\nargs: ["1"]\n',
        "tinydj: 1\nfunction: sample_jobs:record\nargs: [!tinydj/ref 'os:system']\n",
        "tinydj: 1\nobject: !tinydj/object {class: 'pathlib:Path', attributes: {}}\n"
        "method: unlink\n",
        "tinydj: 1\nfunction: sample_jobs_evil:run\n",
    ):
        with pytest.raises(HandlerError, match="outside the allowed modules"):
            serialize.load(handler, allowed_modules=allowed)


def test_escapes_written_by_hand_are_read_as_yaml_reads_them() -> None:
    # JSON joins a surrogate pair, PyYAML refuses it: the fast lane steps aside.
    handler = 'tinydj: 1\nfunction: sample_jobs:record\nargs: ["\\ud83d\\ude00"]\n'
    assert serialize._fast_load(handler) is None
    with pytest.raises(HandlerError):
        serialize.load(handler)
    assert serialize.load(serialize.dump_call(sample_jobs.record, ("C:\\users",), {})).args == [
        "C:\\users"
    ]


@pytest.mark.parametrize("options", [{}, {"max_attempts": 3, "timeout": 2.5}])
def test_bulk_handlers_are_the_single_handlers(options: dict[str, Any]) -> None:
    pairs: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((5, "a"), {"k": [1, 2]}),
        ((1, 2), {}),
        ((), {"x": (1,)}),
        ((), {}),
        ((1.5e300,), {}),
    ]
    for fn in (sample_jobs.record, sample_jobs.send_mail, sample_jobs.Report("r").render):
        writer = serialize.CallWriter(fn, **options)
        assert [writer.dump(args, kwargs) for args, kwargs in pairs] == [
            serialize.dump_call(fn, args, kwargs, **options) for args, kwargs in pairs
        ]


def test_a_task_writes_each_call_as_dump_call_does() -> None:
    calls: list[Any] = [
        (1, "a"),
        [2, "b"],
        {"x": 1},
        collections.OrderedDict(y=[1]),
        (),
        {},
        ((1, 2),),
        ("tab\tand\nnewline",),
        (sample_jobs.Report("r"),),
        {"k": 10**30, "ü": 1.5},
        (float("nan"),),
    ]
    for options in ({}, {"max_attempts": 3, "timeout": 2.5}):
        writer = serialize.CallWriter(sample_jobs.record, **options)  # type: ignore[arg-type]
        expected = [
            serialize.dump_call(sample_jobs.record, (), dict(c), **options)  # type: ignore[arg-type]
            if isinstance(c, dict)
            else serialize.dump_call(sample_jobs.record, tuple(c), {}, **options)  # type: ignore[arg-type]
            for c in calls
        ]
        assert writer.dump_many(calls) == expected
        assert writer.path == "sample_jobs:record"


def _nested(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("dump", ["single", "bulk"])
def test_int_too_long_for_text_is_a_type_error(dump: str) -> None:
    with pytest.raises(SerializationError, match="4300 digits") as info:
        if dump == "single":
            serialize.dump_call(sample_jobs.record, (10**5000,), {})
        else:
            serialize.CallWriter(sample_jobs.record).dump_many([{"n": 10**5000}])
    assert isinstance(info.value, TypeError) and "hex(n)" in str(info.value)
    # ints that str() can write still take the fast lane
    assert round_trip(10**4000).args == [10**4000]


def test_deep_nesting_is_refused_with_its_depth() -> None:
    with pytest.raises(SerializationError) as info:
        serialize.dump_call(sample_jobs.record, (_nested(500),), {})
    message = str(info.value)
    assert "nested too deeply" in message and "depth 101" in message
    assert "recursive" not in message
    limit = _nested(serialize.MAX_DEPTH)  # the limit itself is stored and loads again
    assert serialize.load(serialize.dump_call(sample_jobs.record, (), {"k": limit})).kwargs == {
        "k": limit
    }


def test_structure_that_contains_itself_is_called_recursive() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(SerializationError, match="recursive structure: a list that contains"):
        serialize.dump_call(sample_jobs.record, (loop,), {})
    report = sample_jobs.Report("r")
    report.me = report  # type: ignore[attr-defined]
    with pytest.raises(SerializationError, match="a Report that contains itself"):
        serialize.dump_object(report)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout: 1000000000", "timeout must be a number of seconds > 0 and <= 31536000"),
        ("timeout: true", "timeout must be a number of seconds, not True"),
        ("max_attempts: 0", "max_attempts must be an int >= 1, not 0"),
    ],
)
def test_loader_checks_options_with_the_decorators_validators(line: str, message: str) -> None:
    with pytest.raises(HandlerError, match=message):
        serialize.load(f"tinydj: 1\nfunction: sample_jobs:record\n{line}\n")


@pytest.mark.parametrize(
    "value",
    [
        '[1, "a", null, true, {"k": [2]}]',
        " [1]",
        "[1] ",
        "[NaN]",
        "[-Infinity]",
        '["a.b", 1.5]',
        '["tab\\there"]',
        '["caf\u00e9"]',
        '["\u2028"]',
        '["\x7f"]',
        '["\x85"]',
        "[1e5]",
        "[" * 33 + "]" * 33,
        "[" * 34 + "]" * 34,
        '[{"a": ' * 10 + "[" * 13 + "]" * 13 + "}]" * 10,
        "[1,]",
        "[1] [2]",
    ],
)
def test_hand_written_fast_lines_load_as_yaml_reads_them(value: str) -> None:
    handler = f"tinydj: 1\nfunction: sample_jobs:record\nargs: {value}\n"
    try:
        expected = yaml.safe_load(handler)["args"]
    except yaml.YAMLError:
        with pytest.raises(HandlerError):
            serialize.load(handler)
        return
    loaded = serialize.load(handler).args
    assert loaded == expected, (loaded, expected)


def test_plain_values_take_the_fast_lane() -> None:
    handler = 'tinydj: 1\nfunction: sample_jobs:record\nargs: [1, "a b", [null, false]]\n'
    assert serialize._fast_load(handler) == {
        "tinydj": 1,
        "function": "sample_jobs:record",
        "args": [1, "a b", [None, False]],
    }
