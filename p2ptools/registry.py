"""Plugin discovery through entry points (groups ``p2ptools.models``, ``p2ptools.datasets`` and
``p2ptools.scorers``).

Listing never imports a plugin: names, versions and summaries are read from the entry points'
metadata and, statically, from the plugin class's source (its ``version``/``summary`` literals).
A plugin is imported by :func:`load` only when it is used, and checked against its contract.

``P2PTOOLS_DISABLE_PLUGIN_AUTOLOAD=1`` limits discovery to p2ptools' own built-ins (like pytest's
variable of the same idea), which helps when a broken third-party package is installed.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from dataclasses import dataclass, is_dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from p2ptools.errors import PluginError
from p2ptools.plugin import LoadOptions, ModelPlugin, TrainedModel, read_run_config

GROUPS = {"models": "p2ptools.models", "datasets": "p2ptools.datasets", "scorers": "p2ptools.scorers"}
BUILTIN_DISTRIBUTION = "p2ptools"
AUTOLOAD_ENV = "P2PTOOLS_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class PluginInfo:
    """What is known about a registered plugin without importing it."""

    name: str
    kind: str  # "models", "datasets" or "scorers"
    value: str  # "module:attr"
    distribution: str
    version: str
    summary: str

    def load(self) -> type:
        """Import the plugin class and check it against its contract."""
        return load(self.kind, self.name)


def _group(kind: str) -> str:
    if kind not in GROUPS:
        raise ValueError(f"kind must be one of {sorted(GROUPS)}, got {kind!r}")
    return GROUPS[kind]


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "<unknown>"


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _entry_points(kind: str) -> dict[str, EntryPoint]:
    """Entry points of one group by name; a name from two distributions is an error naming both."""
    only_builtin = os.environ.get(AUTOLOAD_ENV, "") not in ("", "0")
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=_group(kind)):
        dist = _dist_name(ep)
        if only_builtin and _norm(dist) != BUILTIN_DISTRIBUTION:
            continue
        if ep.name in found and _dist_name(found[ep.name]) != dist:
            first = _dist_name(found[ep.name])
            raise PluginError(
                f"{kind[:-1]} name {ep.name!r} is registered by two distributions: {first} ({found[ep.name].value}) "
                f"and {dist} ({ep.value}); uninstall one of them"
            )
        found[ep.name] = ep
    return found


def _static_attrs(value: str) -> dict[str, str]:
    """Read ``version``/``summary`` string literals (or the docstring) of a class without importing it."""
    module, _, attr = value.partition(":")
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # top-level lookup imports nothing
    except (ImportError, ValueError):
        return {}
    if spec is None:
        return {}
    if len(parts) == 1:
        path = Path(spec.origin) if spec.origin else None
    else:
        locations = list(spec.submodule_search_locations or [])
        path = None
        for loc in locations:
            base = Path(loc, *parts[1:])
            for cand in (base.with_suffix(".py"), base / "__init__.py"):
                if cand.is_file():
                    path = cand
                    break
            if path:
                break
    if path is None or not path.is_file():
        return {}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return {}
    cls_name = attr.split(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            out: dict[str, str] = {}
            for stmt in node.body:
                targets = []
                if isinstance(stmt, ast.Assign):
                    targets, val = stmt.targets, stmt.value
                elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                    targets, val = [stmt.target], stmt.value
                for t in targets:
                    if isinstance(t, ast.Name) and isinstance(val, ast.Constant) and isinstance(val.value, str):
                        out[t.id] = val.value
            doc = ast.get_docstring(node)
            if doc and "summary" not in out:
                out["summary"] = doc.strip().splitlines()[0]
            return out
    return {}


def list_plugins(kind: str) -> list[PluginInfo]:
    """Registered plugins of ``kind`` (``"models"``, ``"datasets"`` or ``"scorers"``), sorted by name, not imported."""
    infos = []
    for name, ep in sorted(_entry_points(kind).items()):
        dist = getattr(ep, "dist", None)
        attrs = _static_attrs(ep.value)
        infos.append(
            PluginInfo(
                name=name,
                kind=kind,
                value=ep.value,
                distribution=_dist_name(ep),
                version=attrs.get("version") or (dist.version if dist is not None else "?"),
                summary=attrs.get("summary", ""),
            )
        )
    return infos


def names(kind: str) -> list[str]:
    """Registered names of ``kind``, sorted."""
    return sorted(_entry_points(kind))


def info(kind: str, name: str) -> PluginInfo:
    """The :class:`PluginInfo` of one plugin; unknown names raise an error listing the known ones."""
    name = resolve_name(kind, name)
    for item in list_plugins(kind):
        if item.name == name:
            return item
    raise _unknown(kind, name)


def _unknown(kind: str, name: str) -> PluginError:
    """``unknown model 'pix2pix-hd'; did you mean 'pix2pixhd'? available: pix2pix, pix2pixhd``."""
    known = names(kind)
    close = difflib.get_close_matches(name.casefold(), [n.casefold() for n in known], n=1, cutoff=0.6)
    guess = next((f" did you mean {n!r}?" for n in known if close and n.casefold() == close[0]), "")
    return PluginError(f"unknown {kind[:-1]} {name!r};{guess} available: {', '.join(known) or 'none'}")


def resolve_name(kind: str, name: str) -> str:
    """The registered name ``name`` stands for: itself, or the one name equal to it ignoring case
    (``pix2pixHD`` -> ``pix2pixhd``). Unknown names raise :class:`PluginError` listing the known
    ones, with a did-you-mean for a close one (``pix2pix-hd``)."""
    eps = _entry_points(kind)
    if name in eps:
        return name
    same = [n for n in eps if n.casefold() == name.casefold()]
    if len(same) == 1:
        return same[0]
    raise _unknown(kind, name)


@lru_cache(maxsize=None)
def _load_cached(kind: str, name: str, value: str) -> type:
    ep = _entry_points(kind)[name]
    try:
        obj = ep.load()
    except Exception as exc:  # a third-party plugin can fail in any way on import
        raise PluginError(f"{kind[:-1]} {name!r} ({value}) failed to import: {type(exc).__name__}: {exc}") from exc
    check_contract(kind, obj, name)
    return obj


def load(kind: str, name: str) -> type:
    """Import and return the plugin class registered as ``name`` (case-insensitively, see
    :func:`resolve_name`), checked against its contract."""
    name = resolve_name(kind, name)
    return _load_cached(kind, name, _entry_points(kind)[name].value)


def check_contract(kind: str, obj: Any, name: str = "") -> None:
    """Raise :class:`PluginError` if ``obj`` does not implement the contract of ``kind``.

    This is the registry smoke test's first half; tests also exercise every plugin on tiny data.
    """
    from p2ptools.buildkit.contract import DatasetBuilder
    from p2ptools.eval.scorers import SegmentationScorer

    label = f"{kind[:-1]} {name or getattr(obj, '__name__', obj)!r}"
    base = {"models": ModelPlugin, "datasets": DatasetBuilder, "scorers": SegmentationScorer}[kind]
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"{label} must be a subclass of {base.__module__}.{base.__name__}")
    if getattr(obj, "__abstractmethods__", None):
        raise PluginError(f"{label} does not implement {', '.join(sorted(obj.__abstractmethods__))}")
    for attr in ("name", "version", "summary"):
        if not isinstance(getattr(obj, attr, None), str) or not getattr(obj, attr):
            raise PluginError(f"{label} needs a non-empty string class attribute {attr!r}")
    if name and obj.name != name:
        raise PluginError(f"{label} is registered as {name!r} but its class says name = {obj.name!r}")
    if kind == "scorers":  # a scorer's options are the shared ScorerOptions
        return
    options = getattr(obj, "Options", None)
    if not (isinstance(options, type) and is_dataclass(options)):
        raise PluginError(f"{label} needs an Options dataclass")
    try:
        options()
    except Exception as exc:
        raise PluginError(f"{label}: Options() must work with defaults alone ({exc})") from exc
    if kind == "datasets" and not isinstance(getattr(obj, "source_layout", None), str):
        raise PluginError(f"{label} needs a string source_layout")


def load_run(run_dir: str | Path, options: LoadOptions | None = None) -> TrainedModel:
    """Load any run directory through the plugin named in its ``config.json``."""
    config = read_run_config(run_dir)
    plugin_cls = load("models", config["plugin"])
    return plugin_cls().load(Path(run_dir), options or LoadOptions())
