"""The command line: help, version, error mapping, generic train/translate through a plugin."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from p2p_testutils import make_distribution, run_p2ptools
from p2ptools import __version__
from p2ptools.imageio import read_image, write_image
from p2ptools.pairs import write_pair


def test_help_and_version(cli):
    res = cli("--help")
    assert res.code == 0
    for command in ("make-dataset", "train", "translate", "models", "datasets", "import-checkpoint"):
        assert command in res.stdout
    assert "not implemented" not in res.stdout.lower()
    ver = cli("--version")
    assert ver.code == 0 and ver.stdout.strip() == f"p2ptools {__version__}"


def test_usage_errors_exit_2(cli):
    assert cli("no-such-command").code == 2
    assert cli("make-dataset", "combine", "--no-such-option").code == 2
    assert cli("make-dataset", "combine", "--workers", "many").code == 2
    assert cli("make-dataset").code == 2


def test_library_errors_one_line_exit_1_and_debug_traceback(tmp_path: Path):
    res = run_p2ptools("make-dataset", "nope")
    assert res.code == 1 and res.stderr.startswith("error: unknown dataset 'nope'; available:") and res.stderr.count("\n") == 1
    debug = run_p2ptools("make-dataset", "nope", env={"P2PTOOLS_DEBUG": "1"})
    assert debug.code == 1 and "Traceback" in debug.stderr and "PluginError" in debug.stderr


def test_make_dataset_without_name_says_name_is_missing(cli):
    # the first word after an option is its value: "cs" is --source's, not a builder's name
    res = cli("make-dataset", "--source", "cs", "--out", "x")
    assert res.code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: Missing argument 'NAME'") and "unknown dataset" not in res.stderr
    assert not Path("x").exists()


@pytest.mark.parametrize("name", ["cityscapes", "combine"])
def test_datasets_show_lists_the_builders_own_defaults(cli, name):
    from p2ptools import registry

    res = cli("datasets", "show", name)
    assert res.code == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if "--format" in line)
    expected = registry.load("datasets", name).default_format
    assert expected == {"cityscapes": "png", "combine": "jpg"}[name]  # what the builder writes, known independently
    assert f"'{expected}'" in row


def test_invalid_choice_is_a_clear_error(cli, tmp_path: Path):
    res = cli("make-dataset", "combine", "--format", "gif", "--source-a", tmp_path, "--source-b", tmp_path)
    assert res.code == 1 and res.stderr == "error: --format: invalid value 'gif'; choose from jpg, png\n"


@pytest.fixture
def colormap_env(tmp_path: Path) -> dict[str, str]:
    site = make_distribution(
        tmp_path / "site",
        "colormap-dist",
        "colormap_pkg",
        {"p2ptools.models": {"colormap-template": "p2ptools_pix2pix._template:ColorMapPlugin"}},
        "",
    )
    return {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _color_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for i in range(n):
            a = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            b = (255 - a).astype(np.uint8)  # an exactly affine map: B = 1 - A
            write_pair(root / split / f"{split}{i}.png", a, b)
    (root / "manifest.json").write_text("{}")


def test_generic_train_translate_through_a_plugin(tmp_path: Path, colormap_env):
    data = tmp_path / "data"
    _color_dataset(data)
    run = tmp_path / "run"
    res = run_p2ptools("train", "--model", "colormap-template", "--data", data, "--out", run, "--max-images", "5", env=colormap_env)
    assert res.code == 0, res.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["plugin"] == "colormap-template" and config["options"]["max_images"] == 5
    other = run_p2ptools("train", "--model", "colormap-template", "--data", data, "--out", run, "--max-images", "3", env=colormap_env)
    assert other.code == 1 and "another configuration; use --overwrite" in other.stderr
    out = tmp_path / "out"
    res = run_p2ptools("translate", run, "--input", data, "--output", out, "--batch-size", "2", env=colormap_env)
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["test0.png", "test1.png", "test2.png"]
    target = read_image(out / "target/test1.png")
    assert np.abs(read_image(out / "test1.png").astype(int) - target.astype(int)).max() <= 1
    assert (read_image(out / "input/test1.png") == 255 - target).all()
    assert json.loads((out / "translate.json").read_text())["count"] == 3
    # plain images, a gray image (converted to the model's 3 channels, as the reference does), and a missing run
    plain = tmp_path / "plain"
    write_image(plain / "p.png", np.zeros((8, 8, 3), np.uint8))
    assert run_p2ptools("translate", run, "--input", plain, "--output", tmp_path / "o2", env=colormap_env).code == 0
    assert (read_image(tmp_path / "o2/p.png") > 250).all()
    write_image(plain / "gray.png", np.zeros((8, 8), np.uint8))
    gray = run_p2ptools("translate", run, "--input", plain / "gray.png", "--output", tmp_path / "o3", env=colormap_env)
    assert gray.code == 0, gray.stderr
    assert read_image(tmp_path / "o3/gray.png").shape == (8, 8, 3) and (read_image(tmp_path / "o3/gray.png") > 250).all()
    missing = run_p2ptools("translate", tmp_path / "norun", "--input", plain, "--output", tmp_path / "o4")
    assert missing.code == 1 and "norun/config.json: no config.json" in missing.stderr
    resumed = run_p2ptools("train", "--resume", tmp_path / "norun")
    assert resumed.code == 1 and "no config.json" in resumed.stderr


def test_corrupt_run_config_is_one_clear_line(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{ not json")
    for args in (("translate", run, "--input", tmp_path, "--output", tmp_path / "o"), ("train", "--resume", run)):
        res = run_p2ptools(*args)
        assert res.code == 1 and res.stderr.count("\n") == 1, res.stderr
        assert "run/config.json: not valid JSON" in res.stderr
