"""Options dataclasses: validation of choices and ranges, and conversion to and from JSON-able dicts.

One check, :func:`check_options`, serves every way an options dataclass is filled (the command line,
a run's ``config.json``, a plugin's own code): each field's ``metadata["choices"]`` and
``metadata["range"]`` (see :class:`Range`), then the class's own ``check_combination()`` for rules
between fields (``--crop-size`` at most ``--load-size``). It runs before any output is created.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Range:
    """The accepted values of a numeric option: ``low <= value <= high`` (``low < value`` when
    ``low_open``); None means unbounded on that side. NaN is never in a range.

    Example: ``field(default=2e-4, metadata={"range": Range(0, 1, low_open=True)})`` accepts
    ``(0, 1]``.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {low}" if self.low is not None else "any number"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {high}"
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: float | None) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09; 0.5, not 0.500000."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


# Ranges shared by the models' and builders' options (one bound for one kind of setting everywhere).
#: Image sides in pixels: an 8192x8192 RGB float32 image is 0.8 GB; larger sides only ever come from a
#: typo (1e6 would ask for terabytes).
SIZE = Range(1, 8192)
#: Filters of a network's first layer.
WIDTH = Range(1, 1024)
#: Loss weights.
WEIGHT = Range(0, 1e6)
#: Data-loading worker processes of a training run. Each is a process with its own copy of torch and
#: of the dataset index; one GPU's pix2pix input pipeline never needs more than a few dozen, and
#: 100000 would fork until the machine stops.
WORKERS = Range(0, 64)
#: Worker processes of a dataset build: light forked processes, up to the hardware threads of the
#: largest common two-socket servers.
BUILD_WORKERS = Range(1, 256)
EPOCHS = Range(1, 100_000)
BATCH = Range(1, 4096)
#: Adam learning rates (positive; above 1 training only diverges).
LR = Range(0, 1)  # 0 freezes the weights (a baseline, a smoke test); negative and NaN are refused
#: Adam betas, as torch.optim.Adam accepts them.
BETA = Range(0, 1, high_open=True)
#: Seeds numpy and torch both accept.
SEED = Range(0, 2**32 - 1)
#: Images shown in a sample grid or gallery.
SAMPLES = Range(0, 1024)


def field_range(f: dataclasses.Field) -> Range | None:
    """A field's :class:`Range` from ``metadata["range"]`` (a Range, or a ``(low, high)`` tuple,
    both ends included), or None when the field has no range."""
    spec = f.metadata.get("range")
    if spec is None or isinstance(spec, Range):
        return spec
    low, high = spec
    return Range(low, high)


def check_ranges(options: Any) -> None:
    """Raise :class:`ConfigError` for a field whose value is outside its ``metadata["range"]``,
    naming the flag, the value and the accepted range (None passes: an optional field left unset)."""
    for f in dataclasses.fields(options):
        accepted = field_range(f)
        value = getattr(options, f.name)
        if accepted is not None and value is not None and value not in accepted:
            raise ConfigError(f"{flag_of(f)}: invalid value {value!r}; accepted range {accepted}")


def check_options(options: Any) -> None:
    """The one validation of an options dataclass instance: choices, ranges, then the class's own
    ``check_combination()`` (rules between fields), if it has one. Raises :class:`ConfigError`."""
    check_choices(options)
    check_ranges(options)
    combination = getattr(options, "check_combination", None)
    if callable(combination):
        combination()


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
    """A field's valid values for help texts (``metadata["choices_help"]``, the listed choices or
    its range, e.g. ``range [1, 8192]``), or None when any value of its type goes."""
    choices = f.metadata.get("choices")
    if choices is None:
        accepted = field_range(f)
        return f"range {accepted}" if accepted is not None else None
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
    check_options(options)
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
