"""Options dataclasses: validation of choices, and conversion to and from JSON-able dicts."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from p2ptools.errors import ConfigError


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The dataclass fields of ``cls`` with their resolved types."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (calling its default factory)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def check_choices(options: Any) -> None:
    """Raise :class:`ConfigError` for a field whose value is not among its ``metadata["choices"]``.

    Choices may also be a callable ``value -> bool`` plus ``metadata["choices_help"]`` for open sets
    such as ``unet_<N>``.
    """
    for f in dataclasses.fields(options):
        choices = f.metadata.get("choices")
        value = getattr(options, f.name)
        if choices is None or value is None:
            continue
        ok = choices(value) if callable(choices) else value in choices
        if not ok:
            allowed = f.metadata.get("choices_help") or ", ".join(map(str, choices))
            raise ConfigError(f"{flag_of(f)}: invalid value {value!r}; choose from {allowed}")


def choices_text(f: dataclasses.Field) -> str | None:
    """A field's valid values for help texts (``metadata["choices_help"]`` or the listed choices),
    or None when any value of its type goes."""
    choices = f.metadata.get("choices")
    if choices is None:
        return None
    return f.metadata.get("choices_help") or ", ".join(map(str, choices))


def bookkeeping_fields(cls: type) -> frozenset[str]:
    """Names of the fields of an options dataclass marked ``metadata={"bookkeeping": True}``: options
    that do not change what a run learns (logging, checkpoint cadence, workers, device, ...). Ablation
    tables leave them out of row labels (:func:`p2ptools.eval.tables.run_labels`)."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("bookkeeping"))


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a field: ``metadata["flag"]`` or ``--`` + name with dashes."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def to_dict(options: Any) -> dict[str, Any]:
    """JSON-able dict of an options dataclass (paths as strings)."""
    out = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def from_dict(cls: type, data: dict[str, Any], source: str = "options") -> Any:
    """Build ``cls`` from a dict, rejecting unknown keys; missing keys take their defaults."""
    known = {f.name: t for f, t in option_fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)} for {cls.__name__}")
    kwargs = {}
    for name, value in data.items():
        base = _unwrap_optional(known[name])
        _check_type(name, value, known[name], source)
        kwargs[name] = Path(value) if base is Path and value is not None else value
    try:
        options = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    check_choices(options)
    return options


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", Path: "a path (string)"}


def _check_type(name: str, value: Any, tp: Any, source: str) -> None:
    """Raise :class:`ConfigError` when a JSON value does not fit a field of a simple type
    (bool, int, float, str, Path, or one of them or None); other field types are not checked here."""
    base, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return
        ok = False
    elif base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base in (str, Path):
        ok = isinstance(value, str)
    else:
        return
    if not ok:
        expected = _TYPE_NAMES[base] + (" or null" if optional else "")
        raise ConfigError(f"{source}: option {name!r} must be {expected}, got {value!r}")


def _unwrap_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(tp, False)``."""
    base = _unwrap_optional(tp)
    return base, base is not tp
