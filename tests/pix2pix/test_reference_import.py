"""Import of reference ``latest_net_G.pth`` files: parity with the reference network, CLI, errors.

The reference side is ``reference_pix2pix.py``: an independent re-implementation of the reference
U-Net (it does not import p2ptools_pix2pix), saved with ``torch.save`` in the reference layout.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from p2p_testutils import pix2pix_reference
from p2ptools.errors import CheckpointError, ConfigError
from p2ptools.imageio import read_image, write_image
from p2ptools.pairs import join_pair
from p2ptools.plugin import LoadOptions
from p2ptools_pix2pix.model import load_pix2pix_run, per_image_noise
from p2ptools_pix2pix.networks import define_G
from p2ptools_pix2pix.options import Pix2PixOptions
from p2ptools_pix2pix.reference_import import guess_architecture, import_reference_checkpoint

ARCH = ["--netG", "unet_64", "--ngf", "8"]




def reference_net(norm: str = "batch", dropout: bool = True, seed: int = 0, num_downs: int = 6, ngf: int = 8, nc=(3, 3)):
    ref = pix2pix_reference()
    return ref.randomize(ref.RefUnet(nc[0], nc[1], num_downs, ngf, norm, use_dropout=dropout), seed)


def save_reference(net: torch.nn.Module, path: Path, variant: str = "plain") -> Path:
    """``torch.save`` of the state dict as the reference writes it (``variant``: plain, old (no
    num_batches_tracked), module (DataParallel prefix), legacy (pre-zip serialization))."""
    state = net.state_dict()
    if variant == "old":
        state = OrderedDict((k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    elif variant == "module":
        state = OrderedDict(("module." + k, v) for k, v in state.items())
    torch.save(state, path, _use_new_zipfile_serialization=variant != "legacy")  # legacy: PyTorch < 1.6 files
    return path


def inputs(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- parity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["plain", "old", "module", "legacy"])
def test_cli_import_computes_the_reference_function(tmp_path, cli, variant):
    ref = reference_net()
    ckpt = save_reference(ref, tmp_path / "latest_net_G.pth", variant)
    result = cli("import-checkpoint", ckpt, "--model", "pix2pix", *ARCH, "--norm", "batch", "--out", tmp_path / "run")
    assert result.code == 0, result.stderr
    assert "imported" in result.stdout

    # eval mode: running statistics, no dropout
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True))
    x = inputs()
    with torch.no_grad():
        assert (model.netG(x) - ref.eval()(x)).abs().max() <= 1e-5
    # the stored weights are the file's, buffers included
    stored = load_file(str(tmp_path / "run" / "checkpoints" / "latest_G.safetensors"))
    for key, value in ref.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert int(stored[key]) == (0 if variant == "old" else int(value))
        else:
            assert torch.equal(stored[key], value)


def test_import_parity_in_training_mode_without_dropout(tmp_path):
    """The reference's test-time mode (train(), batch statistics), dropout off on both sides."""
    ref = reference_net(dropout=False, seed=1).train()
    ckpt = save_reference(ref, tmp_path / "g.pth")
    options = Pix2PixOptions(netG="unet_64", ngf=8, dropout=False)
    import_reference_checkpoint(ckpt, options, tmp_path / "run")
    model = load_pix2pix_run(tmp_path / "run", LoadOptions())
    assert model.netG.training
    x = inputs(3, seed=1)
    with torch.no_grad(), per_image_noise(model.netG, [0, 0, 0]):
        ours = model.netG(x)
    with torch.no_grad():
        theirs = torch.cat([ref(x[i : i + 1]) for i in range(3)])  # the reference tests at batch size 1
    assert (ours - theirs).abs().max() <= 1e-5
    # translate() itself: uint8 of the same function (rounding may differ by one level)
    images = [((x[i].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy() for i in range(3)]
    with torch.no_grad():
        expected = [ref(torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255).sub(0.5).div(0.5)) for im in images]
    for got, exp in zip(model.translate(images), expected):
        exp8 = ((exp[0].permute(1, 2, 0) + 1) / 2 * 255).round().clamp(0, 255).numpy()
        assert np.abs(got.astype(float) - exp8).max() <= 1


@pytest.mark.parametrize(("norm", "n_keys"), [("instance", 24), ("none", 13)])
def test_import_other_norms(tmp_path, norm, n_keys):
    ref = reference_net(norm=norm, seed=2)
    ckpt = save_reference(ref, tmp_path / "g.pth")
    # 12 convolutions: with instance norm all have biases, with none only the last (the reference's)
    assert len(ref.state_dict()) == n_keys
    import_reference_checkpoint(ckpt, Pix2PixOptions(netG="unet_64", ngf=8, norm=norm), tmp_path / "run")
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True))
    x = inputs(seed=2)
    with torch.no_grad():
        assert (model.netG(x) - ref.eval()(x)).abs().max() <= 1e-5
    if norm == "none":  # the reference's bias-free convolutions got zero biases
        stored = load_file(str(tmp_path / "run" / "checkpoints" / "latest_G.safetensors"))
        assert not stored["model.model.0.bias"].any()


@pytest.mark.parametrize(("n_blocks", "norm", "dropout"), [(6, "instance", False), (9, "batch", True)])
def test_import_resnet_parity(tmp_path, n_blocks, norm, dropout):
    ref = pix2pix_reference().randomize(pix2pix_reference().RefResnet(3, 3, 4, norm, dropout, n_blocks), seed=4)
    ckpt = save_reference(ref, tmp_path / "g.pth")
    options = Pix2PixOptions(netG=f"resnet_{n_blocks}blocks", ngf=4, norm=norm, dropout=dropout)
    state = torch.load(ckpt, weights_only=True)
    assert guess_architecture(state) == (
        f"--netG resnet_{n_blocks}blocks --ngf 4 --norm {norm} {'--dropout' if dropout else '--no-dropout'} --input-nc 3 --output-nc 3"
    )
    import_reference_checkpoint(ckpt, options, tmp_path / "run")
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True))
    x = inputs(2, 20, seed=4)
    with torch.no_grad():
        assert (model.netG(x) - ref.eval()(x)).abs().max() <= 1e-5
    # the wrong dropout setting shifts the block indices: a clear mismatch with the right guess
    with pytest.raises(CheckpointError, match=f"looks like .*{'--dropout' if dropout else '--no-dropout'}"):
        import_reference_checkpoint(ckpt, Pix2PixOptions(netG=f"resnet_{n_blocks}blocks", ngf=4, norm=norm, dropout=not dropout), tmp_path / "run2")


def test_instance_norm_running_stats_of_old_pytorch_are_dropped(tmp_path):
    """PyTorch < 0.4 saved running statistics for InstanceNorm layers; they are never used."""
    ref = reference_net(norm="instance", seed=6)
    state = ref.state_dict()
    state["model.model.1.model.3.model.2.running_mean"] = torch.zeros(32)
    state["model.model.1.model.3.model.2.running_var"] = torch.ones(32)
    torch.save(state, tmp_path / "g.pth")
    import_reference_checkpoint(tmp_path / "g.pth", Pix2PixOptions(netG="unet_64", ngf=8, norm="instance"), tmp_path / "run")
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True))
    x = inputs(seed=6)
    with torch.no_grad():
        assert (model.netG(x) - ref.eval()(x)).abs().max() <= 1e-5
    # but a running statistic where no instance norm sits is still an error
    state["model.model.0.running_mean"] = torch.zeros(8)
    torch.save(state, tmp_path / "g2.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): model\.model\.0\.running_mean"):
        import_reference_checkpoint(tmp_path / "g2.pth", Pix2PixOptions(netG="unet_64", ngf=8, norm="instance"), tmp_path / "run2")


def test_import_gray_input_and_btoa(tmp_path):
    ref = reference_net(nc=(1, 3), num_downs=5, seed=3)
    ckpt = save_reference(ref, tmp_path / "g.pth")
    options = Pix2PixOptions(netG="unet_32", ngf=8, input_nc=1, direction="BtoA")
    import_reference_checkpoint(ckpt, options, tmp_path / "run")
    model = load_pix2pix_run(tmp_path / "run", LoadOptions(eval_mode=True))
    assert (model.direction, model.in_channels) == ("BtoA", 1)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert (model.netG(x) - ref.eval()(x)).abs().max() <= 1e-5


def test_run_directory_contents(tmp_path):
    ckpt = save_reference(reference_net(), tmp_path / "latest_net_G.pth")
    options = Pix2PixOptions(netG="unet_64", ngf=8)
    run = import_reference_checkpoint(ckpt, options, tmp_path / "runs" / "facades")
    config = json.loads((run / "config.json").read_text())
    assert config["plugin"] == "pix2pix" and config["plugin_version"]
    assert config["options"]["netG"] == "unet_64" and config["options"]["ngf"] == 8
    assert set(config["options"]) == set(Pix2PixOptions.__dataclass_fields__)
    assert config["data"] is None and config["discriminator_params"] is None
    assert config["generator_params"] == sum(p.numel() for p in reference_net().parameters())
    assert config["imported_from"] == str(ckpt)
    assert sorted(p.name for p in run.iterdir()) == [".p2ptools.json", "checkpoints", "config.json"]  # with its ownership record
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_unet_256_layout_is_accepted(tmp_path):
    """Key layout of the full-size reference generator (checked without its 218 MB of weights)."""
    with torch.device("meta"):
        ref = pix2pix_reference().RefUnet(3, 3, 8, 64, "batch", use_dropout=True)
    state = {k: torch.empty(v.shape, dtype=v.dtype) for k, v in ref.state_dict().items()}
    assert len(state) == 82
    assert guess_architecture(state) == "--netG unet_256 --ngf 64 --norm batch --input-nc 3 --output-nc 3"
    with torch.device("meta"):
        ours = define_G("unet_256", 3, 3)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in state.items()}


# --- CLI: translate with an imported run --------------------------------------------------------


def _imported_run(tmp_path: Path, cli, *extra: str) -> Path:
    ckpt = save_reference(reference_net(), tmp_path / "latest_net_G.pth")
    result = cli("import-checkpoint", ckpt, "--model", "pix2pix", *ARCH, *extra, "--out", tmp_path / "run")
    assert result.code == 0, result.stderr
    return tmp_path / "run"


def test_translate_aligned_dataset_end_to_end(tmp_path, cli):
    run = _imported_run(tmp_path, cli, "--direction", "BtoA")
    rng = np.random.default_rng(0)
    pairs = {}
    for name in ("b_2", "a_1"):
        a, b = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
        pairs[name] = (a, b)
        write_image(tmp_path / "data" / "test" / f"{name}.png", join_pair(a, b))
    result = cli("translate", run, "--input", tmp_path / "data", "--output", tmp_path / "out", "--no-progress")
    assert result.code == 0, result.stderr
    model = load_pix2pix_run(run, LoadOptions())
    for name, (a, b) in pairs.items():
        out = read_image(tmp_path / "out" / f"{name}.png")
        assert out.shape == (64, 64, 3)
        assert np.array_equal(read_image(tmp_path / "out" / "input" / f"{name}.png"), b)  # BtoA: input is B
        assert np.array_equal(read_image(tmp_path / "out" / "target" / f"{name}.png"), a)
        assert np.array_equal(out, model.translate([b])[0])  # seeded: the same as in-process
    info = json.loads((tmp_path / "out" / "translate.json").read_text())
    assert info["count"] == 2 and info["direction"] == "BtoA" and info["aligned"] is True


def test_translate_plain_images_with_batches_and_eval_mode(tmp_path, cli):
    run = _imported_run(tmp_path, cli)
    rng = np.random.default_rng(1)
    for i in range(3):
        write_image(tmp_path / "in" / f"img{i}.png", rng.integers(0, 256, (64, 128, 3), dtype=np.uint8))
    args = ("translate", run, "--input", tmp_path / "in", "--plain", "--no-progress")  # 2:1 images read as pairs unless --plain (issue 26 item 8)
    assert cli(*args, "--output", tmp_path / "o1").code == 0
    assert cli(*args, "--output", tmp_path / "o2", "--batch-size", "2").code == 0
    assert cli(*args, "--output", tmp_path / "o3", "--eval-mode").code == 0
    for i in range(3):
        o1, o2, o3 = (read_image(tmp_path / d / f"img{i}.png") for d in ("o1", "o2", "o3"))
        assert o1.shape == (64, 128, 3)
        assert np.array_equal(o1, o2), "batch size changed the seeded output"
        assert not np.array_equal(o1, o3)
    assert not (tmp_path / "o1" / "input").exists()


def test_translate_wrong_size_and_channels_fail_cleanly(tmp_path, cli):
    """Issue 15.6: an odd-sized image fails in one line leaving no output folder; --pad / --resize fit
    it; gray and 16-bit inputs are converted like combine reads them; --skip-bad lists what it skipped."""
    run = _imported_run(tmp_path, cli)
    write_image(tmp_path / "bad" / "x.png", np.zeros((48, 64, 3), np.uint8))
    result = cli("translate", run, "--input", tmp_path / "bad", "--output", tmp_path / "out", "--no-progress")
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "size 48x64 (HxW) does not fit unet_64" in result.stderr and "multiples of 64" in result.stderr
    assert "--pad" in result.stderr and "--resize N" in result.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # no folder, no staging left
    padded = cli("translate", run, "--input", tmp_path / "bad", "--output", tmp_path / "padded", "--pad", "--no-progress")
    assert padded.code == 0, padded.stderr
    assert read_image(tmp_path / "padded" / "x.png").shape == (48, 64, 3)
    resized = cli("translate", run, "--input", tmp_path / "bad", "--output", tmp_path / "resized", "--resize", "64", "--no-progress")
    assert resized.code == 0 and read_image(tmp_path / "resized" / "x.png").shape == (64, 64, 3)
    # gray and 16-bit images: converted to 8-bit RGB as combine reads them (the reference's convert("RGB"))
    mixed = tmp_path / "mixed"
    write_image(mixed / "g.png", np.full((64, 64), 40, np.uint8))
    mixed.mkdir(exist_ok=True)
    assert cv2.imwrite(str(mixed / "deep.png"), np.full((64, 64, 3), 40 * 256, np.uint16))
    write_image(mixed / "rgb.png", np.full((64, 64, 3), 40, np.uint8))
    write_image(mixed / "odd.png", np.zeros((40, 64, 3), np.uint8))
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = cli("translate", run, "--input", mixed, "--output", tmp_path / "m", "--skip-bad", "--no-progress")
    assert result.code == 0, result.stderr
    assert "translated 3 image(s)" in result.stdout and "2 skipped" in result.stdout
    outputs = {name: read_image(tmp_path / "m" / f"{name}.png") for name in ("g", "deep", "rgb")}
    assert np.array_equal(outputs["g"], outputs["rgb"]) and np.array_equal(outputs["deep"], outputs["rgb"])
    info = json.loads((tmp_path / "m" / "translate.json").read_text())
    assert info["count"] == 3
    assert [(Path(s["file"]).name, s["error"].split(" ")[0]) for s in info["skipped"]] == [("broken.png", "truncated"), ("odd.png", "size")]


# --- CLI: error paths ---------------------------------------------------------------------------


def _cli_error(cli, tmp_path, ckpt, *arch: str) -> str:
    result = cli("import-checkpoint", ckpt, "--model", "pix2pix", *arch, "--out", tmp_path / "run")
    assert result.code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not (tmp_path / "run").exists()
    return lines[0]


def test_wrong_netG_lists_shape_mismatches(tmp_path, cli):
    ckpt = save_reference(reference_net(), tmp_path / "g.pth")
    msg = _cli_error(cli, tmp_path, ckpt, "--netG", "encoder_decoder_64", "--ngf", "8")
    assert str(ckpt) in msg and "5 shape mismatch(es): " in msg
    assert "model.model.1.model.3.model.5.weight file (64, 16, 4, 4) vs network (32, 16, 4, 4)" in msg
    assert "the file looks like --netG unet_64 --ngf 8 --norm batch --input-nc 3 --output-nc 3" in msg
    msg = _cli_error(cli, tmp_path, ckpt, "--netG", "unet_128", "--ngf", "8")
    # one level deeper: the file's innermost level (no down-norm) is a middle level of unet_128
    assert "18 missing key(s): model.model.1.model.3.model.3.model.3.model.3.model.2.weight" in msg
    assert "6 unexpected key(s): model.model.1.model.3.model.3.model.3.model.3.model.3.weight" in msg


def test_wrong_ngf_and_norm_are_listed(tmp_path, cli):
    ckpt = save_reference(reference_net(), tmp_path / "g.pth")
    msg = _cli_error(cli, tmp_path, ckpt, "--netG", "unet_64", "--ngf", "16")
    assert "shape mismatch(es): model.model.0.weight file (8, 3, 4, 4) vs network (16, 3, 4, 4)" in msg
    msg = _cli_error(cli, tmp_path, ckpt, *ARCH, "--norm", "instance")
    assert "missing key(s): model.model.0.bias" in msg
    assert "unexpected key(s): model.model.1.model.2.bias, model.model.1.model.2.num_batches_tracked, model.model.1.model.2.running_mean" in msg
    assert "looks like --netG unet_64 --ngf 8 --norm batch" in msg


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"this is not a checkpoint", "not a readable PyTorch weights file"),
        (b"", "not a readable PyTorch weights file"),
        ("list", "holds a list, not a state dict"),
        ("nested", "not a flat state dict of tensors"),
        ("nan", "NaN or infinite values in model.model.0.weight"),
        ("truncated", "not a readable PyTorch weights file"),
    ],
)
def test_unusable_files(tmp_path, cli, content, problem):
    path = tmp_path / "g.pth"
    ref = reference_net()
    if content == "list":
        torch.save([torch.zeros(1)], path)
    elif content == "nested":
        torch.save({"state_dict": ref.state_dict(), "epoch": 3}, path)
    elif content == "nan":
        state = ref.state_dict()
        state["model.model.0.weight"][0, 0, 0, 0] = float("nan")
        torch.save(state, path)
    elif content == "truncated":
        save_reference(ref, path)
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.write_bytes(content)
    msg = _cli_error(cli, tmp_path, path, *ARCH)
    assert str(path) in msg and problem in msg


def test_pickled_code_is_refused_and_not_run(tmp_path, cli):
    marker = tmp_path / "pwned"

    class _Payload:  # unpickling it would create the marker file
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model.model.0.weight": _Payload()}, tmp_path / "evil.pth")
    msg = _cli_error(cli, tmp_path, tmp_path / "evil.pth", *ARCH)
    assert "evil.pth: not a readable PyTorch weights file" in msg
    assert not marker.exists()


def test_missing_file(tmp_path, cli):
    msg = _cli_error(cli, tmp_path, tmp_path / "nope.pth", *ARCH)
    assert msg == f"error: {tmp_path / 'nope.pth'}: no such file"


def test_existing_run_needs_overwrite(tmp_path, cli):
    ckpt = save_reference(reference_net(), tmp_path / "g.pth")
    run = _imported_run(tmp_path, cli)
    before = (run / "checkpoints" / "latest_G.safetensors").read_bytes()
    ckpt2 = save_reference(reference_net(seed=5), tmp_path / "g2.pth")
    result = cli("import-checkpoint", ckpt2, "--model", "pix2pix", *ARCH, "--out", run)
    assert result.code == 1 and "already holds a run; use --overwrite" in result.stderr
    assert (run / "checkpoints" / "latest_G.safetensors").read_bytes() == before
    result = cli("import-checkpoint", ckpt2, "--model", "pix2pix", *ARCH, "--out", run, "--overwrite")
    assert result.code == 0, result.stderr
    assert (run / "checkpoints" / "latest_G.safetensors").read_bytes() != before
    assert json.loads((run / "config.json").read_text())["imported_from"] == str(ckpt2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]
    del ckpt


def test_refuses_a_folder_that_is_not_a_run(tmp_path):
    ckpt = save_reference(reference_net(), tmp_path / "g.pth")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no p2ptools run"):
        import_reference_checkpoint(ckpt, Pix2PixOptions(netG="unet_64", ngf=8), tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    import_reference_checkpoint(ckpt, Pix2PixOptions(netG="unet_64", ngf=8), tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()


def test_library_error_type(tmp_path):
    with pytest.raises(CheckpointError):
        import_reference_checkpoint(tmp_path / "missing.pth", Pix2PixOptions(), tmp_path / "run")


def test_issue23_import_never_replaces_a_users_folder_holding_a_config_json(tmp_path, cli):
    ckpt = save_reference(reference_net(), tmp_path / "g.pth")
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.json").write_text(json.dumps({"plugin": "pix2pix", "options": {}}))
    (user / "notes.txt").write_text("mine")
    res = cli("import-checkpoint", ckpt, "--model", "pix2pix", "--netG", "unet_64", "--ngf", "8", "--out", user, "--overwrite")
    assert res.code == 1 and "holds no p2ptools run" in res.stderr, res.stderr
    assert sorted(p.name for p in user.iterdir()) == ["config.json", "notes.txt"]
    # a real imported run with a file of the user's in it is not replaced whole either
    run = tmp_path / "run"
    assert cli("import-checkpoint", ckpt, "--model", "pix2pix", "--netG", "unet_64", "--ngf", "8", "--out", run).code == 0
    (run / "notes.txt").write_text("mine")
    res = cli("import-checkpoint", ckpt, "--model", "pix2pix", "--netG", "unet_64", "--ngf", "8", "--out", run, "--overwrite")
    assert res.code == 1 and "also holds files p2ptools did not write (notes.txt)" in res.stderr, res.stderr
    assert (run / "notes.txt").read_text() == "mine"
