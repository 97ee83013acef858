"""The contract an exported file carries: metadata keys, the output mapping, and the identity of
the weights, shared by the writer (which records it) and the ONNX backend (which checks it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from p2ptools.plugin import Graph, TrainedModel, read_run_config

#: version of the metadata layout below
FORMAT_VERSION = "1"
INPUT_RANGE = "float32 in [-1, 1]"
OUTPUT = ("float32 (N, C, H, W) in [-1, 1] (tanh); uint8 pixels = round((y + 1) / 2 * 255) (half to even), "
          "clipped to 0..255, C = 3: RGB, C = 1: gray")


def weights_sha256(graph: Graph) -> str:
    """A digest of the graph module's parameters and buffers (names, shapes, values)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(graph.module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def contract(model: TrainedModel, graph: Graph, run_dir: Path, requested_epoch: str) -> dict[str, str]:
    """The metadata ``p2ptools export`` writes into a file (all values strings)."""
    config = read_run_config(run_dir)
    unit = max(1, int(model.size_multiple))
    meta = {
        "p2ptools_export": FORMAT_VERSION,
        "plugin": str(config.get("plugin")),
        "plugin_version": str(config.get("plugin_version")),
        "run_options_sha256": hashlib.sha256(json.dumps(config.get("options"), sort_keys=True).encode()).hexdigest(),
        "weights_sha256": weights_sha256(graph),
        "weights": str(model.weights),
        "epoch": str(model.epoch),
        "epoch_requested": requested_epoch,
        "direction": model.direction,
        "input_names": json.dumps(list(graph.input_names)),
        "input_strides": json.dumps([list(s) for s in graph.input_strides]),
        "input": f"{graph.input_names[0]}: {INPUT_RANGE}, (N, {graph.input_strides[0][0]}, H, W); "
                 f"N, H and W dynamic, H and W multiples of size_multiple",
        "size_multiple": str(unit),
        "output": OUTPUT,
        "output_channels": str(model.out_channels),
    }
    meta.update(graph.metadata)
    return meta


def to_uint8(y: np.ndarray) -> list[np.ndarray]:
    """(N, C, H, W) outputs in [-1, 1] -> uint8 images (H, W, 3) or (H, W), as ``translate`` maps them."""
    y = np.asarray(y, dtype=np.float32)
    pixels = np.clip(np.round((y + np.float32(1.0)) / np.float32(2.0) * np.float32(255.0)), 0, 255).astype(np.uint8)
    return [p[0].copy() if p.shape[0] == 1 else np.ascontiguousarray(p.transpose(1, 2, 0)) for p in pixels]
