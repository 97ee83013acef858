"""The model-plugin contract (entry-point group ``p2ptools.models``).

A plugin is a class with:

- ``name``, ``version``, ``summary``: strings (``p2ptools models`` reads them without importing);
- ``Options``: a frozen dataclass of every training/architecture option, with defaults and
  ``metadata={"help": ..., "choices": (...), "flag": "--netG"}``, from which the CLI makes options;
- :meth:`ModelPlugin.train`, :meth:`ModelPlugin.load` returning a :class:`TrainedModel`, and
  optionally :meth:`ModelPlugin.import_checkpoint` and :meth:`ModelPlugin.smoke_options` (tiny
  settings for the registry's smoke test, which trains and translates every registered model).
- A :class:`TrainedModel` that takes per-image maps besides the image (label or instance maps
  written by a builder as extras) names them in ``input_extras``; ``translate`` then passes them.
- :meth:`TrainedModel.graph` returns a :class:`Graph`: the network as a torch module plus the
  preprocessing that feeds it, which ``p2ptools export`` writes to ONNX or TorchScript.

Run directories describe themselves: ``config.json`` holds ``{"plugin": name, "plugin_version":
..., "options": {...}}`` so that :func:`p2ptools.registry.load_run` needs nothing
else. A small complete example is ``p2ptools_pix2pix/_template.py``. This module imports no other
part of the plugin machinery: the registry depends on it, never the reverse.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from p2ptools.errors import InputFileError, P2PError
from p2ptools.imageio import read_json

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class TrainRequest:
    """Where to train from and to, and how to treat an existing run directory."""

    data: Path | None
    run_dir: Path
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class LoadOptions:
    """How to load a run for translation.

    ``eval_mode`` False keeps the pix2pix reference's test-time behaviour (dropout active, batch
    statistics), made reproducible by ``seed``. ``epoch``: which weights of the run, ``"latest"``,
    ``"best"`` (lowest validation L1 among the kept epochs) or an epoch number as a string; a plugin
    that keeps no per-epoch weights accepts ``"latest"`` only. ``device``: ``"auto"`` (the GPU when
    CUDA is available, else the CPU; :func:`p2ptools.devices.resolve_device`), ``cpu``, ``cuda:N``.
    """

    device: str = "auto"
    eval_mode: bool = False
    seed: int = 0
    epoch: str = "latest"


@dataclass(frozen=True)
class Graph:
    """What export needs from a loaded model (:meth:`TrainedModel.graph`).

    ``module`` (a ``torch.nn.Module``, in eval mode) computes exactly what the model's
    ``translate`` computes between its preprocessing and its postprocessing, for the test-time
    semantics the model was loaded with: ``module(*inputs)`` takes float32 tensors named
    ``input_names`` (the first is the network input, (N, C, H, W); others, e.g. dropout masks,
    scale with the image as ``input_strides`` says) and returns (N, out_channels, H, W) in [-1, 1].
    ``feeds(images, extras)`` prepares those inputs from uint8 images (and per-image extras) as
    ``translate`` does, as numpy arrays by name. ``metadata``: the contract a user of the file alone
    needs (preprocessing, value ranges, norm semantics), as strings.
    """

    module: Any
    input_names: tuple[str, ...]
    #: per input: (channels, stride): its shape is (N, channels, H // stride, W // stride)
    input_strides: tuple[tuple[int, int], ...]
    feeds: Callable[[Sequence[np.ndarray], Sequence[Mapping[str, np.ndarray]]], dict[str, np.ndarray]]
    metadata: dict[str, str]


def same_size_runs(images: Sequence[np.ndarray], max_batch: int) -> Iterator[slice]:
    """Consecutive runs of ``images`` of one shape, at most ``max_batch`` long: the batches a model
    translates together (the order of the inputs is kept).

    Example:
        >>> a, b = np.zeros((2, 2)), np.zeros((4, 4))
        >>> [(s.start, s.stop) for s in same_size_runs([a, a, a, b], 2)]
        [(0, 2), (2, 3), (3, 4)]
    """
    start = 0
    while start < len(images):
        stop = start + 1
        while stop < len(images) and stop - start < max_batch and images[stop].shape == images[start].shape:
            stop += 1
        yield slice(start, stop)
        start = stop


class TrainedModel(ABC):
    """A loaded run that translates images."""

    #: "AtoB" or "BtoA": which half of an aligned pair is the input.
    direction: str = "AtoB"
    #: channels the network takes and makes (1 or 3).
    in_channels: int = 3
    out_channels: int = 3
    #: the height and width the network takes are multiples of this (``translate --pad`` pads to it).
    size_multiple: int = 1
    #: kinds of per-image maps the model takes besides the image (dataset extras such as
    #: ``"label_ids"``); a model that names any must accept ``translate(images, extras)``.
    input_extras: tuple[str, ...] = ()
    #: the training epoch of the loaded weights (None: unknown) and their file name, for translate.json.
    epoch: int | None = None
    weights: str | None = None
    #: where the network runs (a ``torch.device`` or its name, e.g. ``cuda:0``; None: no torch
    #: device), recorded in translate.json.
    device: Any = None

    @abstractmethod
    def translate(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Translate a batch of uint8 images of one size, (H, W, 3) RGB or (H, W) gray.

        Models with :attr:`input_extras` take a second argument ``extras``: one dict per image
        mapping each kind to its (H, W) map (uint8 or uint16), read from
        ``<dataset>/<kind>/<split>/<name>.png`` by ``p2ptools translate``.

        Returns uint8 images of the same height and width, (H, W, 3) or (H, W) by ``out_channels``.
        Raises :class:`InputFileError`-style errors for sizes or channel counts the model cannot take.
        """


    def graph(self) -> Graph:
        """The network and its preprocessing for export (:class:`Graph`). Optional: models that
        cannot be exported raise :class:`P2PError` saying so."""
        raise P2PError(f"{type(self).__name__} cannot be exported (its plugin provides no graph())")


class ModelPlugin(ABC):
    """Base class of model plugins."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    Options: ClassVar[type]

    @abstractmethod
    def train(self, options: Any, request: TrainRequest) -> Path:
        """Train into ``request.run_dir`` (resume or refuse a different config as asked); return it."""

    @abstractmethod
    def load(self, run_dir: Path, options: LoadOptions) -> TrainedModel:
        """Load a run directory written by :meth:`train` or :meth:`import_checkpoint`."""

    def import_checkpoint(self, checkpoint: Path, options: Any, run_dir: Path, overwrite: bool = False) -> Path:
        """Turn a foreign checkpoint into a run directory. Optional."""
        raise P2PError(f"model {self.name!r} cannot import checkpoints")

    def smoke_options(self) -> Any:
        """Options for the registry's smoke test: train a few steps on the CPU within seconds, on
        aligned RGB pairs with 32x32 halves and no extras (tiny widths; no worker processes).
        Plugins whose defaults are too large for that override this; the default is ``Options()``."""
        return self.Options()


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/config.json`` as a dict, with a clear error when it is missing or broken."""
    path = Path(run_dir) / CONFIG_NAME
    config = read_json(path, missing="no config.json: not a p2ptools run directory")
    if not isinstance(config, dict) or "plugin" not in config:
        raise InputFileError(path, "no 'plugin' key: not a p2ptools run configuration")
    return config

