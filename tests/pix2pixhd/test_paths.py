"""Issue 26 item 4: a pix2pixHD run stores its weight paths absolute (with their sha256), resumes
from any folder, and a moved weight file is pointed at again beside --resume, content checked."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_label_dataset, random_vgg19_file  # noqa: E402
from p2p_testutils import assert_one_line_error  # noqa: E402

from p2ptools.imageio import sha256_file  # noqa: E402

TRAIN = ["--model", "pix2pixhd", "--ngf", "4", "--ndf", "4", "--n-downsample-global", "2", "--n-blocks-global", "1",
         "--n-layers-D", "2", "--label-nc", "5", "--direction", "BtoA", "--preprocess", "none",
         "--epochs", "1", "--epochs-decay", "0", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def vgg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    random_vgg19_file(path)
    return path


@pytest.fixture
def run(tmp_path, cli, monkeypatch, vgg) -> Path:
    work = tmp_path / "work"
    make_label_dataset(work / "data", train=2, val=1)
    shutil.copy(vgg, work / "vgg19.pth")
    monkeypatch.chdir(work)  # every path on the command line is relative
    res = cli("train", "--data", "data", "--out", "run", *TRAIN, "--vgg-weights", "vgg19.pth")
    assert res.code == 0, res.stderr
    monkeypatch.chdir(tmp_path)  # and the run is resumed from another folder
    return work / "run"


def test_paths_are_stored_absolute_with_their_hash(run):
    config = json.loads((run / "config.json").read_text())
    vgg = Path(config["options"]["vgg_weights"])
    assert vgg.is_absolute() and vgg == run.parent / "vgg19.pth"
    assert Path(config["data"]).is_absolute()
    assert config["files_sha256"] == {"vgg_weights": sha256_file(vgg)}


def test_resume_from_another_folder_and_a_moved_weight_file(run, cli, tmp_path):
    assert cli("train", "--resume", run, "--no-progress").code == 0
    moved = tmp_path / "elsewhere" / "vgg19.pth"
    moved.parent.mkdir()
    (run.parent / "vgg19.pth").rename(moved)
    assert_one_line_error(cli("train", "--resume", run, "--no-progress"), "no such VGG19 weights file", "--resume RUN_DIR --vgg-weights")
    other = tmp_path / "other.pth"
    other.write_bytes(moved.read_bytes() + b"x")  # other content
    before = (run / "config.json").read_bytes()
    assert_one_line_error(cli("train", "--resume", run, "--vgg-weights", other, "--no-progress"), f"--vgg-weights {other}",
                          "is not the file the run was trained with")
    assert_one_line_error(cli("train", "--resume", run, "--lr", "0.1", "--no-progress"), "--lr", "only moved files may be given beside --resume")
    assert (run / "config.json").read_bytes() == before
    res = cli("train", "--resume", run, "--vgg-weights", moved, "--no-progress")
    assert res.code == 0, res.stderr
    assert json.loads((run / "config.json").read_text())["options"]["vgg_weights"] == str(moved)


def test_a_config_with_a_relative_path_resumes_from_its_folder(run, cli, monkeypatch):
    config = json.loads((run / "config.json").read_text())
    config["options"]["vgg_weights"] = "vgg19.pth"  # as written before paths were stored absolute
    del config["files_sha256"]
    (run / "config.json").write_text(json.dumps(config))
    assert_one_line_error(cli("train", "--resume", run, "--no-progress"), "--vgg-weights vgg19.pth", "relative to the folder the run started in")
    assert json.loads((run / "config.json").read_text()) == config  # nothing rewritten
    monkeypatch.chdir(run.parent)
    assert cli("train", "--resume", run, "--no-progress").code == 0
    assert json.loads((run / "config.json").read_text())["options"]["vgg_weights"] == str(run.parent / "vgg19.pth")
