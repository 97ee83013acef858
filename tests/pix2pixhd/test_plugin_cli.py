"""pix2pixHD through the CLI: every option in `train --help`, a label-map run trained by flags,
translated with its label and instance maps (and --pad), errors for missing maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_label_dataset  # noqa: E402

from p2ptools.cli import main  # noqa: E402
from p2ptools.imageio import read_image  # noqa: E402


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err

TRAIN = ["--model", "pix2pixhd", "--ngf", "4", "--ndf", "4", "--n-downsample-global", "2", "--n-blocks-global", "1",
         "--n-layers-D", "2", "--label-nc", "5", "--direction", "BtoA", "--no-vgg-loss", "--preprocess", "none",
         "--epochs", "1", "--epochs-decay", "0", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress"]


def test_help_shows_every_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = cli(capsys, "train", "--model", "pix2pixhd", "--help")
    assert code == 0
    for flag in ("--netG", "--ngf", "--n-downsample-global", "--n-blocks-global", "--n-local-enhancers", "--n-blocks-local",
                 "--niter-fix-global", "--num-D", "--n-layers-D", "--label-nc", "--no-instance", "--gan-mode", "--lambda-feat",
                 "--no-ganfeat-loss", "--no-vgg-loss", "--vgg-weights", "--epochs-decay", "--beta1"):
        assert flag in out, flag


@pytest.fixture(scope="module")
def label_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hd-cli")
    data = make_label_dataset(root / "data", train=2, val=2, height=30, width=62)  # not multiples of 4: --pad
    data32 = make_label_dataset(root / "data32", train=2, val=2)
    from p2ptools.plugin import TrainRequest
    from p2ptools_pix2pixhd.options import Pix2PixHDOptions
    from p2ptools_pix2pixhd.plugin import Pix2PixHDPlugin

    options = Pix2PixHDOptions(ngf=4, ndf=4, n_downsample_global=2, n_blocks_global=1, n_layers_D=2, label_nc=5, direction="BtoA",
                               vgg_loss=False, preprocess="none", epochs=1, epochs_decay=0, batch_size=2, workers=0, device="cpu")
    Pix2PixHDPlugin().train(options, TrainRequest(data32, root / "run", progress=False))
    return root / "run", data


def test_train_flags_parse_into_the_options(capsys, tmp_path):
    data = make_label_dataset(tmp_path / "data", train=2, val=1)
    code, out, err = cli(capsys, "train", "--data", data, "--out", tmp_path / "run", *TRAIN, "--num-D", "1", "--no-instance",
                         "--lambda-feat", "5", "--max-steps", "1")
    assert code == 0, err
    options = json.loads((tmp_path / "run" / "config.json").read_text())["options"]
    assert options | {"num_D": 1, "instance": False, "lambda_feat": 5.0, "label_nc": 5, "vgg_loss": False, "ngf": 4} == options
    assert options["gan_mode"] == "lsgan" and options["lr"] == 2e-4 and options["beta1"] == 0.5 and options["epochs_decay"] == 0


def test_translate_reads_label_and_instance_maps(capsys, label_run, tmp_path):
    run, data = label_run
    out = tmp_path / "out"
    code, _, err = cli(capsys, "translate", run, "--input", data, "--split", "val", "--output", out, "--pad")
    assert code == 0, err
    for stem in ("000", "001"):
        assert read_image(out / f"{stem}.png").shape == (30, 62, 3)
        assert read_image(out / "target" / f"{stem}.png").shape == (30, 62, 3)
    info = json.loads((out / "translate.json").read_text())
    assert info["count"] == 2 and info["direction"] == "BtoA"
    # without --pad the size is refused with a hint
    code, _, err = cli(capsys, "translate", run, "--input", data, "--split", "val", "--output", tmp_path / "o2")
    assert code == 1 and "multiples of 4" in err and "--pad" in err


def test_translate_without_maps_names_the_missing_file(capsys, label_run, tmp_path):
    run, data = label_run
    (data / "instance_ids" / "val" / "001.png").unlink()
    code, _, err = cli(capsys, "translate", run, "--input", data, "--split", "val", "--output", tmp_path / "o", "--pad")
    assert code == 1 and "val/001.png" in err and "instance_ids/val/001.png" in err
    assert not (tmp_path / "o").exists()


def test_labels_change_the_output(label_run):
    from p2ptools.plugin import LoadOptions
    from p2ptools.registry import load_run

    run, _ = label_run
    model = load_run(run, LoadOptions())
    labels = np.zeros((32, 64), np.uint8)
    inst = np.zeros((32, 64), np.uint16)
    plain = model.translate([np.zeros((32, 64, 3), np.uint8)], [{"label_ids": labels, "instance_ids": inst}])[0]
    labels[8:24, 16:48] = 3
    inst[8:24, 16:48] = 3000
    boxed = model.translate([np.zeros((32, 64, 3), np.uint8)], [{"label_ids": labels, "instance_ids": inst}])[0]
    assert not np.array_equal(plain, boxed)
    with pytest.raises(Exception, match="label id 7 does not fit --label-nc 5"):
        model.translate([np.zeros((32, 64, 3), np.uint8)], [{"label_ids": labels + 4, "instance_ids": inst}])
