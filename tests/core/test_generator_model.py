"""p2ptools.generator_model without a plugin: the uint8 mapping against the export's numpy one,
batching by size in input order, and load_generator's choice of weights and its one-line errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.export.contract import to_uint8
from p2ptools.generator_model import GeneratorModel, load_generator, to_uint8_images
from p2ptools.plugin import LoadOptions
from p2ptools.training.epoch_weights import write_epoch_weights


@dataclass(frozen=True)
class TinyOptions:
    channels: int = field(default=3, metadata={"help": "Output channels."})


def build(options: TinyOptions) -> nn.Module:
    return nn.Conv2d(3, options.channels, 1)


def flags(options: TinyOptions) -> str:
    return f"--channels {options.channels}"


def load(run: Path, epoch: str = "latest"):
    return load_generator(run, LoadOptions(device="cpu", epoch=epoch), plugin="tiny", options_type=TinyOptions, build=build, flags=flags)


def make_run(run: Path, channels: int = 3) -> Path:
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"plugin": "tiny", "options": {"channels": channels}}))
    save_file({k: torch.full_like(v, 1.0) for k, v in build(TinyOptions(channels)).state_dict().items()},
              str(run / "checkpoints" / "latest_G.safetensors"))
    return run


def test_uint8_images_match_the_export_mapping():
    y = torch.cat([torch.linspace(-1.2, 1.2, 4001), torch.tensor([-1.0, 1.0, 1 / 255 - 1, 3 / 255 - 1])]).reshape(1, 1, 1, -1)
    assert np.array_equal(to_uint8_images(y, 1)[0], to_uint8(y.numpy())[0])
    rgb = torch.rand(2, 3, 4, 5) * 2 - 1
    ours = to_uint8_images(rgb, 3)
    assert [o.shape for o in ours] == [(4, 5, 3)] * 2 and all(o.dtype == np.uint8 for o in ours)
    assert all(np.array_equal(a, b) for a, b in zip(ours, to_uint8(rgb.numpy()), strict=True))


class Recorder(GeneratorModel):
    """Outputs each input's first pixel value everywhere; records the batches it was given."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch, self.out_channels, self.batches = max_batch, 1, []

    def generate(self, inputs: Sequence[np.ndarray]) -> torch.Tensor:
        assert torch.is_inference_mode_enabled()
        self.batches.append([int(x[0, 0]) for x in inputs])
        return torch.from_numpy(np.stack(inputs)).float()[:, None] / 127.5 - 1.0

    def translate(self, images):
        return self.translate_prepared(images)


def test_runs_of_one_size_in_input_order():
    inputs = [np.full((2, 2), v, np.uint8) for v in (0, 10, 20)] + [np.full((4, 2), 30, np.uint8), np.full((2, 2), 40, np.uint8)]
    model = Recorder(max_batch=2)
    out = model.translate(inputs)
    assert model.batches == [[0, 10], [20], [30], [40]]
    assert [int(o[0, 0]) for o in out] == [0, 10, 20, 30, 40] and [o.shape for o in out] == [x.shape for x in inputs]


def test_load_generator_reads_the_chosen_epoch(tmp_path):
    run = make_run(tmp_path / "run")
    latest = load(run)
    assert (latest.options, latest.epoch, latest.weights.name, latest.device) == (TinyOptions(), None, "latest_G.safetensors",
                                                                                   torch.device("cpu"))
    assert torch.equal(latest.net.weight, torch.ones(3, 3, 1, 1))
    write_epoch_weights(run, 2, {k: torch.full_like(v, 2.0) for k, v in build(TinyOptions()).state_dict().items()})
    second = load(run, "2")
    assert (second.epoch, second.weights.name) == (2, "epoch_2_G.safetensors")
    assert torch.equal(second.net.weight, torch.full((3, 3, 1, 1), 2.0))
    with pytest.raises(InputFileError, match="no weights of epoch 3; kept epochs: 2"):
        load(run, "3")


def test_load_generator_errors_name_the_file(tmp_path):
    run = make_run(tmp_path / "run", channels=1)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "options": {"channels": 3}}))
    with pytest.raises(CheckpointError, match=r"latest_G\.safetensors: does not fit the generator of config\.json \(--channels 3\): "
                                              r"2 shape mismatch\(es\): weight file \(1, 3, 1, 1\) vs network \(3, 3, 1, 1\)"):
        load(run)
    (run / "checkpoints" / "latest_G.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"latest_G\.safetensors: missing generator weights"):
        load(run)
    (run / "config.json").write_text(json.dumps({"plugin": "other", "options": {}}))
    with pytest.raises(ConfigError, match="a run of plugin 'other', not 'tiny'"):
        load(run)
    (run / "config.json").write_text(json.dumps({"plugin": "tiny"}))
    with pytest.raises(InputFileError, match="no 'options' object"):
        load(run)
