"""A small declarative validator for JSON read from untrusted files.

A *spec* is a function ``spec(value, field)`` that returns the value when it fits and raises
:class:`Invalid` (naming the field, e.g. ``context.fidelity.kid_subsets`` or ``samples[0].output``,
and what was expected) when it does not. Specs compose: :func:`record` (exactly these keys),
:func:`mapping`, :func:`list_of`, :func:`tuple_of`, :func:`nullable`; leaves are :func:`boolean`,
:func:`integer`, :func:`number`, :func:`string` and :func:`file_name`.

Example:
    >>> spec = record({"n": integer(lo=0), "name": file_name(".npy")})
    >>> spec({"n": 2, "name": "a.npy"}, "part")
    {'n': 2, 'name': 'a.npy'}
    >>> spec({"n": 2, "name": "../a.npy"}, "part")
    Traceback (most recent call last):
    ...
    p2ptools.eval.schema.Invalid: part.name: expected a plain file name ending in .npy, got '../a.npy'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Spec = Callable[[Any, str], Any]


class Invalid(ValueError):
    """A value that does not fit its spec: ``field`` (a dotted path) and ``problem``."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


def boolean(value: Any, field: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise Invalid(field, f"expected true or false, got {_shown(value)}")
    return value


def integer(lo: int | None = None, hi: int | None = None) -> Spec:
    """A whole number (not a boolean, not a float) in ``[lo, hi]``."""

    def check(value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(field, f"expected a whole number, got {_kind(value)} {_shown(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise Invalid(field, f"expected a whole number in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}], got {value}")
        return value

    return check


def number(lo: float | None = None, *, positive: bool = False) -> Spec:
    """A finite number (whole numbers too), at least ``lo``, or above 0 with ``positive``."""

    def check(value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(field, f"expected a number, got {_kind(value)} {_shown(value)}")
        if not math.isfinite(value):
            raise Invalid(field, f"expected a finite number, got {value}")
        if (lo is not None and value < lo) or (positive and not value > 0):
            raise Invalid(field, f"expected a number {'> 0' if positive else f'>= {lo}'}, got {value}")
        return float(value)

    return check


def string(pattern: str | None = None, choices: tuple[str, ...] | None = None, *, max_len: int = 4096) -> Spec:
    """A string (of at most ``max_len`` characters) matching ``pattern`` entirely, or one of ``choices``."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise Invalid(field, f"expected a string, got {_kind(value)} {_shown(value)}")
        if len(value) > max_len:
            raise Invalid(field, f"expected at most {max_len} characters, got {len(value)}")
        if choices is not None and value not in choices:
            raise Invalid(field, f"expected one of {', '.join(map(repr, choices))}, got {_shown(value)}")
        if compiled is not None and not compiled.fullmatch(value):
            raise Invalid(field, f"expected a string like {pattern}, got {_shown(value)}")
        return value

    return check


def file_name(suffix: str) -> Spec:
    """A plain file name ending in ``suffix``: no folder part (``/`` or ``\\``), not ``.`` or ``..``,
    not absolute, no NUL and no leading dot, so that ``folder / name`` stays inside ``folder``."""

    def check(value: Any, field: str) -> str:
        if (not isinstance(value, str) or not value.endswith(suffix) or len(value) <= len(suffix) or len(value) > 255
                or any(c in value for c in "/\\\0:") or value.startswith(".")):
            raise Invalid(field, f"expected a plain file name ending in {suffix}, got {_shown(value)}")
        return value

    return check


def nullable(spec: Spec) -> Spec:
    """``null`` or what ``spec`` accepts."""
    return lambda value, field: None if value is None else spec(value, field)


def list_of(item: Spec, *, length: int | None = None, max_len: int | None = None) -> Spec:
    """A list whose every element fits ``item`` (``length`` exactly, or at most ``max_len``)."""

    def check(value: Any, field: str) -> list:
        if not isinstance(value, list):
            raise Invalid(field, f"expected a list, got {_kind(value)} {_shown(value)}")
        if length is not None and len(value) != length:
            raise Invalid(field, f"expected {length} elements, got {len(value)}")
        if max_len is not None and len(value) > max_len:
            raise Invalid(field, f"expected at most {max_len} elements, got {len(value)}")
        return [item(v, f"{field}[{i}]") for i, v in enumerate(value)]

    return check


def tuple_of(*items: Spec) -> Spec:
    """A list of ``len(items)`` elements, the i-th fitting ``items[i]``."""

    def check(value: Any, field: str) -> list:
        if not isinstance(value, list) or len(value) != len(items):
            raise Invalid(field, f"expected a list of {len(items)} elements, got {_kind(value)} {_shown(value)}")
        return [spec(v, f"{field}[{i}]") for i, (spec, v) in enumerate(zip(items, value, strict=True))]

    return check


def record(required: dict[str, Spec], optional: dict[str, Spec] | None = None) -> Spec:
    """An object with every key of ``required``, any of ``optional``, and no other key."""
    optional = optional or {}

    def check(value: Any, field: str) -> dict:
        if not isinstance(value, dict):
            raise Invalid(field or "(top level)", f"expected an object, got {_kind(value)} {_shown(value)}")
        prefix = f"{field}." if field else ""
        for key in value:
            if key not in required and key not in optional:
                raise Invalid(f"{prefix}{key}", f"unknown key (expected {', '.join(sorted({*required, *optional}))})")
        for key in required:
            if key not in value:
                raise Invalid(f"{prefix}{key}", "missing")
        return {key: (required.get(key) or optional[key])(v, f"{prefix}{key}") for key, v in value.items()}

    return check


def mapping(key: Spec, value: Spec, *, max_len: int | None = None) -> Spec:
    """An object of any keys that fit ``key`` with values that fit ``value``."""

    def check(obj: Any, field: str) -> dict:
        if not isinstance(obj, dict):
            raise Invalid(field, f"expected an object, got {_kind(obj)} {_shown(obj)}")
        if max_len is not None and len(obj) > max_len:
            raise Invalid(field, f"expected at most {max_len} entries, got {len(obj)}")
        return {key(k, f"{field}.{k}"): value(v, f"{field}.{k}") for k, v in obj.items()}

    return check


def json_value(*, depth: int = 8, max_len: int = 4096) -> Spec:
    """Any JSON value (a plugin's free-form record, e.g. a scorer's ``info()``) of at most ``depth``
    levels, strings and containers of at most ``max_len`` characters or entries, finite numbers."""

    def check(value: Any, field: str, level: int = 0) -> Any:
        if level > depth:
            raise Invalid(field, f"nested deeper than {depth} levels")
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return number()(value, field)
        if isinstance(value, str):
            return string(max_len=max_len)(value, field)
        if isinstance(value, list):
            if len(value) > max_len:
                raise Invalid(field, f"expected at most {max_len} entries, got {len(value)}")
            return [check(v, f"{field}[{i}]", level + 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            if len(value) > max_len:
                raise Invalid(field, f"expected at most {max_len} entries, got {len(value)}")
            return {string(max_len=256)(k, field): check(v, f"{field}.{k}", level + 1) for k, v in value.items()}
        raise Invalid(field, f"expected a JSON value, got {_kind(value)}")

    return lambda value, field: check(value, field)


def first_difference(a: Any, b: Any, field: str = "") -> str | None:
    """The path of the first field where two JSON values differ, None when they are equal.

    Example:
        >>> first_difference({"x": {"y": 1, "z": [1, 2]}}, {"x": {"y": 1, "z": [1, 3]}}, "context")
        'context.x.z[1]'
    """
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{field}.{key}" if field else key
            found = first_difference(a[key], b[key], f"{field}.{key}" if field else key)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{field}[{i}]")
            if found:
                return found
        return None
    return None if (type(a) is type(b) and a == b) else (field or "(top level)")
