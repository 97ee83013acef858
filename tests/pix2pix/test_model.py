"""Loading a pix2pix run and translating: pixel mapping, seeded test-time noise, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.imageio import read_image
from p2ptools.options import to_dict
from p2ptools.plugin import LoadOptions
from p2ptools_pix2pix.model import Pix2PixModel, load_pix2pix_run, per_image_noise, resolve_device
from p2ptools_pix2pix.networks import define_G
from p2ptools_pix2pix.options import Pix2PixOptions

SMALL = Pix2PixOptions(netG="unet_32", ngf=4)


def make_run(run_dir: Path, options: Pix2PixOptions = SMALL, seed: int = 0) -> nn.Module:
    """A run directory written by hand (config.json + safetensors), with non-trivial weights."""
    torch.manual_seed(seed)
    net = define_G(options.netG, options.input_nc, options.output_nc, options.ngf, options.norm, options.dropout)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.2)
            elif t.dim() == 4:
                t.normal_(0, 1 / (t.shape[1] * 16) ** 0.5)
    (run_dir / "checkpoints").mkdir(parents=True)
    save_file(net.state_dict(), str(run_dir / "checkpoints" / "latest_G.safetensors"))
    config = {"plugin": "pix2pix", "plugin_version": "0.1.0", "options": to_dict(options), "data": None,
              "data_manifest_sha256": None, "generator_params": 0, "discriminator_params": None}
    (run_dir / "config.json").write_text(json.dumps(config))
    return net


def images(n: int, size: int = 32, channels: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (size, size, channels) if channels == 3 else (size, size)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """The reference's transform: ToTensor then Normalize(0.5, 0.5)."""
    x = torch.from_numpy(image.reshape(image.shape[0], image.shape[1], -1)).permute(2, 0, 1).float() / 255.0
    return ((x - 0.5) / 0.5)[None]


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y[0].permute(1, 2, 0) + 1) / 2 * 255).round().clamp(0, 255).to(torch.uint8).numpy()


# --- pixel mapping and shapes -------------------------------------------------------------------


def test_pixel_mapping_round_trips_through_an_identity_generator():
    model = Pix2PixModel(nn.Identity(), SMALL, torch.device("cpu"), eval_mode=True)
    model.depth = None
    ims = images(2, 20)
    out = model.translate(ims)
    assert all(o.dtype == np.uint8 and np.array_equal(o, i) for o, i in zip(out, ims))


def test_extreme_outputs_map_to_0_and_255():
    class Const(nn.Module):
        def forward(self, x):
            return torch.cat([-torch.ones_like(x[:, :1]), torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])], 1)

    model = Pix2PixModel(Const(), SMALL, torch.device("cpu"), eval_mode=True)
    out = model.translate(images(1))[0]
    assert (out[..., 0] == 0).all() and (out[..., 1] == 128).all() and (out[..., 2] == 255).all()


@pytest.mark.parametrize(("i", "o"), [(3, 3), (1, 3), (3, 1), (1, 1)])
def test_translate_shapes_and_channels(tmp_path, i, o):
    make_run(tmp_path / "run", replace(SMALL, input_nc=i, output_nc=o))
    model = load_pix2pix_run(tmp_path / "run", LoadOptions())
    assert (model.in_channels, model.out_channels, model.direction) == (i, o, "AtoB")
    out = model.translate(images(2, 64, i))
    assert len(out) == 2
    assert all(x.shape == ((64, 64, 3) if o == 3 else (64, 64)) and x.dtype == np.uint8 for x in out)
    assert out[0].std() > 1, "a degenerate (constant) output would hide mapping bugs"


def test_eval_mode_equals_the_network_in_eval(tmp_path):
    net = make_run(tmp_path / "run").eval()
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True))
    assert not model.netG.training
    ims = images(3)
    with torch.no_grad():
        expected = [to_uint8(net(to_tensor(im))) for im in ims]
    assert all(np.array_equal(a, b) for a, b in zip(model.translate(ims), expected))


# --- the reference's test-time noise, seeded ------------------------------------------------------


def test_train_mode_normalises_each_image_by_its_own_statistics(tmp_path):
    options = replace(SMALL, dropout=False)
    net = make_run(tmp_path / "run", options).train()
    model = load_pix2pix_run(tmp_path / "run", LoadOptions())
    assert model.netG.training
    before = {k: v.clone() for k, v in model.netG.state_dict().items()}
    ims = images(3)
    with torch.no_grad():  # the reference at test time: batch size 1, training mode
        expected = [net(to_tensor(im)) for im in ims]
    got = model.translate(ims)
    assert all(np.abs(g.astype(int) - to_uint8(e).astype(int)).max() <= 1 for g, e in zip(got, expected))
    with torch.no_grad(), per_image_noise(model.netG, [0, 0, 0]):
        batched = model.netG(torch.cat([to_tensor(im) for im in ims]))
    assert (batched - torch.cat(expected)).abs().max() < 1e-5
    # running statistics are not updated by translation
    assert all(torch.equal(before[k], v) for k, v in model.netG.state_dict().items())
    # and the patched forwards are gone afterwards
    assert all("forward" not in vars(m) for m in model.netG.modules())


def test_seeded_noise_is_reproducible_and_independent_of_batching(tmp_path):
    make_run(tmp_path / "run", replace(SMALL, netG="unet_64"))
    ims = images(4, 64)
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(seed=3))
    together = model.translate(ims)
    again = load_pix2pix_run(tmp_path / "run", LoadOptions(seed=3)).translate(ims)
    alone = [model.translate([im])[0] for im in ims]
    reversed_ = model.translate(ims[::-1])[::-1]
    model.max_batch = 3
    chunked = model.translate(ims)
    for other in (again, alone, reversed_, chunked):
        assert all(np.array_equal(a, b) for a, b in zip(together, other))
    # dropout is active: another seed, or eval mode, changes the outputs
    other_seed = load_pix2pix_run(tmp_path / "run", LoadOptions(seed=4)).translate(ims)
    assert not all(np.array_equal(a, b) for a, b in zip(together, other_seed))
    evaluated = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True, seed=3)).translate(ims)
    assert not all(np.array_equal(a, b) for a, b in zip(together, evaluated))


def test_per_image_dropout_drops_half_and_rescales():
    drop = nn.Sequential(nn.Dropout(0.5)).train()
    x = torch.ones(2, 8, 32, 32)
    with per_image_noise(drop, [1, 2]):
        y = drop(x)
    assert set(torch.unique(y).tolist()) == {0.0, 2.0}
    assert abs(float((y == 0).float().mean()) - 0.5) < 0.03
    assert not torch.equal(y[0], y[1])
    with per_image_noise(drop, [1, 1]):
        z = drop(x)
    assert torch.equal(z[0], z[1]) and torch.equal(z[0], y[0])


def test_mixed_sizes_are_run_separately(tmp_path):
    make_run(tmp_path / "run")
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True))
    ims = [images(1, 32)[0], images(1, 64)[0], images(1, 32, seed=1)[0]]
    out = model.translate(ims)
    assert [o.shape for o in out] == [(32, 32, 3), (64, 64, 3), (32, 32, 3)]


# --- errors -------------------------------------------------------------------------------------


def test_wrong_size_is_a_clear_error(tmp_path):
    make_run(tmp_path / "run", replace(SMALL, netG="unet_64"))
    model = load_pix2pix_run(tmp_path / "run", LoadOptions())
    with pytest.raises(InputFileError, match=r"size 48x96 \(HxW\) does not fit unet_64: height and width must be multiples of 64"):
        model.translate([np.zeros((48, 96, 3), np.uint8)])


def test_wrong_channels_and_dtype_are_clear_errors(tmp_path):
    make_run(tmp_path / "run")
    model = load_pix2pix_run(tmp_path / "run", LoadOptions())
    with pytest.raises(InputFileError, match=r"1 channel\(s\) but the model takes 3"):
        model.translate([np.zeros((32, 32), np.uint8)])
    with pytest.raises(InputFileError, match="uint8"):
        model.translate([np.zeros((32, 32, 3), np.float32)])
    with pytest.raises(InputFileError, match="shape"):
        model.translate([np.zeros((32, 32, 4), np.uint8)])


def test_missing_weights(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "latest_G.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"latest_G\.safetensors: missing generator weights"):
        load_pix2pix_run(tmp_path / "run", LoadOptions())


def test_corrupt_weights(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "latest_G.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"latest_G\.safetensors: cannot read safetensors"):
        load_pix2pix_run(tmp_path / "run", LoadOptions())


def test_weights_of_another_architecture_are_listed(tmp_path):
    make_run(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["options"]["ngf"] = 8
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"latest_G\.safetensors: does not fit .*--ngf 8.*shape mismatch\(es\): model\.model\.0\.weight file \(4, 3, 4, 4\) vs network \(8, 3, 4, 4\)"):
        load_pix2pix_run(tmp_path / "run", LoadOptions())
    config["options"].update(ngf=4, norm="instance")
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing key\(s\): model\.model\.0\.bias.*unexpected key\(s\): .*running_mean"):
        load_pix2pix_run(tmp_path / "run", LoadOptions())


def test_config_of_another_plugin(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text(json.dumps({"plugin": "other", "options": {}}))
    with pytest.raises(ConfigError, match="'other', not 'pix2pix'"):
        load_pix2pix_run(tmp_path / "run", LoadOptions())


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda: no such device; this machine has no CUDA device"):
            resolve_device("cuda")


def test_a_trained_run_translates_end_to_end(tmp_path, tiny_data, cli):
    """train (two steps) -> translate: the loader reads what the trainer writes."""
    run = tmp_path / "run"
    train = cli("train", "--model", "pix2pix", "--data", tiny_data, "--out", run, "--netG", "unet_32", "--netD", "patch16",
                "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32", "--epochs", "1", "--epochs-decay", "0",
                "--max-steps", "2", "--workers", "0", "--device", "cpu", "--no-progress")
    assert train.code == 0, train.stderr
    result = cli("translate", run, "--input", tiny_data, "--split", "val", "--output", tmp_path / "out", "--no-progress")
    assert result.code == 0, result.stderr
    model = load_pix2pix_run(run, LoadOptions())
    stored = load_file(str(run / "checkpoints" / "latest_G.safetensors"))
    assert all(torch.equal(v, stored[k]) for k, v in model.netG.state_dict().items())
    names = sorted(p.stem for p in (tiny_data / "val").iterdir())
    for name in names:
        out = read_image(tmp_path / "out" / f"{name}.png")
        src = read_image(tmp_path / "out" / "input" / f"{name}.png")
        assert out.shape == (32, 32, 3)
        assert np.array_equal(out, model.translate([src])[0])
