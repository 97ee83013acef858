"""The streaming pass: scores against independent computations, ground-truth row, --seg, errors, memory."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.eval.color import LabHistogram, direct_histogram, intersection
from p2ptools.eval.confusion import scores
from p2ptools.eval.evaluate import EvalOptions, evaluate_results
from p2ptools.eval.matching import find_results
from p2ptools.eval.metrics import image_metrics
from p2ptools.imageio import write_image
from p2ptools.labels import CITYSCAPES


def test_fcn_color_and_image_metrics(scene, kit):
    scorer = kit.FakeScorer()
    options = EvalOptions(fcn=True, color=True, cityscapes=scene["cs"], real=scene["real"], batch_size=2, progress=False)
    ev = evaluate_results(find_results(scene["results"]), options, scorer)
    rep = ev.report
    names = sorted(scene["gts"])
    expected = scores(kit.naive_hist([(scene["gts"][n], scene["preds"][n]) for n in names], 19), CITYSCAPES.names)
    assert rep["fcn"]["n_images"] == 3 and rep["n_images"] == 3
    for key in ("per_pixel_acc", "per_class_acc", "class_iou"):
        assert rep["fcn"][key] == pytest.approx(expected[key])
    for name in CITYSCAPES.names:
        assert rep["fcn"]["per_class"][name] == pytest.approx(expected["per_class"][name])
    assert rep["fcn"]["per_class"]["road"]["acc"] > 0
    np.testing.assert_array_equal(ev.confusion, kit.naive_hist([(scene["gts"][n], scene["preds"][n]) for n in names], 19))
    assert scorer.calls == [(2, (32, 48)), (1, (32, 48))]  # batched, one call per label size
    # color: against the protocol computed directly
    outputs = [CITYSCAPES.render(np.where(scene["preds"][n] >= 19, 255, scene["preds"][n]).astype(np.uint8)) for n in names]
    ref_out, ref_gt = direct_histogram(outputs), direct_histogram([scene["photos"][n] for n in names])
    for ch in "Lab":
        assert rep["color"][ch] == pytest.approx(intersection(ref_out[ch] / ref_out[ch].sum(), ref_gt[ch] / ref_gt[ch].sum()))
    # image metrics: means of the per-image values
    per_image = [image_metrics(o, scene["photos"][n]) for o, n in zip(outputs, names, strict=True)]
    assert rep["image"]["ssim"] == pytest.approx(np.mean([m["ssim"] for m in per_image]))
    assert rep["image"]["psnr"] == pytest.approx(np.mean([m["psnr"] for m in per_image]))
    assert len(ev.samples) == 3 and ev.samples[0]["truth"].shape == (32, 48, 3)


def test_ground_truth_row_scores_real_photos_at_the_results_size(scene, kit):
    """The real photos reach the scorer at the size of the results they are compared with (the
    paper's "resize them to 256x256 first, like the results"): here 128x192 photos -> 32x48 results."""
    scorer = kit.FakeScorer()
    names = sorted(scene["gts"])
    # real photos that are the label colors (4x larger than the results): the ground-truth row is nearly perfect
    big = {n: cv2.resize(CITYSCAPES.render(scene["gts"][n]), (192, 128), interpolation=cv2.INTER_NEAREST) for n in names}
    for n in names:
        write_image(scene["real"] / f"{n}_leftImg8bit.png", big[n])
    options = EvalOptions(fcn=True, ground_truth_row=True, cityscapes=scene["cs"], real=scene["real"], progress=False, samples=0,
                          image_metrics=False)  # fmt: skip
    rep = evaluate_results(find_results(scene["results"]), options, scorer).report
    pairs = []
    for n in names:
        at_result_size = cv2.resize(big[n], (48, 32), interpolation=cv2.INTER_AREA)
        pairs.append((scene["gts"][n], kit.FakeScorer().predict([at_result_size], (32, 48))[0]))
    expected = scores(kit.naive_hist(pairs, 19))
    assert rep["ground_truth"]["fcn"]["per_pixel_acc"] == pytest.approx(expected["per_pixel_acc"])
    assert rep["ground_truth"]["fcn"]["class_iou"] == pytest.approx(expected["class_iou"])
    assert rep["ground_truth"]["fcn"]["per_pixel_acc"] > 0.9
    assert rep["ground_truth"]["fcn"]["resized_to"] == "the size of each result (48x32)"


def test_seg_mode_decodes_colors_and_resizes_predictions_nearest(scene, kit, tmp_path):
    names = sorted(scene["gts"])
    seg = tmp_path / "seg"
    expected_pairs = []
    for n in names:
        small = scene["preds"][n][::2, ::2]  # 16x24 label map results
        write_image(seg / f"{n}.png", CITYSCAPES.render(np.where(small >= 19, 255, small).astype(np.uint8)))
        up = cv2.resize(np.where(small >= 19, 255, small).astype(np.uint8), (48, 32), interpolation=cv2.INTER_NEAREST)
        expected_pairs.append((scene["gts"][n], up))
    options = EvalOptions(seg=True, cityscapes=scene["cs"], progress=False)
    rep = evaluate_results(find_results(seg), options).report
    expected = scores(kit.naive_hist(expected_pairs, 19))
    assert "fcn" not in rep and "image" not in rep
    assert rep["seg"]["per_pixel_acc"] == pytest.approx(expected["per_pixel_acc"])
    assert rep["seg"]["class_iou"] == pytest.approx(expected["class_iou"])


def test_labels_from_the_dataset_manifest_and_targets(tmp_path, kit):
    rng = np.random.default_rng(3)
    pairs, labels, results = {}, {}, tmp_path / "res"
    for i in range(2):
        ids = kit.random_train_ids(rng, (16, 16))
        photo = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        pairs[f"p{i}"], labels[f"p{i}"] = (CITYSCAPES.render(ids), photo), ids
        write_image(results / f"p{i}.png", CITYSCAPES.render(ids))  # a perfect translation for the fake scorer
        write_image(results / "target" / f"p{i}.png", photo)
    data = kit.make_aligned_dataset(tmp_path / "data", pairs, labels=labels)
    kit.write_translate_json(results, dataset=str(data), direction="AtoB")
    rep = evaluate_results(find_results(results), EvalOptions(fcn=True, color=True, progress=False), kit.FakeScorer()).report
    assert rep["fcn"]["per_pixel_acc"] == 1.0
    assert "label maps of the dataset" in rep["fcn"]["labels"]
    assert "target" in rep["color"]["ground_truth"] and rep["image"]["l1"] > 0


def test_error_paths_name_the_file(scene, kit, tmp_path):
    scorer = kit.FakeScorer()
    options = EvalOptions(fcn=True, cityscapes=scene["cs"], progress=False)
    # a result with no frame name
    write_image(scene["results"] / "zz_unknown.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputFileError, match=r"zz_unknown\.png: no Cityscapes frame name"):
        evaluate_results(find_results(scene["results"]), options, scorer)
    (scene["results"] / "zz_unknown.png").unlink()
    # an unreadable (truncated) result
    bad = scene["results"] / "frankfurt_000000_000001_leftImg8bit.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(InputFileError, match=r"000001_leftImg8bit\.png: truncated PNG"):
        evaluate_results(find_results(scene["results"]), options, scorer)
    # a size mismatch between a result and its ground-truth photo
    write_image(bad, np.zeros((32, 48, 3), np.uint8))
    write_image(scene["real"] / "frankfurt_000000_000001_leftImg8bit.png", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InputFileError, match=r"000001_leftImg8bit\.png: result is 48x32 but its ground-truth photo is 16x16"):
        evaluate_results(find_results(scene["results"]), EvalOptions(real=scene["real"], progress=False))


def test_configuration_errors(scene, kit):
    res = find_results(scene["results"])
    with pytest.raises(ConfigError, match="needs ground-truth labels"):
        evaluate_results(res, EvalOptions(fcn=True, progress=False), kit.FakeScorer())
    with pytest.raises(ConfigError, match="--color needs ground-truth photos"):
        evaluate_results(res, EvalOptions(color=True, progress=False))
    with pytest.raises(ConfigError, match="needs a scorer"):
        evaluate_results(res, EvalOptions(fcn=True, cityscapes=scene["cs"], progress=False))
    with pytest.raises(ConfigError, match="choose one"):
        evaluate_results(res, EvalOptions(fcn=True, seg=True, cityscapes=scene["cs"], progress=False), kit.FakeScorer())


def _peak(tmp_path, kit, count: int) -> int:
    rng = np.random.default_rng(4)
    gts = {f"frankfurt_000001_{i:06d}": kit.random_train_ids(rng, (16, 16)) for i in range(count)}
    root = tmp_path / f"n{count}"
    kit.make_cityscapes(root / "cs", gts)
    kit.make_results(root / "res", gts)
    for name in gts:
        write_image(root / "res" / "target" / f"{name}_leftImg8bit.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    options = EvalOptions(fcn=True, color=True, cityscapes=root / "cs", batch_size=4, samples=2, progress=False)
    LabHistogram().update(np.zeros((2, 2, 3), np.uint8))  # the shared color table exists before measuring
    results = find_results(root / "res")
    tracemalloc.start()
    rep = evaluate_results(results, options, kit.FakeScorer()).report
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rep["fcn"]["per_pixel_acc"] == 1.0 and rep["n_images"] == count and rep["image"]["n_images"] == count
    return peak


def test_streaming_memory_is_flat(tmp_path, kit):
    small, large = _peak(tmp_path, kit, 10), _peak(tmp_path, kit, 100)
    assert large < small * 1.3 + 64_000, (small, large)


RANK_SCRIPT = """
import json, sys
import numpy as np
from pathlib import Path
from p2ptools.eval.evaluate import EvalOptions, distributed_context, distributed_session, evaluate_results
from p2ptools.eval.matching import find_results
from p2ptools.labels import CITYSCAPES

class Scorer:
    classes = CITYSCAPES
    def predict(self, images, size):
        out = [CITYSCAPES.decode_colors(im) for im in images]
        return np.stack([np.where(o == 255, 19, o) for o in out]).astype(np.uint8)

root = Path(sys.argv[1])
with distributed_session("cpu") as device:
    assert device == "cpu"
    rank, world = distributed_context()
    options = EvalOptions(fcn=True, color=True, cityscapes=root / "cs", real=root / "real", progress=False, samples=2)
    ev = evaluate_results(find_results(root / "results"), options, Scorer())
print(json.dumps({"rank": rank, "world": world, "report": ev.report, "hist": ev.confusion.tolist(), "samples": [(s["name"], s["output"].tolist()) for s in ev.samples]}))
"""


def test_two_ranks_sum_their_shards_with_gloo(scene, kit, tmp_path):
    """torchrun-style: 2 CPU processes (gloo) each score a shard; the summed report equals one process's."""
    import json
    import os
    import socket
    import subprocess
    import sys

    single = evaluate_results(find_results(scene["results"]), EvalOptions(fcn=True, color=True, cityscapes=scene["cs"], real=scene["real"], progress=False, samples=2), kit.FakeScorer())
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen([sys.executable, str(script), str(scene["root"])], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    for out in outs:
        assert out["world"] == 2 and out["report"]["n_images"] == 3
        np.testing.assert_array_equal(out["hist"], single.confusion)
        assert out["report"]["fcn"]["class_iou"] == pytest.approx(single.report["fcn"]["class_iou"])
        for key in ("L", "a", "b"):
            assert out["report"]["color"][key] == pytest.approx(single.report["color"][key])
        assert out["report"]["image"]["ssim"] == pytest.approx(single.report["image"]["ssim"])
    shown = [(s["name"], s["output"].tolist()) for s in single.samples]
    assert [name for name, _ in shown] == [p.stem for p in find_results(scene["results"]).files[:2]]
    for out in outs:  # the first 2 results, one from each rank, as one process shows them
        assert [tuple(s) for s in out["samples"]] == shown


def test_the_scorer_class_table_replaces_cityscapes(tmp_path, kit):
    from p2ptools.labels import ClassTable

    table = ClassTable("facades", ("wall", "window", "door"), (1, 2, 3), ((200, 0, 0), (0, 0, 200), (0, 200, 0)))
    ids = np.array([[0, 1], [2, 255]], np.uint8).repeat(8, 0).repeat(8, 1)
    write_image(tmp_path / "labels" / "x.png", ids)
    write_image(tmp_path / "res" / "x.png", table.render(np.where(ids == 2, 1, ids).astype(np.uint8)))  # doors -> windows
    ev = evaluate_results(find_results(tmp_path / "res"), EvalOptions(fcn=True, labels=tmp_path / "labels", progress=False), kit.FakeScorer(table))
    fcn = ev.report["fcn"]
    assert list(fcn["per_class"]) == ["wall", "window", "door"] and fcn["classes"] == "facades"
    assert fcn["per_pixel_acc"] == pytest.approx(2 / 3)
    assert fcn["per_class"]["door"] == {"acc": 0.0, "iou": 0.0}
    assert fcn["per_class"]["window"]["iou"] == pytest.approx(1 / 2)
