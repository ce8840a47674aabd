"""The ``handler`` column: a call stored as readable YAML.

A handler is a YAML mapping with a format marker::

    tinydj: 1
    function: myapp.tasks:resize
    args: [photos/cat.png]
    kwargs: {width: 100}

or, for an object job (``tinydj.enqueue(obj)``) and a bound method::

    tinydj: 1
    object: !tinydj/object
      class: myapp.jobs:NewsletterJob
      attributes: {subject: Hello, emails: [a@example.com]}
    method: perform

Functions, classes and objects are stored by import path (``module:qualname``).
Plain data is plain YAML. tinydj's own tags cover what plain YAML lacks:

- ``!tinydj/model {model: myapp.models:User, pk: 5}``: a peewee row, loaded
  fresh when the job runs;
- ``!tinydj/object``: an instance of an importable class, rebuilt from its
  attributes without calling ``__init__`` (as pickle does);
- ``!tinydj/ref``: a function or class by import path;
- ``!tinydj/tuple``, ``!tinydj/decimal``, ``!tinydj/uuid``;
- ``!tinydj/pickle``: cloudpickle (base64) for anything else, including
  lambdas and closures; refused when ``allow_pickle`` is False.

Loading uses YAML's safe loader plus these tags only: no other Python object
is ever constructed from a tag.
"""

from __future__ import annotations

import base64
import functools
import importlib
import inspect
import itertools
import json
import json.scanner
import math
import re
import sys
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import cloudpickle
import peewee
import yaml

from . import options as check
from . import resources
from .errors import HandlerError, SerializationError

__all__ = [
    "FORMAT",
    "MAX_DEPTH",
    "Call",
    "CallWriter",
    "dump_call",
    "dump_object",
    "identity",
    "import_path",
    "load",
    "plain_call",
    "register_tag",
    "resolve",
]

#: Version of the handler format, stored as ``tinydj: 1``.
FORMAT = 1

_SafeDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(slots=True)
class Call:
    """A loaded handler, ready to run."""

    fn: Callable[..., Any]
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: The object whose method runs (object jobs and bound methods), for hooks.
    target: object | None = None
    name: str = ""
    max_attempts: int | None = None
    #: Seconds the job may run (see ``tinydj.timeouts``).
    timeout: float | None = None


# -- import paths ------------------------------------------------------------


def _module_name(obj: Any) -> str | None:
    module = getattr(obj, "__module__", None)
    if module == "__main__":
        # ``python -m pkg.mod`` runs pkg.mod as __main__; other processes can
        # import it by its real name.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = getattr(spec, "name", None)
    return module if isinstance(module, str) else None


@functools.lru_cache(maxsize=4096)
def resolve(path: str) -> Any:
    """Import ``module:qualname`` and return the object it names."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise HandlerError(f"invalid import path {path!r}: expected 'module:qualname'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, but also relative names, errors at import
        raise HandlerError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerError(f"module {module_name!r} has no attribute {qualname!r}") from None
    return obj


def check_allowed(path: str, allowed: tuple[str, ...] | None) -> None:
    """Refuse an import path outside ``allowed`` module prefixes (if given)."""
    if allowed is None:
        return
    module = path.partition(":")[0]
    if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed):
        raise HandlerError(
            f"{path} is outside the allowed modules ({', '.join(allowed) or 'none'}): "
            "see configure(allowed_modules=...)"
        )


def import_path(obj: Any) -> str | None:
    """``module:qualname`` under which ``obj`` can be imported again, or None."""
    module = _module_name(obj)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not isinstance(qualname, str) or "<" in qualname:
        return None
    path = f"{module}:{qualname}"
    try:
        found = resolve(path)
    except Exception:
        return None
    if found is obj or getattr(found, "__wrapped__", None) is obj:
        return path
    func = getattr(obj, "__func__", None)  # classmethods: a new bound method each time
    if func is not None and getattr(found, "__func__", None) is func:
        return path
    return None


# -- dumping -----------------------------------------------------------------


def _is_plain_object(obj: Any) -> bool:
    cls = type(obj)
    return (
        hasattr(obj, "__dict__")
        and not any("__slots__" in vars(c) for c in cls.__mro__[:-1])
        and getattr(cls, "__reduce_ex__", None) is getattr(object, "__reduce_ex__", None)
        and getattr(cls, "__reduce__", None) is getattr(object, "__reduce__", None)
        and getattr(cls, "__getstate__", object.__getstate__) is object.__getstate__
        and not hasattr(cls, "__setstate__")
        and not isinstance(obj, type)
        and not callable(obj)
        and import_path(cls) is not None
    )


def _pickled(dumper: Any, data: Any) -> Any:
    if not dumper.allow_pickle:
        raise SerializationError(
            f"cannot store {type(data).__name__} value {_short(data)} as YAML, "
            "and pickle is disabled (configure(allow_pickle=False))"
        )
    try:
        payload = cloudpickle.dumps(data)
    except Exception as exc:
        raise SerializationError(
            f"cannot store {type(data).__name__} value {_short(data)}: {exc}"
        ) from exc
    text = base64.encodebytes(payload).decode("ascii")
    return dumper.represent_scalar("!tinydj/pickle", text, style="|")


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _represent_model(dumper: Any, data: peewee.Model) -> Any:
    meta = data._meta
    if isinstance(meta.primary_key, peewee.CompositeKey):
        raise SerializationError(
            f"cannot store {type(data).__name__}: models with composite keys are not supported"
        )
    pk = data.get_id()
    if pk is None:
        raise SerializationError(
            f"cannot store an unsaved {type(data).__name__}: save it first, "
            "the job loads it fresh by primary key"
        )
    path = import_path(type(data))
    if path is None:
        raise SerializationError(
            f"cannot store {type(data).__name__}: its class cannot be imported by path"
        )
    return dumper.represent_mapping("!tinydj/model", {"model": path, "pk": pk})


def _represent_other(dumper: Any, data: Any) -> Any:
    owner = getattr(data, "__self__", None) if inspect.isroutine(data) else None
    refused = resources.refusal(data) or (owner is not None and resources.refusal(owner))
    if refused and not isinstance(owner, types.ModuleType):  # builtins: a module's functions
        raise SerializationError(refused)
    if isinstance(data, type) or inspect.isroutine(data):
        path = import_path(data)
        if path is not None:
            return dumper.represent_scalar("!tinydj/ref", path)
        return dumper.fallback(data)
    if _is_plain_object(data):
        path = import_path(type(data))
        return dumper.represent_mapping(
            "!tinydj/object", {"class": path, "attributes": dict(vars(data))}
        )
    return dumper.fallback(data)


class _Document(dict[str, Any]):
    """The top-level mapping of a handler, always written in block style."""


#: Deepest nesting of lists, dicts, tuples and objects in one argument. Far
#: more than data needs, and safely below Python's recursion limit when the
#: worker loads it.
MAX_DEPTH = 100
# The handler's own mapping and its args list or kwargs mapping.
_OWN_LEVELS = 2
_SCALARS = frozenset({str, int, float, bool, type(None), bytes, datetime, Decimal, uuid.UUID})


class _Dumper(_SafeDumper):  # type: ignore[misc]
    allow_pickle = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_path: set[int] = set()  # ids of the containers being written

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def fallback(self, data: Any) -> Any:
        """Write what neither YAML nor tinydj's tags can hold."""
        return _pickled(self, data)

    def represent_data(self, data: Any) -> Any:
        if type(data) in _SCALARS:
            return super().represent_data(data)
        ident = id(data)
        if ident in self.on_path:
            raise SerializationError(
                f"cannot store a recursive structure: a {type(data).__name__} that contains itself"
            )
        if len(self.on_path) >= MAX_DEPTH + _OWN_LEVELS:
            raise SerializationError(
                f"cannot store a value nested too deeply: a {type(data).__name__} at depth "
                f"{MAX_DEPTH + 1}, and job arguments may nest lists, dicts, tuples and "
                f"objects at most {MAX_DEPTH} deep (flatten it, or store it elsewhere and "
                "pass its key)"
            )
        self.on_path.add(ident)
        try:
            return super().represent_data(data)
        finally:
            self.on_path.discard(ident)


def _represent_int(dumper: Any, data: int) -> Any:
    try:
        text = str(data)
    except ValueError:  # longer than sys.get_int_max_str_digits()
        raise SerializationError(
            f"cannot store an int of {data.bit_length()} bits: Python writes at most "
            f"{sys.get_int_max_str_digits()} digits as text (sys.set_int_max_str_digits); "
            "pass hex(n) and read it back with int(text, 16)"
        ) from None
    return dumper.represent_scalar("tag:yaml.org,2002:int", text)


class _StrictDumper(_Dumper):
    allow_pickle = False


class _IdentityDumper(_Dumper):
    """Writes class and state where the handler would hold a pickle, and sets
    in sorted order: equal objects give equal text in every process."""

    def fallback(self, data: Any) -> Any:
        if isinstance(data, type) or inspect.isroutine(data):
            return self.represent_scalar("!identity/ref", _name(data))
        try:
            reduced = data.__reduce_ex__(4)
        except Exception as exc:
            raise SerializationError(
                f"cannot derive a key from {type(data).__name__} value {_short(data)}: {exc}; "
                "pass key="
            ) from exc
        if isinstance(reduced, str):  # a module global, by name
            return self.represent_scalar("!identity/global", f"{_name(type(data))}.{reduced}")
        parts = [list(p) if isinstance(p, Iterator) else p for p in reduced]
        return self.represent_sequence("!identity/reduce", [_name(type(data)), *parts])


def _name(obj: Any) -> str:
    module = _module_name(obj) or getattr(obj, "__module__", None)
    return f"{module}:{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _sorted_set(dumper: Any, data: Any) -> Any:
    items = sorted(data, key=lambda item: _dump(item, _IdentityDumper))
    return dumper.represent_sequence("!identity/set", items)


_Dumper.add_representer(
    tuple, lambda d, v: d.represent_sequence("!tinydj/tuple", list(v), flow_style=True)
)
_Dumper.add_representer(
    _Document, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=False)
)
_Dumper.add_representer(
    datetime, lambda d, v: d.represent_scalar("tag:yaml.org,2002:timestamp", v.isoformat())
)
_Dumper.add_representer(int, _represent_int)
_Dumper.add_representer(Decimal, lambda d, v: d.represent_scalar("!tinydj/decimal", str(v)))
_Dumper.add_representer(uuid.UUID, lambda d, v: d.represent_scalar("!tinydj/uuid", str(v)))
_Dumper.add_multi_representer(peewee.Model, _represent_model)
_Dumper.add_multi_representer(object, _represent_other)
_IdentityDumper.add_representer(set, _sorted_set)
_IdentityDumper.add_representer(frozenset, _sorted_set)


def _dump(doc: Any, dumper: type) -> str:
    try:
        return yaml.dump(
            doc,
            Dumper=dumper,
            sort_keys=False,
            default_flow_style=None,
            allow_unicode=True,
            width=100,
        )
    except SerializationError:
        raise
    except RecursionError:  # within MAX_DEPTH, but called from a very deep stack
        raise SerializationError(
            "cannot store the job's arguments: they are nested too deeply for the "
            "caller's stack (Python's recursion limit)"
        ) from None
    except Exception as exc:
        raise SerializationError(f"cannot store the job's arguments: {exc}") from exc


# -- the fast lane ---------------------------------------------------------
#
# Most calls are a function path plus plain data. tinydj writes their args
# and kwargs as JSON flow collections, a subset of YAML with the same meaning
# under both parsers, and reads such handlers back with ``json``: several times
# faster than building the document with PyYAML. Anything else (objects, tags,
# floats YAML 1.1 would read differently, unusual characters, a handler written
# by hand) takes the YAML path.

_PLAIN_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_FAST_KEYS = frozenset({"tinydj", "function", "args", "kwargs", "max_attempts", "timeout"})
_EXPONENT = re.compile(r"\d[eE]")


def _json_safe(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind is str:
        return bool(value.isprintable()) or value.replace("\n", "").replace("\t", "").isprintable()
    if kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value) and "e" not in repr(value)
    if depth > 32:
        return False
    if kind is list:
        return all(_json_safe(v, depth + 1) for v in value)
    if kind is dict:
        return all(
            type(k) is str and _json_safe(k) and _json_safe(v, depth + 1) for k, v in value.items()
        )
    return False


_encode = json.JSONEncoder(ensure_ascii=False).encode
_decode = json.JSONDecoder().decode


def _encoder() -> Callable[[Any], str]:
    """``_encode`` with the encoder it builds per call built once (no circular
    check: what reaches it passed ``_json_safe``, whose depth is bounded)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _encode
    chunks = make(None, None, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_encode_fast = _encoder()
#: What ``_encode`` writes for a string.
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _list_text(values: Sequence[Any]) -> str | None:
    """What ``_encode`` writes for a list of these values, or None (not
    plain data). Ints and strings (most arguments) without the encoder's call."""
    items = []
    try:
        for value in values:
            kind = type(value)
            if kind is int:
                items.append(str(value))
            elif kind is str and value.isprintable():
                items.append(_encode_str(value))
            elif _json_safe(value, 1):
                items.append(_encode_fast(value))
            else:
                return None
    except ValueError:  # an int too long for str(): the YAML path says so
        return None
    return f"[{', '.join(items)}]"


def _plain_kwargs(kwargs: dict[str, Any]) -> bool:
    """``_json_safe`` of a kwargs mapping."""
    for key, value in kwargs.items():
        kind = type(value)
        if not (
            type(key) is str
            and (key.isprintable() or _json_safe(key))
            and (kind is int or (kind is str and value.isprintable()) or _json_safe(value, 1))
        ):
            return False
    return True


class _Lane:
    """The fast-lane text of calls of one import path with fixed options:
    its first and last lines are built once."""

    __slots__ = ("head", "tail")

    def __init__(self, head: str, tail: str) -> None:
        self.head, self.tail = head, tail

    def positional(self, args: Sequence[Any]) -> str | None:
        """The handler of a call with these arguments (a tuple or a list), or
        None (not plain data: the YAML path)."""
        if not args:
            return self.head + self.tail
        text = _list_text(args)
        return None if text is None else f"{self.head}args: {text}\n{self.tail}"

    def text(self, args: Sequence[Any], kwargs: dict[str, Any] | None) -> str | None:
        """The handler of ``fn(*args, **kwargs)``, or None (the YAML path)."""
        if not kwargs:
            return self.positional(args)
        line = ""
        if args:
            listed = _list_text(args)
            if listed is None:
                return None
            line = f"args: {listed}\n"
        if not _plain_kwargs(kwargs):
            return None
        try:
            return f"{self.head}{line}kwargs: {_encode_fast(kwargs)}\n{self.tail}"
        except ValueError:
            return None


@functools.lru_cache(maxsize=1024, typed=True)  # timeout 1 and 1.0 differ
def _lane(path: str, max_attempts: int | None, timeout: float | None) -> _Lane | None:
    """The fast lane for ``path`` with these options, or None (not plain)."""
    if not _PLAIN_PATH.fullmatch(path) or (timeout is not None and not _json_safe(timeout)):
        return None
    tail = ""
    if max_attempts is not None:
        tail += f"max_attempts: {max_attempts}\n"
    if timeout is not None:
        tail += f"timeout: {_encode(timeout)}\n"
    return _Lane(f"tinydj: {FORMAT}\nfunction: {path}\n", tail)


_FAST_PREFIX = "tinydj: 1\nfunction: "
#: Import paths already matched against ``_PLAIN_PATH`` (a few per application).
_plain_paths: set[str] = set()
_NOT_FAST = object()


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: YAML reads those as text


# One JSON value from the start of a string, without ``decode``'s two
# whitespace matches: (value, end). NaN and Infinity raise ValueError.
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder(parse_constant=_refuse_constant)  # type: ignore[arg-type]
)


def _fast_value(value: str) -> Any:
    """The value of one line of a fast-lane handler, or ``_NOT_FAST``."""
    # tinydj never writes exponents or \u escapes here; where they come
    # from another writer, JSON and YAML may read them differently.
    if (("e" in value or "E" in value) and _EXPONENT.search(value)) or "\\u" in value:
        return _NOT_FAST
    try:
        decoded, end = _scan(value, 0)
    except (StopIteration, ValueError):
        end = -1
    if (
        end == len(value)
        # Then the value holds only what _json_safe accepts: printable ASCII
        # without escapes (so are its strings), no "." (no floats), and too
        # few brackets to nest deeper than _json_safe allows.
        and value.isascii()
        and value.isprintable()
        and "\\" not in value
        and "." not in value
        and (end <= 33 or value.count("[") + value.count("{") <= 33)
    ):
        return decoded
    if end != len(value):  # spaces around it, NaN, bad JSON: what decode says
        try:
            decoded = _decode(value)
        except ValueError:
            return _NOT_FAST
    # only what the fast lane writes (YAML reads it the same)
    return decoded if _json_safe(decoded) else _NOT_FAST


def _fast_load(handler: str) -> dict[str, Any] | None:
    if not handler.startswith(_FAST_PREFIX):
        return None
    lines = handler[len(_FAST_PREFIX) :].split("\n")
    path = lines[0]
    if path not in _plain_paths:
        if not _PLAIN_PATH.fullmatch(path):
            return None
        if len(_plain_paths) < 4096:
            _plain_paths.add(path)
    doc: dict[str, Any] = {"tinydj": FORMAT, "function": path}
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition(": ")
        if not sep or key not in _FAST_KEYS or key in doc:
            return None
        decoded = _fast_value(value)
        if decoded is _NOT_FAST:
            return None
        doc[key] = decoded
    return doc


def _doc(
    head: dict[str, Any],
    args: Any,
    kwargs: Any,
    max_attempts: int | None,
    timeout: float | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = _Document(tinydj=FORMAT, **head)
    if args:
        doc["args"] = list(args)
    if kwargs:
        doc["kwargs"] = dict(kwargs)
    if max_attempts is not None:
        doc["max_attempts"] = max_attempts
    if timeout is not None:
        doc["timeout"] = timeout
    return doc


def dump_call(
    fn: Callable[..., Any],
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    allow_pickle: bool = True,
    max_attempts: int | None = None,
    timeout: float | None = None,
) -> str:
    """The handler text for ``fn(*args, **kwargs)``.

    Raises ``SerializationError`` (a ``TypeError``) when something cannot be
    stored; nothing is written in that case.
    """
    if not callable(fn):
        raise SerializationError(f"{_short(fn)} is not callable")
    self_ = getattr(fn, "__self__", None)
    if inspect.ismethod(fn) and not isinstance(self_, type):
        head: dict[str, Any] = {"object": self_, "method": fn.__name__}
    else:
        path = import_path(fn)
        if path is not None:
            lane = _lane(path, max_attempts, timeout)
            fast = lane.text(args, kwargs) if lane is not None else None
            if fast is not None:
                return fast
        head = {"function": path if path is not None else fn}
    return _dump(_doc(head, args, kwargs, max_attempts, timeout), _dumper(allow_pickle))


class CallWriter:
    """Writes the handlers of calls of one function with fixed options: the
    text ``dump_call`` writes, with the function's import path looked up once
    (``tinydj.tasks`` keeps one per task)."""

    __slots__ = ("_lane", "allow_pickle", "fn", "max_attempts", "path", "timeout")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        allow_pickle: bool = True,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.fn, self.allow_pickle = fn, allow_pickle
        self.max_attempts, self.timeout = max_attempts, timeout
        #: The import path the handlers name (None: not importable, or a
        #: bound method: every call takes ``dump_call``).
        self.path = import_path(fn) if callable(fn) and not inspect.ismethod(fn) else None
        self._lane = _lane(self.path, max_attempts, timeout) if self.path is not None else None

    def dump(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        """The handler of ``fn(*args, **kwargs)`` (``SerializationError`` as
        ``dump_call``); ``args`` a tuple or a list."""
        lane = self._lane
        if lane is not None:
            text = lane.text(args, kwargs)
            if text is not None:
                return text
        return dump_call(
            self.fn,
            tuple(args),
            kwargs,
            allow_pickle=self.allow_pickle,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
        )

    def dump_many(self, calls: Sequence[Sequence[Any] | dict[str, Any]]) -> list[str]:
        """The handlers of many calls, in order; each an args tuple (or list)
        or a kwargs dict."""
        lane = self._lane
        out: list[str | None] = []
        if lane is not None:
            positional, text = lane.positional, lane.text
            out = [
                positional(c) if type(c) is tuple else text((), c) if type(c) is dict else None
                for c in calls
            ]
        if lane is None or None in out:
            out = [
                t if t is not None else self.dump(*_args_kwargs(c))
                for t, c in itertools.zip_longest(out, calls)
            ]
        return out  # type: ignore[return-value]


def _args_kwargs(call: Sequence[Any] | dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return ((), dict(call)) if isinstance(call, dict) else (tuple(call), {})


def _dumper(allow_pickle: bool) -> type:
    return _Dumper if allow_pickle else _StrictDumper


def dump_object(obj: Any, *, allow_pickle: bool = True, max_attempts: int | None = None) -> str:
    """The handler text for an object job: ``obj.perform()`` later."""
    if not callable(getattr(obj, "perform", None)):
        raise TypeError(f"cannot enqueue {_short(obj)}: it has no perform() method")
    doc = _doc({"object": obj, "method": "perform"}, (), None, max_attempts)
    return _dump(doc, _dumper(allow_pickle))


def identity(obj: Any) -> str:
    """Text that is the same for equal objects (class and attribute values) in
    every process, wherever the class is defined: what ``schedule`` keys on.

    It is the handler ``dump_object`` writes, except that what the handler
    would pickle (a class defined in ``__main__``, a lambda) is written as its
    class name and state, and sets are sorted.
    """
    return _dump(_doc({"object": obj, "method": "perform"}, (), None, None), _IdentityDumper)


# -- loading -----------------------------------------------------------------


class _Loader(_SafeLoader):  # type: ignore[misc]
    allow_pickle = True
    allowed: tuple[str, ...] | None = None

    def resolve_path(self, path: Any) -> Any:
        if not isinstance(path, str):
            raise HandlerError(f"invalid import path {path!r}")
        check_allowed(path, self.allowed)
        return resolve(path)


class _StrictLoader(_Loader):
    allow_pickle = False


def _load_pickle(loader: Any, node: Any) -> Any:
    if not loader.allow_pickle:
        raise HandlerError(
            "the job holds a pickled value and pickle is disabled (allow_pickle=False)"
        )
    try:
        return cloudpickle.loads(base64.b64decode(loader.construct_scalar(node)))
    except Exception as exc:
        raise HandlerError(f"cannot unpickle a stored value: {type(exc).__name__}: {exc}") from exc


def _load_model(loader: Any, node: Any) -> Any:
    spec = loader.construct_mapping(node, deep=True)
    path, pk = spec.get("model"), spec.get("pk")
    if not isinstance(path, str):
        raise HandlerError(f"invalid model reference: {spec!r}")
    model = loader.resolve_path(path)
    if not (isinstance(model, type) and issubclass(model, peewee.Model)):
        raise HandlerError(f"{path} is not a peewee model")
    try:
        return model.get_by_id(pk)
    except model.DoesNotExist:  # type: ignore[attr-defined]
        raise HandlerError(
            f"{path} with primary key {pk!r} no longer exists (deleted before the job ran)"
        ) from None


def _load_object(loader: Any, node: Any) -> Any:
    spec = loader.construct_mapping(node, deep=True)
    path, attributes = spec.get("class"), spec.get("attributes") or {}
    if not isinstance(path, str) or not isinstance(attributes, dict):
        raise HandlerError(f"invalid object: {spec!r}")
    cls = loader.resolve_path(path)
    if not isinstance(cls, type):
        raise HandlerError(f"{path} is not a class")
    obj: Any = object.__new__(cls)
    obj.__dict__.update(attributes)
    return obj


def _load_ref(loader: Any, node: Any) -> Any:
    return loader.resolve_path(loader.construct_scalar(node))


_Loader.add_constructor("!tinydj/pickle", _load_pickle)
_Loader.add_constructor("!tinydj/model", _load_model)
_Loader.add_constructor("!tinydj/object", _load_object)
_Loader.add_constructor("!tinydj/ref", _load_ref)
_Loader.add_constructor("!tinydj/tuple", lambda ld, n: tuple(ld.construct_sequence(n, deep=True)))
_Loader.add_constructor("!tinydj/decimal", lambda ld, n: Decimal(ld.construct_scalar(n)))
_Loader.add_constructor("!tinydj/uuid", lambda ld, n: uuid.UUID(ld.construct_scalar(n)))


def register_tag(
    cls: type,
    tag: str,
    represent: Callable[[Any], dict[str, Any]],
    construct: Callable[[dict[str, Any], tuple[str, ...] | None], Any],
) -> None:
    """Store instances of ``cls`` (and subclasses) as ``tag`` mappings.

    For a framework's model rows (``tinydj.contrib.django``): ``represent(obj)``
    returns the mapping (raise ``SerializationError`` to refuse the value);
    ``construct(mapping, allowed_modules)`` rebuilds it when the job runs
    (raise ``HandlerError`` to fail the job with that message).
    """
    _Dumper.add_multi_representer(cls, lambda d, v: d.represent_mapping(tag, represent(v)))
    _Loader.add_constructor(
        tag, lambda ld, node: construct(ld.construct_mapping(node, deep=True), ld.allowed)
    )


def load(
    handler: str, *, allow_pickle: bool = True, allowed_modules: tuple[str, ...] | None = None
) -> Call:
    """Load a handler into a ``Call``; raise ``HandlerError`` saying why not.

    ``allowed_modules``: if given, functions, classes and models may only
    come from these modules (and their submodules).
    """
    if allowed_modules is not None and type(allowed_modules) is not tuple:
        allowed_modules = tuple(allowed_modules)  # a key of _function's cache
    fast = _fast_load(handler)
    if fast is not None:
        return _call_from(fast, allowed_modules)
    loader = (_Loader if allow_pickle else _StrictLoader)(handler)
    loader.allowed = allowed_modules
    try:
        doc = loader.get_single_data()
    except HandlerError:
        raise
    except yaml.YAMLError as exc:
        raise HandlerError(f"the handler is not valid YAML: {_one_line(exc)}") from exc
    except Exception as exc:
        raise HandlerError(f"cannot load the handler: {type(exc).__name__}: {exc}") from exc
    finally:
        loader.dispose()
    return _call_from(doc, allowed_modules)


#: The most common handler, as ``_Lane`` writes it: a function (a
#: ``_PLAIN_PATH``), its arguments (each on one line, optional), no option.
_PLAIN_HANDLER = re.compile(
    rf"tinydj: {FORMAT}\nfunction: (.*)\n(?:args: (.*)\n)?(?:kwargs: (.*)\n)?"
)


def plain_call(
    handler: str, allowed_modules: tuple[str, ...] | None = None
) -> tuple[Callable[..., Any], list[Any], dict[str, Any]] | None:
    """The function and arguments of the most common handler (``_PLAIN_HANDLER``,
    values the fast lane reads); None for any other (``load`` reads it, the
    same way). ``HandlerError`` like ``load``."""
    match = _PLAIN_HANDLER.fullmatch(handler)
    if match is None:
        return None
    path, args_text, kwargs_text = match.groups()
    if path not in _plain_paths:
        if not _PLAIN_PATH.fullmatch(path):
            return None
        if len(_plain_paths) < 4096:
            _plain_paths.add(path)
    args = [] if args_text is None else _fast_value(args_text)
    kwargs = {} if kwargs_text is None else _fast_value(kwargs_text)
    if type(args) is not list or type(kwargs) is not dict:
        return None  # null, another type, or not for the fast lane: load says
    if allowed_modules is not None and type(allowed_modules) is not tuple:
        allowed_modules = tuple(allowed_modules)  # a key of _function's cache
    return _function(path, allowed_modules), args, kwargs


def _call_from(doc: Any, allowed: tuple[str, ...] | None = None) -> Call:
    if not isinstance(doc, dict) or "tinydj" not in doc:
        raise HandlerError("the handler is not a tinydj job (no 'tinydj:' format marker)")
    if doc["tinydj"] != FORMAT:
        raise HandlerError(f"unknown handler format {doc['tinydj']!r} (this tinydj reads {FORMAT})")
    args, kwargs = doc.get("args") or [], doc.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise HandlerError("the handler's args must be a list and kwargs a mapping")
    max_attempts, timeout = doc.get("max_attempts"), doc.get("timeout")
    try:  # the validators @job and with_options use: what they accept loads
        if max_attempts is not None:
            check.max_attempts(max_attempts)
        if timeout is not None:
            check.timeout(timeout)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"invalid option in the handler: {exc}") from None
    if "function" in doc:
        function = doc["function"]
        if isinstance(function, str):
            return Call(
                _function(function, allowed), args, kwargs, None, function, max_attempts, timeout
            )
        name = getattr(function, "__qualname__", "<callable>")
        if not callable(function):
            raise HandlerError(f"{name} is not callable")
        return Call(function, args, kwargs, None, name, max_attempts, timeout)
    if "object" in doc and isinstance(doc.get("method"), str):
        target, method = doc["object"], doc["method"]
        fn = getattr(target, method, None)
        if not callable(fn):
            raise HandlerError(f"{type(target).__qualname__} has no method {method!r}")
        name = f"{type(target).__module__}:{type(target).__qualname__}.{method}"
        return Call(fn, args, kwargs, target, name, max_attempts, timeout)
    raise HandlerError("the handler names neither a function nor an object and method")


@functools.lru_cache(maxsize=4096)
def _function(path: str, allowed: tuple[str, ...] | None) -> Callable[..., Any]:
    """The callable a handler's ``function:`` names, if ``allowed`` lets it."""
    check_allowed(path, allowed)
    fn = resolve(path)
    if not callable(fn):
        raise HandlerError(f"{path} is not callable")
    return fn  # type: ignore[no-any-return]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
