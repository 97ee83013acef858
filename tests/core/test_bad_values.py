"""Issue 23.3 / 26.12-13: bad values are one line, exit 1 (2 for usage errors), and leave nothing behind."""

from __future__ import annotations

import pytest
import torch

TRAIN = ["--netG", "unet_32", "--netD", "patch16", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
         "--epochs", "1", "--epochs-decay", "0", "--workers", "0", "--device", "cpu", "--no-progress"]


def _one_line(res, code, text):
    assert res.code == code, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and text in res.stderr, res.stderr
    assert "internal error" not in res.stderr


@pytest.mark.parametrize(("extra", "text"), [
    (["--load-size", "0"], "--load-size: invalid value 0; accepted range [1, 8192]"),
    (["--load-size", "-5"], "--load-size: invalid value -5; accepted range [1, 8192]"),
    (["--load-size", "1000000"], "--load-size: invalid value 1000000; accepted range [1, 8192]"),
    (["--crop-size", "0"], "--crop-size: invalid value 0; accepted range [1, 8192]"),
    (["--crop-size", "64"], "--crop-size 64 is larger than --load-size 36"),
    (["--lr", "nan"], "--lr: invalid value nan; accepted range [0, 1]"),
    (["--lr", "-1"], "--lr: invalid value -1.0; accepted range [0, 1]"),
    (["--ngf", "0"], "--ngf: invalid value 0; accepted range [1, 1024]"),
    (["--workers", "100000"], "--workers: invalid value 100000; accepted range [0, 64]"),
    (["--netG", "unet_256", "--load-size", "70", "--crop-size", "64"], "needs sizes divisible by 256; use --netG unet_64"),
    (["--model", ""], "unknown model ''; available: pix2pix, pix2pixhd"),
    (["--model", "pix2pix-hd"], "did you mean 'pix2pixhd'?"),
])
def test_train_refuses_bad_values_before_the_run_exists(cli, tiny_data, tmp_path, extra, text):
    run = tmp_path / "run"
    _one_line(cli("train", "--data", tiny_data, "--out", run, *TRAIN, *extra), 1, text)
    assert not run.exists()


def test_a_refused_start_leaves_nothing_and_the_corrected_command_runs(cli, tiny_data, tmp_path):
    run = tmp_path / "run"
    _one_line(cli("train", "--data", tiny_data, "--out", run, *TRAIN, "--lr", "-1"), 1, "--lr")
    assert not run.exists()
    res = cli("train", "--data", tiny_data, "--out", run, *TRAIN, "--max-steps", "1")
    assert res.code == 0, res.stderr


def test_load_size_in_exponent_form_is_a_usage_error(cli, tiny_data, tmp_path):
    _one_line(cli("train", "--data", tiny_data, "--out", tmp_path / "r", *TRAIN, "--load-size", "1e6"), 2, "--load-size")
    assert not (tmp_path / "r").exists()


def test_model_names_match_case_insensitively():
    from p2ptools import registry

    assert registry.load("models", "pix2pixHD").name == "pix2pixhd"


def test_data_on_a_split_folder_names_the_root(cli, tiny_data, tmp_path):
    _one_line(cli("train", "--data", tiny_data / "train", "--out", tmp_path / "r", *TRAIN), 1,
              f"--data is the dataset root, the folder that holds train/ [val/ test/]: --data {tiny_data}")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
@pytest.mark.parametrize("command", [
    ["translate", "RUN", "--input", "DATA", "--output", "OUT"],
    ["eval", "--results", "DATA", "--out", "OUT"],
    ["fcn", "train", "--data", "DATA", "--out", "OUT"],
    ["train", "--data", "DATA", "--out", "OUT", *TRAIN],
])
def test_a_missing_device_is_named(cli, tiny_data, tmp_path, command):
    args = [str(tiny_data) if a in ("DATA", "RUN") else str(tmp_path / "out") if a == "OUT" else a for a in command]
    if "--device" in args:
        args[args.index("--device") + 1] = "cuda:7"
    else:
        args += ["--device", "cuda:7"]
    _one_line(cli(*args), 1, "--device cuda:7: no such device; this machine has")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["0", "-4", "1000000"])
def test_resize_out_of_range(cli, tiny_data, tmp_path, value):
    _one_line(cli("translate", tiny_data, "--input", tiny_data, "--output", tmp_path / "t", "--resize", value), 1,
              f"--resize: invalid value {value}; accepted range [1, 8192]")
    _one_line(cli("make-dataset", "combine", "--source-a", tiny_data, "--source-b", tiny_data, "--out", tmp_path / "c",
                  "--resize", value), 1, f"--resize: invalid value {value}; accepted range [1, 8192]")
    assert not (tmp_path / "t").exists() and not (tmp_path / "c").exists()


def test_lpips_net_without_lpips(cli, tiny_data, tmp_path):
    _one_line(cli("eval", "--results", tiny_data, "--out", tmp_path / "e", "--lpips-net", "vgg"), 1,
              "--lpips-net vgg is the backbone of --lpips")
    assert not (tmp_path / "e").exists()


def test_empty_weights_files_are_named(tmp_path):
    from p2ptools.edges.hed import load_hed
    from p2ptools.errors import InputFileError
    from p2ptools.eval.scorer import load_scorer
    from p2ptools.metrics.weights import load_state_dict

    for name, load in [("w.pth", load_state_dict), ("fcn.safetensors", load_scorer), ("hed.safetensors", load_hed)]:
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InputFileError, match=rf"{name}: empty file \(0 bytes\)"):
            load(tmp_path / name)


def test_builder_options_that_do_not_apply_are_refused_and_hidden(cli, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    res = cli("make-dataset", "combine", "--size", "32", "--source-a", tiny_data, "--source-b", tiny_data, "--out", tmp_path / "c")
    _one_line(res, 2, "No such option: --size")
    assert not (tmp_path / "c").exists()
    help_text = cli("make-dataset", "synthetic-scenes", "--help").stdout
    assert "--count" in help_text and not any(f in help_text for f in ("--source", "--download", "--prebuilt"))
    edges = cli("make-dataset", "edges2shoes", "--help").stdout
    assert "25/255" in next(line for line in edges.splitlines() if "--threshold" in line) and "0.0980" not in edges


def test_every_range_bound_is_refused_just_outside():
    """check_options on the dataclasses themselves: the function a sweep row goes through."""
    import dataclasses

    from p2ptools.errors import ConfigError
    from p2ptools.options import check_options, field_range
    from p2ptools_pix2pix.options import Pix2PixOptions

    base = Pix2PixOptions(workers=0)
    for f in dataclasses.fields(base):
        accepted = field_range(f)
        if accepted is None or accepted.high is None:
            continue
        with pytest.raises(ConfigError, match=f"{f.metadata.get('flag') or '--' + f.name.replace('_', '-')}: invalid value"):
            check_options(dataclasses.replace(base, **{f.name: type(getattr(base, f.name))(accepted.high * 2 + 1)}))
