"""What a partial evaluation folder (``p2ptools eval --shard I/N``) must hold, checked completely
before ``p2ptools eval merge`` uses any of it: parts may come from another machine and are
untrusted input.

- ``partial.json`` fits :data:`META` (types, ranges, exactly the known keys), and its fields agree
  with each other (:func:`check_meta`): the shard ``I < N``, one name per result, feature-file
  names that are exactly the ones ``--shard I/N`` writes, the positions of shard I of N, the samples
  of this shard's share of the first ``--samples`` results, the gallery of its worst LPIPS.
- ``state.npz`` holds exactly the arrays the settings produce (:func:`expected_arrays`), each read
  with ``allow_pickle=False`` after its header showed the expected dtype and shape, finite, counts
  non-negative and equal to the number of names (:func:`load_state`).
- Each KID feature ``.npy`` is a float32 (rows, dim) array of the shard's row count and the state's
  feature width, complete, finite, and sums to the state's FID sums (:func:`check_features`).
- Every file named is a plain file name inside the part folder (no ``..``, no folder, no link out).

Every problem raises :class:`p2ptools.errors.InputFileError` naming the part's file and the field.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import InputFileError
from p2ptools.eval.schema import (
    Invalid,
    boolean,
    file_name,
    integer,
    json_value,
    list_of,
    mapping,
    nullable,
    number,
    record,
    string,
    tuple_of,
)
from p2ptools.metrics.resize import PROTOCOLS

FORMAT = "p2ptools-eval-partial/2"
#: Widest FID/KID feature vector accepted (the Inception pool features).
MAX_FEATURE_DIM = 2048
#: Longest side of a sample or gallery thumbnail (``p2ptools.eval.evaluate.SAMPLE_SIZE``).
MAX_THUMB = 256

_HEX64 = r"[0-9a-f]{64}"
_SIZE = r"[1-9][0-9]{0,5}x[1-9][0-9]{0,5}"
_COUNT = integer(0, 1 << 40)
_WEIGHTS = record({"path": string(), "sha256": string(_HEX64), "published_name": string(), "matches_published": boolean})
_LPIPS_WEIGHTS = record({"net": string(), "version": string(), "backbone": _WEIGHTS, "linear_layers": record({"path": string(), "sha256": string(_HEX64)})})
_FIDELITY = record({
    "fid": boolean, "kid": boolean, "lpips": boolean, "protocol": string(choices=PROTOCOLS),
    "kid_subsets": integer(1, 1 << 31), "kid_subset_size": integer(2, 1 << 31), "kid_seed": integer(0, (1 << 32) - 1),
    "gallery": integer(0, 1 << 20), "inception": nullable(_WEIGHTS), "lpips_weights": nullable(_LPIPS_WEIGHTS),
})  # fmt: skip
_CLASSES = record({
    "name": string(), "names": list_of(string(), max_len=255), "label_ids": list_of(integer(-(1 << 31), 1 << 31), max_len=255),
    "colors": list_of(tuple_of(integer(0, 255), integer(0, 255), integer(0, 255)), max_len=255),
})  # fmt: skip
_RANGE = tuple_of(number(), number())
_MIOU = record({
    "scorer": string(), "weights": string(), "size": string(), "label_resize": string(), "split": nullable(string()),
    "multi_scale": boolean, "segmented_at": json_value(depth=1), "image_resize": string(), "labels": string(),
    "label_maps": _COUNT, "images": _COUNT, "scorer_info": json_value(), "classes": _CLASSES,
})  # fmt: skip
_CONTEXT = record({
    "name": string(), "results": string(), "classes": _CLASSES,
    "fcn": boolean, "seg": boolean, "ground_truth_row": boolean, "color": boolean, "metrics": boolean,
    "labels": nullable(string()), "photos": nullable(string()),
    "scorer_info": nullable(record({"weights": string(), "device": string(), "precision": string(choices=("fp32", "bf16")), "tf32": boolean})),
    "bins": record({"width": number(positive=True), "L": _RANGE, "a": _RANGE, "b": _RANGE}),
    "fidelity": nullable(_FIDELITY), "real_sizes": list_of(string(_SIZE)), "samples": integer(0, 1 << 20),
}, {"miou": _MIOU, "split": nullable(string()), "device": string()})  # fmt: skip
_FEATURES = list_of(tuple_of(file_name(".npy"), list_of(integer(0, 1 << 40))), length=1)
_OBJECTS = record({
    "per_image": mapping(string(), number(0)),
    "sizes": record({"results": mapping(string(_SIZE), _COUNT), "truth": mapping(string(_SIZE), _COUNT)}),
    "parts": record({}, {"results": _FEATURES, "truth": _FEATURES}), "cache_hits": integer(0, 1),
})  # fmt: skip
_PNG = file_name(".png")
_SAMPLE = record({"name": string(), "position": integer(0, 1 << 40), "input": nullable(_PNG), "output": _PNG, "truth": nullable(_PNG)})
_WORST = record({"name": string(), "value": number(0), "input": nullable(_PNG), "output": _PNG, "truth": _PNG})


def _objects(value: Any, field: str) -> dict:
    """``{}`` (no FID/KID/LPIPS) or :data:`_OBJECTS`; which one the context needs: :func:`check_meta`."""
    return {} if value == {} else _OBJECTS(value, field)


#: The whole of ``partial.json``.
META = record({
    "format": string(choices=(FORMAT,)), "shard": tuple_of(integer(0, 1 << 20), integer(1, 1 << 20)),
    "names": list_of(string()), "context": _CONTEXT, "objects": _objects,
    "samples": list_of(_SAMPLE, max_len=1 << 20), "gallery": list_of(_WORST, max_len=1 << 20),
})  # fmt: skip


def positions(shard: tuple[int, int], count: int) -> list[int]:
    """Global positions (in the results folder's order) of the ``count`` results of shard (I, N)."""
    i, n = shard
    return [i + k * n for k in range(count)]


def _fail(path: Path, field: str, problem: str) -> InputFileError:
    return InputFileError(path, f"{field}: {problem}")


def check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """``partial.json``'s contents, checked against :data:`META` and for agreement between fields.

    Raises:
        InputFileError: ``path`` and the field at fault.
    """
    from p2ptools.eval.color import LabBins
    from p2ptools.eval.fidelity import worst_images

    if isinstance(meta, dict) and isinstance(meta.get("format"), str) and meta["format"].startswith("p2ptools-eval-partial/") and meta["format"] != FORMAT:
        raise _fail(path, "format", f"{meta['format']!r} was written by another version of p2ptools (this one reads {FORMAT!r}): run the shard again")
    try:
        meta = META(meta, "")
    except Invalid as exc:
        raise _fail(path, exc.field, exc.problem) from None
    i, n = meta["shard"]
    if i >= n:
        raise _fail(path, "shard", f"{i}/{n}: need 0 <= I < N")
    names, ctx, objects = meta["names"], meta["context"], meta["objects"]
    if len(set(names)) != len(names):
        raise _fail(path, "names", "a result name appears twice")
    own = positions((i, n), len(names))
    classes = ctx["classes"]
    if not (len(classes["names"]) == len(classes["label_ids"]) == len(classes["colors"]) >= 1):
        raise _fail(path, "context.classes", "names, label_ids and colors need one entry per class")
    if ctx["fcn"] and ctx["seg"]:
        raise _fail(path, "context.seg", "--fcn and --seg cannot both be set")
    bins = ctx["bins"]
    if bins["a"] != bins["b"]:
        raise _fail(path, "context.bins.b", "a and b share one range")
    try:
        LabBins(bins["width"], tuple(bins["L"]), tuple(bins["a"]))
    except ValueError as exc:
        raise _fail(path, "context.bins", str(exc)) from None
    fid = ctx["fidelity"]
    if (fid is None) != (objects == {}):
        raise _fail(path, "objects", "FID/KID/LPIPS state without their settings" if fid is None else "missing the FID/KID/LPIPS state (per_image, sizes, parts)")
    if fid is not None:
        inception = fid["fid"] or fid["kid"]
        if not (inception or fid["lpips"]):
            raise _fail(path, "context.fidelity", "none of fid, kid, lpips is set")
        if (fid["inception"] is None) == inception:
            raise _fail(path, "context.fidelity.inception", "the Inception weights' record goes with fid or kid, and only with them")
        if (fid["lpips_weights"] is None) == fid["lpips"]:
            raise _fail(path, "context.fidelity.lpips_weights", "the LPIPS weights' record goes with lpips, and only with it")
        for what in ("results", "truth"):
            if sum(objects["sizes"][what].values()) != len(names):
                raise _fail(path, f"objects.sizes.{what}", f"counts {sum(objects['sizes'][what].values())} images, the part has {len(names)}")
        if set(objects["per_image"]) != (set(names) if fid["lpips"] else set()):
            raise _fail(path, "objects.per_image", "needs one LPIPS value for each name, and only with lpips" if fid["lpips"] else "LPIPS values without lpips")
        parts = objects["parts"]
        if set(parts) != ({"results", "truth"} if inception else set()):
            raise _fail(path, "objects.parts", "needs 'results' and 'truth' feature files with fid or kid, and none without")
        for what, ((name, pos),) in parts.items():
            if name != f"{what}.shard{i}-of-{n}.npy":
                raise _fail(path, f"objects.parts.{what}[0][0]", f"expected {what}.shard{i}-of-{n}.npy (the file --shard {i}/{n} writes), got {name!r}")
            if pos != own:
                raise _fail(path, f"objects.parts.{what}[0][1]", f"expected the positions of shard {i}/{n} of {len(names)} images")
    wanted = [p for p in own if p < ctx["samples"]]
    if [s["position"] for s in meta["samples"]] != wanted:
        raise _fail(path, "samples", f"expected the samples at positions {wanted} (this shard's among the first {ctx['samples']})")
    for k, sample in enumerate(meta["samples"]):
        if sample["name"] != names[(sample["position"] - i) // n]:
            raise _fail(path, f"samples[{k}].name", f"position {sample['position']} is {names[(sample['position'] - i) // n]!r}, not {sample['name']!r}")
    worst = worst_images(objects["per_image"], fid["gallery"]) if fid is not None and fid["lpips"] else []
    if [(g["name"], g["value"]) for g in meta["gallery"]] != worst:
        raise _fail(path, "gallery", f"expected the {len(worst)} worst LPIPS values of objects.per_image, worst first")
    return meta


def expected_arrays(ctx: dict[str, Any], dim: int | None) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Name -> (dtype, shape) of every array ``state.npz`` holds under the settings ``ctx``; ``dim``
    is the FID feature width (None: any from 1 to :data:`MAX_FEATURE_DIM`, read from ``fid_out.sum``)."""
    from p2ptools.eval.color import CHANNELS, LabBins

    i8, f8 = np.dtype("<i8"), np.dtype("<f8")
    out = {"n": (i8, (1,))}
    c = len(ctx["classes"]["names"])
    if ctx["fcn"] or ctx["seg"]:
        out["hist"] = (i8, (c, c + 1))
    if ctx["ground_truth_row"]:
        out["gt_hist"] = (i8, (c, c + 1))
    if ctx.get("miou"):
        m = len(ctx["miou"]["classes"]["names"])
        out["miou_hist"] = (i8, (m, m + 1))
    if ctx["color"]:
        b = ctx["bins"]
        for ch, count in zip(CHANNELS, LabBins(b["width"], tuple(b["L"]), tuple(b["a"])).counts(), strict=True):
            out[f"out_{ch}"] = out[f"gt_{ch}"] = (i8, (count,))
    if ctx["metrics"]:
        out["metrics"] = (f8, (6,))
    fid = ctx["fidelity"] or {}
    if fid.get("fid") or fid.get("kid"):
        for side in ("fid_out", "fid_gt"):
            out.update({f"{side}.sum": (f8, (dim or -1,)), f"{side}.outer": (f8, (dim or -1, dim or -1)), f"{side}.count": (i8, (1,))})
    if fid.get("lpips"):
        out.update({"lpips.sum": (f8, (1,)), "lpips.count": (i8, (2,))})
    return out


def _header(fh: Any, where: Path, field: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version}")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read(fh, max_header_size=10_000)
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        raise _fail(where, field, f"not a readable .npy array ({exc})") from None


def _read_exact(fh: Any, dtype: np.dtype, shape: tuple[int, ...], where: Path, field: str) -> np.ndarray:
    size = int(np.prod(shape)) * dtype.itemsize
    data = fh.read(size)
    if len(data) != size or fh.read(1):
        raise _fail(where, field, f"truncated or padded: {len(data)} bytes of data for {dtype.name} {shape}")
    return np.frombuffer(data, dtype).reshape(shape)


def _fits(field: str, header: tuple, dtype: np.dtype, shape: tuple[int, ...], where: Path) -> None:
    got_shape, fortran, got = header
    if got.hasobject:
        raise _fail(where, field, f"dtype {got} (an object array: never unpickled), expected {dtype.name}")
    if got != dtype:
        raise _fail(where, field, f"dtype {got.name if got.names is None else got}, expected {dtype.name}")
    if fortran or len(got_shape) != len(shape) or any(s != -1 and g != s for g, s in zip(got_shape, shape, strict=True)):
        raise _fail(where, field, f"shape {tuple(got_shape)}{' (Fortran order)' if fortran else ''}, expected {tuple('any' if s == -1 else s for s in shape)}")


def load_state(path: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a part's ``state.npz``, checked (see the module docstring) against ``meta``."""
    ctx, count = meta["context"], len(meta["names"])
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InputFileError(path, "missing (a part holds partial.json, state.npz, features/ and images/)") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputFileError(path, f"not a complete .npz (zip) archive of arrays ({exc})") from None
    arrays: dict[str, np.ndarray] = {}
    with archive:
        members = {m.filename.removesuffix(".npy"): m for m in archive.infolist()}
        if len(members) != len(archive.infolist()):
            raise InputFileError(path, "an array is stored twice in the archive")
        dim = None
        order = sorted(members, key=lambda k: k != "fid_out.sum")  # the feature width first
        for key in order:
            expected = expected_arrays(ctx, dim)
            if key not in expected or not members[key].filename.endswith(".npy"):
                raise _fail(path, key, f"unknown array (expected {', '.join(sorted(expected))})")
            try:
                with archive.open(members[key]) as fh:
                    header = _header(fh, path, key)
                    dtype, shape = expected[key]
                    _fits(key, header, dtype, shape, path)
                    if key == "fid_out.sum":
                        dim = header[0][0]
                        if not 1 <= dim <= MAX_FEATURE_DIM:
                            raise _fail(path, key, f"feature width {dim}, expected 1..{MAX_FEATURE_DIM}")
                    arrays[key] = _read_exact(fh, dtype, tuple(header[0]), path, key).copy()
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as exc:  # damaged (CRC, truncated), encrypted, unknown compression
                raise _fail(path, key, f"unreadable ({exc})") from None
        expected = expected_arrays(ctx, dim)
        for key, (_, shape) in expected.items():
            if key not in arrays:
                raise _fail(path, key, "missing")
            if arrays[key].shape != shape:
                raise _fail(path, key, f"shape {arrays[key].shape}, expected {shape}")
    _check_values(arrays, meta, count, path)
    return arrays


def _check_values(arrays: dict[str, np.ndarray], meta: dict[str, Any], count: int, path: Path) -> None:
    for key, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise _fail(path, key, "NaN or infinite values")
        if array.dtype.kind == "i" and (array < 0).any():
            raise _fail(path, key, "negative counts")
    counts = {"n": arrays["n"][0]}
    if "metrics" in arrays:
        m = arrays["metrics"]
        counts["metrics"] = m[5]
        if m[0] < 0 or m[3] < 0 or not 0 <= m[4] <= m[5] or abs(m[2]) > m[5]:
            raise _fail(path, "metrics", "sums out of range (negative L1 or pixels, more finite PSNRs than images, |SSIM| > 1)")
    for side in ("fid_out", "fid_gt"):
        if f"{side}.count" in arrays:
            counts[f"{side}.count"] = arrays[f"{side}.count"][0]
    if "lpips.count" in arrays:
        counts["lpips.count"] = arrays["lpips.count"][0]
        if arrays["lpips.count"][1] > arrays["lpips.count"][0]:
            raise _fail(path, "lpips.count", "more resized outputs than pairs")
        total = float(sum(meta["objects"]["per_image"].values()))
        if not np.isclose(arrays["lpips.sum"][0], total, rtol=1e-9, atol=1e-12):
            raise _fail(path, "lpips.sum", f"{arrays['lpips.sum'][0]!r} is not the sum of objects.per_image ({total!r})")
    for key, value in counts.items():
        if value != count:
            raise _fail(path, key, f"counts {value:g} images, the part names {count}")
    for side in ("out", "gt"):
        if f"{side}_L" in arrays and len({int(arrays[f"{side}_{ch}"].sum()) for ch in "Lab"}) != 1:
            raise _fail(path, f"{side}_L", "the L, a and b histograms count different numbers of pixels")


def inside(folder: Path, sub: str, name: str, field: str, meta_path: Path) -> Path:
    """``folder / sub / name`` when it is a regular file that stays inside ``folder`` (no link out)."""
    path = folder / sub / name
    try:
        real, root = path.resolve(strict=True), folder.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise _fail(path, field, f"missing (named in {meta_path.name})") from None
    if not real.is_relative_to(root) or not real.is_file():
        raise _fail(path, field, "not a regular file inside the part folder")
    return path


def check_features(folder: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], meta_path: Path) -> dict[str, Path]:
    """The part's KID feature files (``what`` -> path), each checked against the state; see the module docstring."""
    out = {}
    for what, ((name, pos),) in meta["objects"].get("parts", {}).items():
        field = f"objects.parts.{what}"
        path = inside(folder, "features", name, field, meta_path)
        side = "fid_out" if what == "results" else "fid_gt"
        dim = arrays[f"{side}.sum"].shape[0]
        with open(path, "rb") as fh:
            header = _header(fh, path, field)
            _fits(field, header, np.dtype("<f4"), (len(pos), dim), path)
            offset = fh.tell()
        expected = offset + len(pos) * dim * 4
        if path.stat().st_size != expected:
            raise _fail(path, field, f"truncated or padded: {path.stat().st_size} bytes, expected {expected}")
        rows = np.load(path, mmap_mode="r", allow_pickle=False) if pos else np.zeros((0, dim), np.float32)  # (an empty file cannot be mapped)
        total = np.zeros(dim, np.float64)
        for start in range(0, len(pos), 4096):
            block = np.asarray(rows[start : start + 4096], np.float64)
            if not np.isfinite(block).all():
                raise _fail(path, field, "NaN or infinite features")
            total += block.sum(axis=0)
        del rows
        if not np.allclose(total, arrays[f"{side}.sum"], rtol=1e-6, atol=1e-6):
            raise _fail(path, field, f"the features do not sum to {side}.sum of state.npz")
        out[what] = path
    return out
