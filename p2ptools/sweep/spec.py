"""Sweep specs: a grid of training runs (rows x seeds) and how to evaluate them, in TOML.

A spec (``tomllib``, the standard library's reader)::

    title = "Table 1: objectives"        # optional, the table's heading
    model = "pix2pix"                    # a registered model plugin (default pix2pix)
    data = "datasets/cityscapes"         # the aligned dataset (relative to the spec's folder);
                                         # `sweep run --data DIR` gives or replaces it
    seeds = [0, 1, 2]                    # each row is trained once per seed (the option --seed)
    threads = 2                          # torch CPU threads per cell (0 or absent: cores // jobs)

    [train]                              # every row starts from these train options
    netG = "unet_256"                    # a train flag without its "--" (lambda-l1, load-size, ...)
    epochs = 100                         # or the option's field name (lambda_l1, load_size, ...)

    [[rows]]                             # one table row: a label and the options it changes
    label = "L1"
    loss = "l1"

    [eval]                               # the flags of `p2ptools eval`, without their "--"
    fcn = true
    fcn-weights = "fcn-8s-cityscapes.caffemodel"
    ground-truth-row = true

    [slurm]                              # optional: --backend slurm's job settings (its flags win)
    partition = "gpu"
    time = 1440                          # minutes per cell's job
    gpus-per-job = 1
    account = "lab"

A row is validated exactly as ``p2ptools train`` validates its options (the plugin's options
dataclass, :func:`p2ptools.options.from_dict` and :func:`p2ptools.options.check_options`), and
the evaluation as ``p2ptools eval`` does (:meth:`p2ptools.eval.api.EvalRequest.check`), before
anything runs. Every error is one line naming the file and the key.

A row may also change ``data`` (the row's dataset). ``seed`` is not an option of a row: ``seeds``
sets it for every cell.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2ptools.errors import ConfigError, P2PError

#: Where the specs shipped with p2ptools live (``p2ptools sweep list``).
SHIPPED = Path(__file__).with_name("specs")
TOP_KEYS = ("title", "model", "data", "seeds", "threads", "train", "rows", "eval", "slurm")
#: ``[slurm]`` keys: the ``sweep run`` flag (without ``--``) -> (the slurm backend's argument, type, least value).
SLURM_KEYS: dict[str, tuple[str, type, int | None]] = {
    "partition": ("partition", str, None),
    "time": ("time", int, 1),
    "gpus-per-job": ("gpus_per_job", int, 0),
    "account": ("account", str, None),
}
RESERVED_ROW_KEYS = ("label", "data")
MAX_SEEDS, MAX_THREADS = 1000, 1024

#: ``[eval]`` keys: the ``p2ptools eval`` flag (without ``--``) -> (type, default).
EVAL_KEYS: dict[str, tuple[type, Any]] = {
    "fcn": (bool, False),
    "seg": (bool, False),
    "color": (bool, False),
    "fid": (bool, False),
    "kid": (bool, False),
    "lpips": (bool, False),
    "ground-truth-row": (bool, False),
    "fcn-weights": (Path, None),
    "inception-weights": (Path, None),
    "lpips-net": (str, None),
    "lpips-backbone-weights": (Path, None),
    "fid-protocol": (str, "clean"),
    "kid-subsets": (int, 100),
    "kid-subset-size": (int, 1000),
    "kid-seed": (int, 2020),
    "cityscapes": (Path, None),
    "labels": (Path, None),
    "split": (str, None),
    "batch-size": (int, 8),
    "samples": (int, 8),
    "precision": (str, "fp32"),
    "device": (str, "auto"),
}


@dataclass(frozen=True)
class Row:
    """One row of the table: its ``label``, the folder name of its cells (``slug``), its dataset
    and the train options it sets (base options and its own changes, by field name, as given)."""

    label: str
    slug: str
    data: Path
    options: dict[str, Any]


@dataclass(frozen=True)
class SweepSpec:
    """A validated spec (see the module docstring). ``eval`` maps the ``[eval]`` keys to values
    (paths absolute); ``text`` is the spec file's own text."""

    path: Path
    name: str
    title: str
    model: str
    seeds: tuple[int, ...]
    threads: int
    rows: tuple[Row, ...]
    eval: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    #: ``[slurm]``: the slurm backend's job settings (``partition``, ``time``, ``gpus_per_job``,
    #: ``account``); where cells run, so not part of what a cell is (not in :meth:`to_json`).
    slurm: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[tuple[str, int]]:
        """Every (row label, seed), row by row."""
        return [(row.label, seed) for row in self.rows for seed in self.seeds]

    def row(self, label: str) -> Row:
        """The row labelled ``label`` (ConfigError when there is none)."""
        for row in self.rows:
            if row.label == label:
                return row
        raise ConfigError(f"{self.path}: no row {label!r} (rows: {', '.join(r.label for r in self.rows)})")

    def to_json(self) -> dict[str, Any]:
        """The resolved spec as stored in ``SWEEP_DIR/sweep.json`` (what every cell reads)."""
        return {
            "name": self.name, "title": self.title, "model": self.model, "seeds": list(self.seeds), "threads": self.threads,
            "rows": [{"label": r.label, "slug": r.slug, "data": str(r.data), "options": r.options} for r in self.rows],
            "eval": {k: str(v) if isinstance(v, Path) else v for k, v in self.eval.items()},
        }  # fmt: skip


def shipped_specs() -> dict[str, Path]:
    """The specs shipped in the package: name -> file (``paper-table1`` -> ``.../paper-table1.toml``)."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.toml"))}


def find_spec(name_or_path: str | Path) -> Path:
    """A spec file: an existing path, else the shipped spec of that name (ConfigError listing them)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_specs()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ConfigError(f"{name_or_path}: no such spec file, and no shipped spec of that name (shipped: {', '.join(shipped)})")


def load_spec(path: str | Path, *, data: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Read and validate a spec file (see the module docstring).

    Args:
        path: the TOML file.
        data: the dataset, replacing the spec's ``data`` (``sweep run --data DIR``); rows that set
            their own ``data`` keep it.
        overrides: ``[eval]`` values replacing the spec's (``sweep run --fcn-weights PATH``).

    Raises:
        ConfigError: one line naming the file and the key (unknown keys, bad values, an option the
            model's options dataclass refuses, a missing dataset or weight file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the spec ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({' '.join(str(exc).split())})") from None
    where = _Where(path)
    _refuse_unknown(raw, TOP_KEYS, where, "")
    base_dir = path.resolve().parent
    title = _typed(raw.get("title", path.stem), str, where, "title")
    model = _typed(raw.get("model", "pix2pix"), str, where, "model")
    seeds = _seeds(raw.get("seeds", [0]), where)
    threads = _typed(raw.get("threads", 0), int, where, "threads")
    if not 0 <= threads <= MAX_THREADS:
        raise where.error("threads", f"must be between 0 (cores // jobs) and {MAX_THREADS}, got {threads}")
    from p2ptools import registry

    try:
        cls = registry.load("models", model).Options
    except P2PError as exc:
        raise where.error("model", str(exc)) from None
    spec_data = data if data is not None else raw.get("data")
    if spec_data is not None and data is None:
        spec_data = _typed(spec_data, str, where, "data")
    train = _typed(raw.get("train", {}), dict, where, "train")
    base = _option_values(cls, train, where, "train")
    rows_raw = _typed(raw.get("rows", []), list, where, "rows")
    if not rows_raw:
        raise where.error("rows", "the spec has no rows: add [[rows]] tables with a label and the options they change")
    rows, slugs = [], {}
    for i, row_raw in enumerate(rows_raw):
        key = f"rows[{i}]"
        row_raw = _typed(row_raw, dict, where, key)
        label = row_raw.get("label")
        if not isinstance(label, str) or not label.strip():
            raise where.error(f"{key}.label", "each row needs a label (a non-empty string)")
        key = f"rows[{i}] ({label})"
        if label.strip().lower() == "ground truth":
            raise where.error(f"{key}.label", "'Ground truth' is the table's row of the real photos (eval ground-truth-row): choose another label")
        changes = _option_values(cls, {k: v for k, v in row_raw.items() if k not in RESERVED_ROW_KEYS}, where, key)
        options = {**base, **changes}
        row_data = row_raw.get("data", spec_data)
        if row_data is None:
            raise where.error("data", "the spec names no dataset: set data = \"DIR\" or run with --data DIR")
        row_data = _typed(row_data, str, where, f"{key}.data") if not isinstance(row_data, Path) else row_data
        row_path = (base_dir / row_data) if "data" in row_raw or data is None else Path(row_data)
        row_path = Path(row_path).expanduser().resolve()
        if not row_path.is_dir():
            raise where.error(f"{key}.data" if "data" in row_raw else "data", f"{row_path}: no such dataset folder")
        _check_options(cls, options, where, key)
        from p2ptools.eval.tables import slug

        row_slug = slug(label)
        if row_slug in slugs:
            raise where.error(f"{key}.label", f"two rows would share the folder {row_slug!r} ({slugs[row_slug]!r} and {label!r}): give them distinct labels")
        slugs[row_slug] = label
        rows.append(Row(label, row_slug, row_path, options))
    evaluation = _eval_values(_typed(raw.get("eval", {}), dict, where, "eval"), overrides or {}, where, base_dir)
    slurm = _slurm_values(_typed(raw.get("slurm", {}), dict, where, "slurm"), where)
    return SweepSpec(path, path.stem, title, model, seeds, threads, tuple(rows), evaluation, text, slurm)


def _slurm_values(table: dict[str, Any], where: _Where) -> dict[str, Any]:
    """``[slurm]`` as the slurm backend's arguments, each value checked as its flag is."""
    _refuse_unknown(table, list(SLURM_KEYS), where, "slurm.")
    values = {}
    for key, value in table.items():
        name, tp, least = SLURM_KEYS[key]
        _typed(value, tp, where, f"slurm.{key}")
        if least is not None and value < least:
            raise where.error(f"slurm.{key}", f"must be a whole number >= {least}, got {value}")
        if tp is str and not value.strip():
            raise where.error(f"slurm.{key}", "must not be empty")
        values[name] = value
    return values


@dataclass(frozen=True)
class _Where:
    path: Path

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}")


def _typed(value: Any, tp: type, where: _Where, key: str) -> Any:
    names = {str: "a string", int: "a whole number", dict: "a table", list: "an array", bool: "true or false"}
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if not ok:
        raise where.error(key, f"must be {names[tp]}, got {value!r}")
    return value


def _refuse_unknown(table: dict[str, Any], known: tuple[str, ...] | list[str], where: _Where, prefix: str) -> None:
    for key in table:
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else f" (known: {', '.join(known)})"
            raise where.error(f"{prefix}{key}", f"unknown key{hint}")


def _seeds(value: Any, where: _Where) -> tuple[int, ...]:
    from p2ptools.options import SEED

    seeds = _typed(value, list, where, "seeds")
    if not seeds:
        raise where.error("seeds", "needs at least one seed")
    if len(seeds) > MAX_SEEDS:
        raise where.error("seeds", f"at most {MAX_SEEDS} seeds, got {len(seeds)}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s not in SEED:
            raise where.error("seeds", f"invalid seed {s!r}; seeds are whole numbers in {SEED}")
    if len(set(seeds)) < len(seeds):
        raise where.error("seeds", f"a seed is listed twice ({seeds})")
    return tuple(seeds)


def _option_names(cls: type) -> dict[str, str]:
    """Every accepted key of a train option -> its field name: the flag without ``--``
    (``netG``, ``lambda-l1``) and the field name (``lambda_l1``)."""
    from p2ptools.options import flag_of

    names = {}
    for f in dataclasses.fields(cls):
        names[flag_of(f)[2:]] = f.name
        names[f.name] = f.name
    return names


def _option_values(cls: type, table: dict[str, Any], where: _Where, prefix: str) -> dict[str, Any]:
    """The train options of a ``[train]`` table or a row, by field name (unknown keys, ``seed``
    and an option given twice refused)."""
    names = _option_names(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "seed":
            raise where.error(f"{prefix}.seed", "the seed is not a row option: list the seeds in seeds = [...]")
        if key not in names:
            near = difflib.get_close_matches(key, list(names), n=1)
            hint = f" (did you mean {near[0]}?)" if near else " (see `p2ptools train --model NAME --help`)"
            raise where.error(f"{prefix}.{key}", f"unknown train option of this model{hint}")
        name = names[key]
        if name in values:
            raise where.error(f"{prefix}.{key}", f"option {name} is given twice")
        values[name] = value
    return values


def _check_options(cls: type, options: dict[str, Any], where: _Where, key: str) -> None:
    """Build the options dataclass as ``p2ptools train`` would (types, choices, ranges, rules
    between options); a refusal names the row."""
    from p2ptools.options import from_dict

    try:
        from_dict(cls, {**options, "seed": 0}, "options")
    except ConfigError as exc:
        message = str(exc).removeprefix("options: ")
        raise where.error(key, message) from None


def _eval_values(table: dict[str, Any], overrides: dict[str, Any], where: _Where, base_dir: Path) -> dict[str, Any]:
    """The ``[eval]`` table with defaults and ``overrides``, paths made absolute (relative to the
    spec's folder) and checked to exist, validated as ``p2ptools eval`` validates its flags."""
    _refuse_unknown(table, list(EVAL_KEYS), where, "eval.")
    values: dict[str, Any] = {}
    for key, (tp, default) in EVAL_KEYS.items():
        given = key in table
        value = overrides[key] if overrides.get(key) is not None else table.get(key, default)
        if value is None:
            values[key] = None
            continue
        if tp is Path:
            if given and key not in overrides:
                value = base_dir / _typed(value, str, where, f"eval.{key}")
            value = Path(value).expanduser().resolve()
            if not value.exists():
                raise where.error(f"eval.{key}", f"{value}: no such file or folder")
        else:
            _typed(value, tp, where, f"eval.{key}")
        values[key] = value
    if values["lpips-net"] is not None and not values["lpips"]:
        raise where.error("eval.lpips-net", "is the backbone of lpips: set lpips = true, or drop lpips-net")
    try:
        request = eval_request(values, Path("results"), Path("out"))
        request.check()
    except ConfigError as exc:
        raise where.error("eval", str(exc)) from None
    return values


def eval_request(values: dict[str, Any], results: Path, out: Path, *, label: str = "", ground_truth_row: bool | None = None,
                 progress: bool = False, overwrite: bool = False) -> Any:
    """The :class:`p2ptools.eval.api.EvalRequest` of one cell's results folder from ``[eval]``
    values (:data:`EVAL_KEYS`); ``ground_truth_row`` None keeps the spec's."""
    from p2ptools.eval.api import EvalRequest
    from p2ptools.eval.evaluate import EvalOptions
    from p2ptools.eval.fidelity import FidelityOptions

    v = values
    gt = v["ground-truth-row"] if ground_truth_row is None else ground_truth_row
    options = EvalOptions(
        fcn=v["fcn"], seg=v["seg"], color=v["color"], cityscapes=v["cityscapes"], labels=v["labels"], split=v["split"],
        ground_truth_row=gt, batch_size=v["batch-size"], samples=v["samples"], progress=progress,
        fidelity=FidelityOptions(fid=v["fid"], kid=v["kid"], lpips=v["lpips"], protocol=v["fid-protocol"],
                                 inception_weights=_path(v["inception-weights"]), lpips_net=v["lpips-net"] or "alex",
                                 lpips_backbone_weights=_path(v["lpips-backbone-weights"]), kid_subsets=v["kid-subsets"],
                                 kid_subset_size=v["kid-subset-size"], kid_seed=v["kid-seed"]),
    )  # fmt: skip
    return EvalRequest(out=out, options=options, results=[results], fcn_weights=_path(v["fcn-weights"]), device=v["device"],
                       precision=v["precision"], labels={results: label} if label else {}, overwrite=overwrite)


def _path(value: Any) -> Path | None:
    return Path(value) if value is not None else None


def stored_eval(values: dict[str, Any]) -> dict[str, Any]:
    """``[eval]`` values as read back from ``sweep.json`` (paths as :class:`Path`)."""
    return {k: Path(values[k]) if EVAL_KEYS[k][0] is Path and values.get(k) is not None else values.get(k, EVAL_KEYS[k][1])
            for k in EVAL_KEYS}


def canonical(value: Any) -> str:
    """A stable text of a JSON-able value (what two specs are compared by)."""
    return json.dumps(value, sort_keys=True, default=str)
