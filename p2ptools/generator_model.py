"""What every plugin's loaded generator shares: loading a run's weights for ``--epoch``, and
translating in batches of one size to uint8 images.

A plugin's model keeps only what is its own (checking and packing its inputs, its test-time
semantics) and writes :meth:`GeneratorModel.generate`; :func:`load_generator` reads the run.

- :func:`load_generator`: ``config.json`` (plugin name, options dataclass), the generator built by
  the plugin's builder, the weights file of :attr:`LoadOptions.epoch` (``latest``, ``best`` or N, see
  :func:`p2ptools.training.epoch_weights.resolve_weights`) loaded with key and shape checks;
- :class:`GeneratorModel`: ``translate``'s batching (:func:`p2ptools.plugin.same_size_runs`) and
  the output mapping of :func:`to_uint8_images`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import nn

from p2ptools.devices import resolve_device
from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.options import from_dict
from p2ptools.plugin import CONFIG_NAME, LoadOptions, TrainedModel, read_run_config, same_size_runs
from p2ptools.training.epoch_weights import resolve_weights
from p2ptools.training.foreign import state_dict_problems

O = TypeVar("O")


def to_uint8_images(y: torch.Tensor, out_channels: int) -> list[np.ndarray]:
    """Generator outputs (N, C, H, W) in [-1, 1] -> uint8 images ``(y + 1) / 2 * 255``, rounded to the
    nearest integer and clipped: (H, W, C), or (H, W) when ``out_channels`` is 1.

    Example:
        >>> to_uint8_images(torch.tensor([[[[-1.0, 0.0]]]]), 1)[0].tolist()
        [[0, 128]]
    """
    pixels = ((y.float() + 1.0) / 2.0 * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [p[:, :, 0].copy() if out_channels == 1 else p.copy() for p in pixels]


class GeneratorModel(TrainedModel):
    """A loaded generator that translates prepared inputs in runs of one size.

    Subclasses set ``device``, ``max_batch`` and ``out_channels`` and write :meth:`generate`; their
    ``translate`` checks and prepares the inputs and returns :meth:`translate_prepared` of them.
    """

    #: images per forward pass at most
    max_batch: int = 1

    @abstractmethod
    def generate(self, inputs: Sequence[np.ndarray]) -> torch.Tensor:
        """The generator's output (N, C, H, W) in [-1, 1] for ``inputs``, N prepared inputs of one
        shape (called under ``torch.inference_mode()``)."""

    def translate_prepared(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`generate` over runs of equal-shape ``inputs`` (at most ``max_batch`` at a time, the
        order kept), as uint8 images (:func:`to_uint8_images`)."""
        results: list[np.ndarray] = []
        for run in same_size_runs(inputs, self.max_batch):
            with torch.inference_mode():
                results += to_uint8_images(self.generate(inputs[run]), self.out_channels)
        return results


# --- loading a run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedGenerator(Generic[O]):
    """A run's generator with its weights loaded (:func:`load_generator`)."""

    #: the run's options (the plugin's dataclass, from ``config.json``)
    options: O
    net: nn.Module
    #: where the model is to run (``LoadOptions.device`` resolved); ``net`` is still on the CPU
    device: torch.device
    #: the training epoch of the weights (None: unknown) and their file
    epoch: int | None
    weights: Path


def load_generator_weights(net: nn.Module, path: Path, flags: str) -> None:
    """Load safetensors weights into ``net``; a missing, corrupt or mismatched file is a
    :class:`CheckpointError` naming the file and listing what differs (``flags``: the architecture
    options of ``config.json`` as command-line flags, for the message)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(path, "missing generator weights (was the run stopped before its first checkpoint?)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"cannot read safetensors weights ({exc})") from None
    problems = state_dict_problems(net.state_dict(), state)
    if problems:
        raise CheckpointError(path, f"does not fit the generator of config.json ({flags}): {problems}")
    net.load_state_dict(state, strict=True)


def load_generator(run_dir: str | Path, load: LoadOptions, *, plugin: str, options_type: type[O],
                   build: Callable[[O], nn.Module], flags: Callable[[O], str]) -> LoadedGenerator[O]:
    """Read a run of ``plugin`` for translation: its options, its generator (``build(options)``) and
    the weights of ``load.epoch`` (``checkpoints/latest_G`` or ``checkpoints/epoch_<N>_G.safetensors``).

    Raises:
        ConfigError: a run of another plugin, an invalid ``--epoch``.
        InputFileError: no or a broken ``config.json``; no weights of the requested epoch (the kept
            epochs listed).
        CheckpointError: a missing, unreadable or mismatched weights file (``flags(options)`` named).
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if config.get("plugin") != plugin:
        raise ConfigError(f"{run_dir / CONFIG_NAME}: a run of plugin {config.get('plugin')!r}, not {plugin!r}")
    if not isinstance(config.get("options"), dict):
        raise InputFileError(run_dir / CONFIG_NAME, "no 'options' object")
    options = from_dict(options_type, config["options"], str(run_dir / CONFIG_NAME))
    device = resolve_device(load.device)
    net = build(options)
    weights, epoch = resolve_weights(run_dir, load.epoch, "G")
    load_generator_weights(net, weights, flags(options))
    return LoadedGenerator(options, net, device, epoch, weights)
