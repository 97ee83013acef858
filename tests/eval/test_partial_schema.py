"""The checks of a --shard part (p2ptools.eval.partial_schema) on the measures the CLI merge tests
do not use (FCN confusion matrices, the ground-truth row): the merged state equals one process's,
and a tampered matrix or context is refused naming the file and the field."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from p2ptools.errors import InputFileError
from p2ptools.eval.evaluate import EvalOptions, evaluate_results
from p2ptools.eval.matching import find_results
from p2ptools.eval.partial import build_evaluation, merge_partials, read_partial, write_partial


def _options(scene) -> EvalOptions:
    return EvalOptions(fcn=True, ground_truth_row=True, color=True, cityscapes=scene["cs"], real=scene["real"], progress=False, samples=2, batch_size=1)


@pytest.fixture
def shards(scene, kit, tmp_path) -> list[Path]:
    folders = []
    for i in range(2):
        ev = evaluate_results(find_results(scene["results"]), _options(scene), kit.FakeScorer(), shard=(i, 2))
        folders.append(tmp_path / f"part{i}")
        write_partial(ev.partial, folders[-1])
    return folders


def test_merged_confusions_and_samples_equal_one_process(scene, kit, shards, tmp_path):
    whole = evaluate_results(find_results(scene["results"]), _options(scene), kit.FakeScorer())
    partial, _ = merge_partials(shards[::-1], tmp_path / "merged")
    merged = build_evaluation(partial, None, verbose=False)
    np.testing.assert_array_equal(merged.confusion, whole.confusion)
    np.testing.assert_array_equal(merged.gt_confusion, whole.gt_confusion)
    assert merged.report["fcn"] == whole.report["fcn"] and merged.report["n_images"] == 3
    assert [s["name"] for s in merged.samples] == [s["name"] for s in whole.samples] == [p.stem for p in find_results(scene["results"]).files[:2]]
    for a, b in zip(merged.samples, whole.samples, strict=True):
        for role in ("input", "output", "truth"):
            assert (a[role] is None and b[role] is None) or np.array_equal(a[role], b[role])


def _tamper_state(part: Path, key: str, value: np.ndarray) -> None:
    with np.load(part / "state.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays[key] = value
    np.savez(part / "state.npz", **arrays)


def test_a_tampered_matrix_or_context_is_refused(shards):
    part = shards[0]
    hist = read_partial(part).arrays["hist"]
    _tamper_state(part, "hist", hist - 1)
    with pytest.raises(InputFileError, match=r"state\.npz: hist: negative counts"):
        read_partial(part)
    _tamper_state(part, "hist", hist[:, :-1].copy())
    with pytest.raises(InputFileError, match=r"state\.npz: hist: shape \(19, 19\), expected \(19, 20\)"):
        read_partial(part)
    _tamper_state(part, "hist", hist)
    _tamper_state(part, "gt_hist", hist.astype(np.uint64))
    with pytest.raises(InputFileError, match=r"gt_hist: dtype uint64, expected int64"):
        read_partial(part)
    meta = json.loads((part / "partial.json").read_text())
    meta["context"]["seg"] = True
    (part / "partial.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match=r"partial\.json: context\.seg: --fcn and --seg"):
        read_partial(part)


def test_shards_of_results_of_several_sizes_merge(scene, kit, tmp_path):
    """Each share records the sizes of its own results (to which the real photos are resized); the
    merge unites them instead of calling the shards' settings different."""
    import cv2

    from p2ptools.imageio import read_image, write_image

    third = find_results(scene["results"]).files[2]
    write_image(third, cv2.resize(read_image(third), (96, 64), interpolation=cv2.INTER_NEAREST))
    options = replace(_options(scene), image_metrics=False)  # (L1/PSNR/SSIM need equal sizes)
    whole = evaluate_results(find_results(scene["results"]), options, kit.FakeScorer())
    folders = []
    for i in range(2):
        ev = evaluate_results(find_results(scene["results"]), options, kit.FakeScorer(), shard=(i, 2))
        folders.append(tmp_path / f"part{i}")
        write_partial(ev.partial, folders[-1])
    merged = build_evaluation(merge_partials(folders, tmp_path / "merged")[0], None, verbose=False)
    assert merged.report["ground_truth"] == whole.report["ground_truth"]
    assert "48x32, 96x64" in merged.report["ground_truth"]["fcn"]["resized_to"]
