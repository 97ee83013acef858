"""The scorer: weights formats, the caffemodel cache, protocol preprocessing, numerics flags, errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from p2ptools.caffe import read_caffemodel, write_caffemodel
from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.eval import scorer as scorer_mod
from p2ptools.eval.scorer import CITYSCAPES_MEAN_BGR, convert_caffemodel, load_scorer, resize_for_scoring
from p2ptools.labels import CITYSCAPES
from p2ptools.nets.fcn8s import FCN8s, bilinear_kernel, caffe_layer_shapes

WIDTH = 1 / 16


def make_caffemodel(path, *, width=WIDTH, classes=20, seed=0, v1=False, bias_19=0.0):
    rng = np.random.default_rng(seed)
    layers = []
    for name, shapes in caffe_layer_shapes(classes, width).items():
        fan_in = int(np.prod(shapes[0][1:]))
        blobs = [rng.standard_normal(shapes[0]).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))]
        blobs += [rng.standard_normal(s).astype(np.float32) * np.float32(0.1) for s in shapes[1:]]
        if bias_19 and name == "score_fr":
            blobs[1][19] = bias_19
        if bias_19 and name.startswith("upscore"):  # positive (bilinear) upsampling keeps the bias on top
            blobs[0] = bilinear_kernel(classes, shapes[0][2]).numpy()
        layers.append((name, "Deconvolution" if name.startswith("upscore") else "Convolution", blobs))
    write_caffemodel(path, layers, v1=v1)
    return path


def reference_predict(caffemodel, images, size):
    """The protocol written out step by step with numpy/OpenCV and a directly loaded FCN8s."""
    net = FCN8s(20, WIDTH)
    net.load_caffe_blobs(read_caffemodel(caffemodel), caffemodel)
    net.eval()
    out = []
    for image in images:
        big = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        bgr = big[:, :, ::-1] - np.array(CITYSCAPES_MEAN_BGR, np.float32)
        with torch.no_grad():
            scores = net(torch.from_numpy(bgr.transpose(2, 0, 1).copy())[None])
        out.append(scores[0].argmax(0).numpy().astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)] + [rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)]


@pytest.mark.parametrize("v1", [False, True])
def test_converted_weights_follow_the_protocol(tmp_path, images, v1):
    model = make_caffemodel(tmp_path / "fcn.caffemodel", v1=v1)
    out = tmp_path / "fcn.safetensors"
    config = convert_caffemodel(model, out)
    assert (config.num_classes, config.width, config.classes) == (20, WIDTH, CITYSCAPES)
    scorer = load_scorer(out)
    assert scorer.classes == CITYSCAPES and scorer.num_classes == 20 and scorer.mean_bgr == CITYSCAPES_MEAN_BGR
    info = scorer.info()
    assert info["precision"] == "fp32" and info["tf32"] is False and info["weights"] == str(out) and info["source"]["file"] == "fcn.caffemodel"
    pred = scorer.predict(images, (24, 40), batch_size=3)
    assert pred.shape == (4, 24, 40) and pred.dtype == np.uint8
    np.testing.assert_array_equal(pred, reference_predict(model, images, (24, 40)))
    assert len(np.unique(pred)) > 1  # random weights still give a varied map: the check bites
    np.testing.assert_array_equal(scorer.predict(images, (24, 40), batch_size=1), pred)


def test_caffemodel_is_converted_once_and_cached(tmp_path, images, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "weights").mkdir()
    model = make_caffemodel(tmp_path / "weights" / "fcn-8s-cityscapes.caffemodel")
    cache = scorer_mod.conversion_cache_path(model)
    assert cache.is_relative_to(tmp_path / "cache")
    first = load_scorer(model).predict(images[:2], (20, 20))
    assert cache.is_file() and not list(cache.parent.glob(".tmp-*"))
    assert sorted(p.name for p in model.parent.iterdir()) == [model.name]  # nothing written beside the weights
    stamp = cache.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("the caffemodel was read again")

    monkeypatch.setattr(scorer_mod, "read_caffemodel", fail)
    again = load_scorer(model)
    assert cache.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.predict(images[:2], (20, 20)), first)
    monkeypatch.undo()
    # a changed caffemodel (other weights, new mtime) is converted again
    make_caffemodel(model, seed=1)
    os.utime(model, ns=(stamp + 10**9, stamp + 10**9))
    changed = load_scorer(model).predict(images[:2], (20, 20))
    cache = scorer_mod.conversion_cache_path(model)  # keyed by size and mtime: a new entry
    assert cache.is_file() and cache.stat().st_mtime_ns != stamp
    np.testing.assert_array_equal(changed, reference_predict(model, images[:2], (20, 20)))
    # a corrupt cache is replaced, not an error
    cache.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    np.testing.assert_array_equal(load_scorer(model).predict(images[:2], (20, 20)), changed)


def test_no_class_channel_is_returned(tmp_path, images):
    model = make_caffemodel(tmp_path / "fcn.caffemodel", bias_19=1e4)
    pred = load_scorer(model).predict(images[:1], (8, 8))
    assert (pred == 19).all() and CITYSCAPES.num_classes == 19


def test_resize_for_scoring():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    up = resize_for_scoring(image, (8, 12))
    np.testing.assert_array_equal(up, cv2.resize(image, (12, 8), interpolation=cv2.INTER_LINEAR))
    # half-pixel centres (align_corners=False): torch's bilinear agrees up to rounding
    ref = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(8, 12), mode="bilinear", align_corners=False)
    assert np.abs(up.astype(float) - ref[0].permute(1, 2, 0).numpy()).max() <= 1.0
    assert resize_for_scoring(image, (4, 6)) is image
    np.testing.assert_array_equal(resize_for_scoring(image, (2, 3)), cv2.resize(image, (3, 2), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        resize_for_scoring(image[:, :, 0], (8, 8))


def test_bad_images_are_named(tmp_path, images):
    scorer = load_scorer(make_caffemodel(tmp_path / "fcn.caffemodel"))
    with pytest.raises(ValueError, match="image 1: .*float32"):
        scorer.predict([images[0], images[1].astype(np.float32)], (8, 8))


def test_fp32_by_default_tf32_and_bf16_opt_in(tmp_path, images, monkeypatch):
    scorer = load_scorer(make_caffemodel(tmp_path / "fcn.caffemodel"))
    seen = []
    forward = scorer.net.forward

    def spy(x):
        seen.append((torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision, torch.is_autocast_enabled("cpu")))
        return forward(x)

    monkeypatch.setattr(scorer.net, "forward", spy)
    before = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    fp32 = scorer.predict(images[:2], (16, 16))
    assert seen[-1] == ("ieee", "ieee", False)
    scorer.tf32 = True
    scorer.predict(images[:1], (16, 16))
    assert seen[-1] == ("tf32", "tf32", False)
    scorer.tf32, scorer.precision = False, "bf16"
    bf16 = scorer.predict(images[:2], (16, 16))
    assert seen[-1][2] is True and bf16.shape == fp32.shape and bf16.max() < 20
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before  # restored
    with pytest.raises(ConfigError, match="precision"):
        load_scorer(tmp_path / "fcn.caffemodel", precision="fp8")


def test_checkpoint_folder_with_its_own_class_table(tmp_path, images):
    # covered end to end in test_fcn_train; here: a folder without weights is one clear error
    with pytest.raises(InputFileError, match="no fcn8s.safetensors"):
        load_scorer(tmp_path)


def test_wrong_weights_files(tmp_path):
    rng = np.random.default_rng(0)
    # a HED caffemodel: the VGG trunk, side outputs, no fc6_cs
    hed = [(n, "Convolution", b) for n, b in ((n, [rng.standard_normal(s[0]).astype(np.float32), np.zeros(s[1], np.float32)]) for n, s in caffe_layer_shapes(20, WIDTH).items() if n.startswith("conv"))]
    hed += [("score-dsn1", "Convolution", [np.zeros((1, 4, 1, 1), np.float32), np.zeros(1, np.float32)]), ("upsample_2", "Deconvolution", [np.zeros((1, 1, 4, 4), np.float32)])]
    write_caffemodel(tmp_path / "hed.caffemodel", hed)
    with pytest.raises(CheckpointError, match=r"hed\.caffemodel: not an FCN-8s caffemodel: missing layer 'fc6_cs'"):
        load_scorer(tmp_path / "hed.caffemodel")
    assert not (tmp_path / "hed.safetensors").exists()  # no partial output
    # another network's safetensors
    save_file({"model.0.weight": np.zeros((64, 3, 4, 4), np.float32)}, str(tmp_path / "gen.safetensors"))
    with pytest.raises(CheckpointError, match=r"gen\.safetensors: not FCN-8s weights: missing layer 'conv1_1'"):
        load_scorer(tmp_path / "gen.safetensors")
    # FCN-shaped tensors with one wrong layer and no metadata
    shapes = caffe_layer_shapes(20, WIDTH)
    tensors = {f"{n}.{'weight' if i == 0 else 'bias'}": np.zeros(s, np.float32) for n, ss in shapes.items() for i, s in enumerate(ss)}
    tensors["upscore_pool4.weight"] = np.zeros((20, 20, 3, 3), np.float32)
    save_file(tensors, str(tmp_path / "odd.safetensors"))
    with pytest.raises(CheckpointError, match=r"'upscore_pool4'.*\(20, 20, 3, 3\), expected \(20, 20, 4, 4\)"):
        load_scorer(tmp_path / "odd.safetensors")
    # garbage and missing files
    (tmp_path / "junk.bin").write_bytes(b"\xff" * 100)
    with pytest.raises(InputFileError, match=r"junk\.bin: not a readable caffemodel"):
        load_scorer(tmp_path / "junk.bin")
    with pytest.raises(InputFileError, match="no such weights file"):
        load_scorer(tmp_path / "missing.safetensors")
