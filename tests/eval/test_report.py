"""Report files exist, are well-formed, and hold the numbers of the evaluation."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from p2ptools.eval.evaluate import EvalOptions, evaluate_results
from p2ptools.eval.matching import find_results
from p2ptools.eval.report import write_report


@pytest.fixture
def evaluation(scene, kit):
    options = EvalOptions(fcn=True, color=True, ground_truth_row=True, cityscapes=scene["cs"], real=scene["real"], samples=2, progress=False)
    return evaluate_results(find_results(scene["results"]), options, kit.FakeScorer(), scorer_info={"weights": "w.safetensors"})


def test_report_files_hold_the_numbers(evaluation, tmp_path):
    out = tmp_path / "report"
    paths = write_report(evaluation, out)
    rep = evaluation.report
    data = json.loads((out / "report.json").read_text())
    # the schema of the issue
    assert set(data["fcn"]) >= {"per_pixel_acc", "per_class_acc", "class_iou", "per_class", "n_images"}
    assert set(data["color"]) >= {"L", "a", "b"} and set(data["image"]) >= {"l1", "psnr", "ssim"}
    assert data["fcn"]["per_pixel_acc"] == pytest.approx(rep["fcn"]["per_pixel_acc"])
    assert data["fcn"]["per_class"]["road"]["iou"] == pytest.approx(rep["fcn"]["per_class"]["road"]["iou"])
    assert data["fcn"]["scorer"]["weights"] == "w.safetensors"
    assert data["ground_truth"]["fcn"]["class_iou"] == pytest.approx(rep["ground_truth"]["fcn"]["class_iou"])

    per_class = pd.read_csv(out / "per_class.csv", index_col=0)
    assert list(per_class.columns) == ["acc", "iou", "ground_truth_acc", "ground_truth_iou"]
    assert per_class.loc["car", "iou"] == pytest.approx(rep["fcn"]["per_class"]["car"]["iou"], abs=1e-6)
    assert len(per_class) == 19

    confusion = pd.read_csv(out / "confusion.csv", index_col=0)
    assert confusion.shape == (19, 20) and confusion.columns[-1] == "no class"
    assert confusion.to_numpy().sum() == evaluation.confusion.sum() == rep["fcn"]["pixels"]
    assert confusion.loc["road", "road"] == evaluation.confusion[0, 0]

    md = (out / "report.md").read_text()
    assert f"{rep['fcn']['per_pixel_acc']:.3f}" in md and f"{rep['color']['L']:.3f}" in md and "| ground truth |" in md
    html = (out / "report.html").read_text()
    assert f"{rep['fcn']['class_iou']:.3f}" in html and f"{rep['image']['ssim']:.3f}" in html
    for ch in "Lab":
        assert (out / f"color_{ch}.png").read_bytes()[:4] == b"\x89PNG" and f"color_{ch}.png" in html
    # sample triplets: input missing (plain results folder), output and ground truth written and linked
    assert "samples/000_output.png" in html and "samples/001_truth.png" in html
    assert (out / "samples" / "000_output.png").is_file() and (out / "samples" / "001_truth.png").is_file()
    assert set(paths) >= {"json", "md", "html", "per_class", "confusion", "color_L"}
    assert not list(out.glob(".tmp-*"))


def test_report_without_scores_has_no_score_files(scene, tmp_path):
    ev = evaluate_results(find_results(scene["results"]), EvalOptions(real=scene["real"], progress=False, samples=0))
    write_report(ev, tmp_path / "r")
    assert not (tmp_path / "r" / "per_class.csv").exists() and not (tmp_path / "r" / "confusion.csv").exists()
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "fcn" not in data and data["image"]["n_images"] == 3
    assert "No samples" in (tmp_path / "r" / "report.html").read_text()
