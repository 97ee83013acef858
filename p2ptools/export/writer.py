"""Write a run's generator to ONNX or TorchScript, and keep the file only if it matches PyTorch.

The file is written to ``.<name>.p2ptools-new`` beside ``out``, run (onnxruntime, or
``torch.jit.load``) on the run's own validation inputs when its dataset is there and on generated
inputs at two sizes, batch 2, compared with the PyTorch module, and renamed to ``out`` only when
the largest absolute difference of the outputs (in the network's [-1, 1] range) is within
``tolerance``; otherwise it is deleted and :class:`ParityError` says by how much it missed.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2ptools.errors import ConfigError, OutputError, P2PError
from p2ptools.export import runtime
from p2ptools.export.contract import contract
from p2ptools.imageio import decode_image, is_image_name
from p2ptools.pairs import split_pair
from p2ptools.plugin import Graph, TrainedModel, read_run_config

#: largest accepted |ONNX - PyTorch| of the network outputs in [-1, 1] (1/40 of a uint8 level)
TOLERANCE = 1e-4
FORMATS = ("onnx", "torchscript")
#: the default ONNX opset (the legacy TorchScript-based exporter writes it exactly, see README)
OPSET = 17


class ParityError(P2PError):
    """The exported file computes something else than PyTorch (beyond the tolerance)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how closely it matched PyTorch."""

    path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    #: the parity inputs, e.g. ``"2 validation images 32x32"``, ``"2 generated 64x96"``
    checked: tuple[str, ...]


def _temp_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.p2ptools-new")


def _validation_batch(model: TrainedModel, run_dir: Path, limit: int = 2) -> tuple[list, list] | None:
    """Up to ``limit`` input halves of the run's validation pairs (one size), or None."""
    from p2ptools.translate import extra_path

    data = read_run_config(run_dir).get("data")
    folder = Path(data) / "val" if data else None
    if folder is None or not folder.is_dir():
        return None
    images, extras = [], []
    for path in sorted(p for p in folder.iterdir() if is_image_name(p.name) and p.is_file()):
        a, b = split_pair(decode_image(path.read_bytes(), str(path), exif_orientation=False), str(path))
        image = a if model.direction == "AtoB" else b
        if model.in_channels == 1:
            import cv2

            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        maps = {}
        for kind in model.input_extras:
            file = extra_path(path, kind)
            if not file.is_file():
                return None
            maps[kind] = decode_image(file.read_bytes(), str(file), mode="unchanged")
        unit = max(1, model.size_multiple)
        if image.shape[0] % unit or image.shape[1] % unit or (images and image.shape != images[0].shape):
            continue
        images.append(image)
        extras.append(maps)
        if len(images) == limit:
            break
    return (images, extras) if images else None


def parity_sizes(unit: int) -> list[tuple[int, int]]:
    """Two generated sizes: a square one of at least 64 px and a wider one, multiples of ``unit``."""
    base = unit * math.ceil(64 / unit)
    return [(base, base), (base, unit * math.ceil(1.5 * base / unit))]


def parity_feeds(model: TrainedModel, graph: Graph, run_dir: Path, seed: int = 0) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The inputs the parity check runs: validation images (when the run's dataset is there) and
    generated ones at :func:`parity_sizes`, batch 2 (generated images through the model's own
    preprocessing when it takes plain images; random graph inputs otherwise)."""
    rng = np.random.default_rng(seed)
    out = []
    val = _validation_batch(model, run_dir)
    if val is not None:
        h, w = val[0][0].shape[:2]
        out.append((f"{len(val[0])} validation image(s) {h}x{w}", graph.feeds(*val)))
    for h, w in parity_sizes(max(1, model.size_multiple)):
        if not model.input_extras:
            shape = (h, w) if model.in_channels == 1 else (h, w, model.in_channels)
            images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2)]
            feeds = graph.feeds(images, [{} for _ in images])
        else:
            feeds = {name: rng.uniform(-1 if i == 0 else 0, 1 if i == 0 else 2, (2, c, h // s, w // s)).astype(np.float32)
                     for i, (name, (c, s)) in enumerate(zip(graph.input_names, graph.input_strides, strict=True))}
        out.append((f"2 generated {h}x{w}", feeds))
    return out


def _torch_outputs(graph: Graph, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return graph.module(*(torch.from_numpy(feeds[n]) for n in graph.input_names)).float().numpy()


def _example(graph: Graph, unit: int) -> tuple:
    import torch

    h = w = unit * math.ceil(32 / unit)
    return tuple(torch.zeros(1, c, h // s, w // s) for c, s in graph.input_strides)


def write_onnx(graph: Graph, path: Path, unit: int, opset: int, meta: dict[str, str]) -> None:
    """Export ``graph`` to ``path`` with dynamic batch, height and width and ``meta`` as its metadata (no parity check)."""
    import torch

    onnx = runtime.require("onnx")
    runtime.require("onnxruntime")
    axes = {name: {0: "batch", 2: f"height_{s}" if s > 1 else "height", 3: f"width_{s}" if s > 1 else "width"}
            for name, (_, s) in zip(graph.input_names, graph.input_strides, strict=True)}
    axes["output"] = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        torch.onnx.export(graph.module, _example(graph, unit), str(path), dynamo=False, opset_version=opset,
                          input_names=list(graph.input_names), output_names=["output"], dynamic_axes=axes)
    proto = onnx.load(str(path))
    set_metadata(proto, meta)
    onnx.save(proto, str(path))


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Replace the custom metadata of an ONNX ``ModelProto`` by ``meta``."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _write_torchscript(graph: Graph, path: Path, unit: int, meta: dict[str, str]) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph.module, _example(graph, unit), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"p2ptools.json": json.dumps(meta, indent=1)})


def _file_outputs(fmt: str, path: Path) -> callable:
    if fmt == "onnx":
        sess = runtime.session(path)
        return lambda feeds: runtime.run(sess, feeds)
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        module = torch.jit.load(str(path))

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return module(*(torch.from_numpy(v) for v in feeds.values())).float().numpy()
    return run


def export_model(model: TrainedModel, run_dir: Path, out: Path, *, fmt: str = "onnx", opset: int = OPSET,
                 tolerance: float = TOLERANCE, requested_epoch: str = "latest", overwrite: bool = False) -> ExportResult:
    """Export a loaded model's generator to ``out`` (module docstring); returns the parity figure.

    Raises :class:`ParityError` (the file not kept) when ONNX/TorchScript and PyTorch differ by more
    than ``tolerance``, :class:`ConfigError` for a bad format, an existing ``out`` without
    ``overwrite`` or missing packages.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        runtime.require("onnx")
        runtime.require("onnxruntime")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name such as model.{fmt if fmt == 'onnx' else 'pt'}")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out}: exists; use --overwrite to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    graph = model.graph()
    unit = max(1, int(model.size_multiple))
    meta = contract(model, graph, run_dir, requested_epoch)
    meta["parity_tolerance"] = repr(tolerance)
    temp = _temp_path(out)
    try:
        if fmt == "onnx":
            write_onnx(graph, temp, unit, opset, meta)
        else:
            _write_torchscript(graph, temp, unit, meta)
        run_file = _file_outputs(fmt, temp)
        worst, checked = 0.0, []
        for label, feeds in parity_feeds(model, graph, run_dir):
            got, want = run_file(feeds), _torch_outputs(graph, feeds)
            if got.shape != want.shape:
                raise ParityError(f"--out {out}: the exported file returns shape {got.shape} for {label}, PyTorch {want.shape}; file not kept")
            worst = max(worst, float(np.abs(got - want).max()))
            checked.append(label)
        if not worst <= tolerance:
            raise ParityError(f"--out {out}: parity check failed: max |{fmt} - PyTorch| = {worst:.3g} > tolerance {tolerance:g} "
                              f"(on {', '.join(checked)}); file not kept")
        if fmt == "onnx":  # record the figure in the file too
            onnx = runtime.require("onnx")
            proto = onnx.load(str(temp))
            set_metadata(proto, {**meta, "parity_max_abs_diff": f"{worst:.3g}"})
            onnx.save(proto, str(temp))
        os.replace(temp, out)
    except OSError as exc:
        raise OutputError(out, exc) from None
    finally:
        temp.unlink(missing_ok=True)
    return ExportResult(out, fmt, worst, tolerance, tuple(checked))
