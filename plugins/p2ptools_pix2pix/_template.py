"""A complete, minimal model plugin to copy: a per-pixel affine color map fitted by least squares.

``B ~= M @ [A, 1]`` per pixel, with M (3x4) solved over all training pixels. It is not registered
(so it is not listed to users) but passes the registry smoke test, and shows every part of the
contract: options dataclass, self-describing run directory, safetensors weights, load, translate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import write_text_atomic
from p2ptools.options import from_dict, to_dict
from p2ptools.pairs import iter_split, read_pair
from p2ptools.plugin import CONFIG_NAME, LoadOptions, ModelPlugin, TrainedModel, TrainRequest, read_run_config


@dataclass(frozen=True)
class ColorMapOptions:
    """Options of :class:`ColorMapPlugin`."""

    direction: str = field(default="AtoB", metadata={"help": "Which half is the input.", "choices": ("AtoB", "BtoA")})
    max_images: int = field(default=1000, metadata={"help": "Training images used for the fit."})


class ColorMapModel(TrainedModel):
    """Applies the fitted affine color map."""

    def __init__(self, matrix: np.ndarray, direction: str) -> None:
        self.matrix = matrix
        self.direction = direction

    def translate(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        outs = []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise InputFileError("<image>", f"expected an RGB image, got shape {image.shape}")
            x = image.reshape(-1, 3).astype(np.float64) / 255.0
            y = np.concatenate([x, np.ones((len(x), 1))], axis=1) @ self.matrix.T
            outs.append(np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8).reshape(image.shape))
        return outs


class ColorMapPlugin(ModelPlugin):
    """Template plugin: per-pixel affine color map, least squares."""

    name = "colormap-template"
    version = "1"
    summary = "Template: per-pixel affine color map fitted by least squares."
    Options = ColorMapOptions

    def train(self, options: ColorMapOptions, request: TrainRequest) -> Path:
        run_dir = Path(request.run_dir)
        config = {"plugin": self.name, "plugin_version": self.version, "options": to_dict(options), "data": str(request.data)}
        if (run_dir / CONFIG_NAME).exists() and not request.overwrite:
            if read_run_config(run_dir) != config:
                raise ConfigError(f"{run_dir}: holds a run of another configuration; use --overwrite")
        xs, ys = [], []
        for path in list(iter_split(request.data, "train"))[: options.max_images]:
            a, b = read_pair(path)
            src, tgt = (a, b) if options.direction == "AtoB" else (b, a)
            xs.append(src.reshape(-1, 3) / 255.0)
            ys.append(tgt.reshape(-1, 3) / 255.0)
        if not xs:
            raise InputFileError(Path(request.data) / "train", "no training pairs")
        x, y = np.concatenate(xs), np.concatenate(ys)
        x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        matrix, *_ = np.linalg.lstsq(x1, y, rcond=None)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_file({"matrix": np.ascontiguousarray(matrix.T)}, str(run_dir / ".tmp-weights.safetensors"))
        (run_dir / ".tmp-weights.safetensors").replace(run_dir / "weights.safetensors")
        write_text_atomic(run_dir / CONFIG_NAME, json.dumps(config, indent=1) + "\n")
        return run_dir

    def load(self, run_dir: Path, options: LoadOptions) -> ColorMapModel:
        if options.epoch != "latest":  # one weights file: no per-epoch weights to choose from
            raise ConfigError(f"--epoch {options.epoch}: the {self.name} plugin keeps only its latest weights")
        config = read_run_config(run_dir)
        opts = from_dict(ColorMapOptions, config["options"], str(Path(run_dir) / CONFIG_NAME))
        weights = Path(run_dir) / "weights.safetensors"
        if not weights.exists():
            raise InputFileError(weights, "missing weights")
        return ColorMapModel(load_file(str(weights))["matrix"], opts.direction)


__all__ = ["ColorMapModel", "ColorMapPlugin"]
