"""FCN-8s: the published layer table, and the port against an independent functional forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from p2ptools.caffe import read_caffemodel, write_caffemodel
from p2ptools.errors import CheckpointError
from p2ptools.nets.fcn8s import FCN8s, bilinear_kernel, caffe_layer_shapes

# The published fcn-8s-cityscapes structure, written out by hand: (layer, out, in, kernel, bias).
PUBLISHED = [
    ("conv1_1", 64, 3, 3, True), ("conv1_2", 64, 64, 3, True),
    ("conv2_1", 128, 64, 3, True), ("conv2_2", 128, 128, 3, True),
    ("conv3_1", 256, 128, 3, True), ("conv3_2", 256, 256, 3, True), ("conv3_3", 256, 256, 3, True),
    ("conv4_1", 512, 256, 3, True), ("conv4_2", 512, 512, 3, True), ("conv4_3", 512, 512, 3, True),
    ("conv5_1", 512, 512, 3, True), ("conv5_2", 512, 512, 3, True), ("conv5_3", 512, 512, 3, True),
    ("fc6_cs", 4096, 512, 7, True), ("fc7_cs", 4096, 4096, 1, True), ("score_fr", 20, 4096, 1, True),
    ("upscore2", 20, 20, 4, False), ("score_pool4", 20, 512, 1, True),
    ("upscore_pool4", 20, 20, 4, False), ("score_pool3", 20, 256, 1, True), ("upscore8", 20, 20, 16, False),
]  # fmt: skip


def _published_shapes(div: int = 1, classes: int = 20) -> dict[str, list[tuple[int, ...]]]:
    """The table above with channels divided by ``div`` (score channels = ``classes``)."""
    out = {}
    for name, c_out, c_in, k, bias in PUBLISHED:
        c_out = classes if c_out == 20 else c_out // div
        c_in = classes if c_in == 20 else (3 if c_in == 3 else c_in // div)
        out[name] = [(c_out, c_in, k, k)] + ([(c_out,)] if bias else [])  # deconv: (in, out) = (K, K)
    return out


def test_full_width_layer_table_without_allocating():
    shapes = caffe_layer_shapes(20, 1.0)
    assert shapes == _published_shapes()
    assert sum(math.prod(s) for blobs in shapes.values() for s in blobs) == 134_473_084  # 513 MB file


def _random_blobs(div: int, classes: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shapes in _published_shapes(div, classes).items():
        fan_in = shapes[0][1] * shapes[0][2] * shapes[0][3]
        w = rng.standard_normal(shapes[0]).astype(np.float32) * np.float32(math.sqrt(2.0 / fan_in))
        blobs[name] = [w] + [rng.standard_normal(s).astype(np.float32) * np.float32(0.1) for s in shapes[1:]]
    return blobs


def _reference_forward(blobs: dict[str, list[np.ndarray]], x: torch.Tensor) -> torch.Tensor:
    """FCN-8s written directly with torch.nn.functional from the blob dict (GUIDE.md section 4)."""
    t = {name: [torch.from_numpy(np.array(b)).double() for b in bl] for name, bl in blobs.items()}
    h = x.double()

    def conv(name, h, pad):
        return F.conv2d(h, t[name][0], t[name][1], padding=pad)

    pools = {}
    for block, n in enumerate((2, 2, 3, 3, 3), 1):
        for i in range(1, n + 1):
            h = F.relu(conv(f"conv{block}_{i}", h, 100 if (block, i) == (1, 1) else 1))
        h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        pools[block] = h
    h = F.relu(conv("fc6_cs", h, 0))
    h = F.relu(conv("fc7_cs", h, 0))
    score = conv("score_fr", h, 0)
    up2 = F.conv_transpose2d(score, t["upscore2"][0], stride=2)
    p4 = conv("score_pool4", pools[4], 0)[:, :, 5 : 5 + up2.shape[2], 5 : 5 + up2.shape[3]]
    up4 = F.conv_transpose2d(up2 + p4, t["upscore_pool4"][0], stride=2)
    p3 = conv("score_pool3", pools[3], 0)[:, :, 9 : 9 + up4.shape[2], 9 : 9 + up4.shape[3]]
    up8 = F.conv_transpose2d(up4 + p3, t["upscore8"][0], stride=8)
    return up8[:, :, 31 : 31 + x.shape[2], 31 : 31 + x.shape[3]]


@pytest.mark.parametrize("v1, legacy", [(False, False), (True, True)])
def test_port_matches_independent_forward(tmp_path, v1, legacy):
    blobs = _random_blobs(div=16, classes=20)
    path = tmp_path / "fcn.caffemodel"
    types = {name: ("Deconvolution" if name.startswith("upscore") else "Convolution") for name in blobs}
    layers = [("data", "Input" if not v1 else "Data", [])] + [(n, types[n], b) for n, b in blobs.items()] + [("loss", "SoftmaxWithLoss", [])]
    write_caffemodel(path, layers, v1=v1, legacy_shape=legacy)
    net = FCN8s(20, width=1 / 16)
    net.load_caffe_blobs(read_caffemodel(path), path)
    net.eval()
    x = torch.randn(2, 3, 37, 50) * 60  # mean-subtracted BGR scale
    with torch.no_grad():
        got = net(x)
    want = _reference_forward(blobs, x)
    assert got.shape == (2, 20, 37, 50)
    scale = want.abs().max().item()
    assert scale > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=0, atol=2e-5 * scale)
    assert (got.argmax(1) == want.argmax(1)).float().mean() > 0.999


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (32, 32), (101, 7), (64, 95)])
def test_output_size_equals_input_size(size):
    net = FCN8s(5, width=1 / 32).eval()
    with torch.no_grad():
        y = net(torch.zeros(1, 3, *size))
    assert y.shape == (1, 5, *size)


def test_missing_and_misshapen_layers(tmp_path):
    blobs = _random_blobs(div=32, classes=20)
    net = FCN8s(20, width=1 / 32)
    broken = dict(blobs)
    del broken["fc7_cs"]
    with pytest.raises(CheckpointError, match="missing layer 'fc7_cs'") as info:
        net.load_caffe_blobs(broken, tmp_path / "x.caffemodel")
    assert "x.caffemodel" in str(info.value)
    broken = dict(blobs, upscore8=[np.zeros((20, 20, 8, 8), np.float32)])
    with pytest.raises(CheckpointError, match=r"'upscore8'.*\(20, 20, 8, 8\).*\(20, 20, 16, 16\)"):
        net.load_caffe_blobs(broken, "x.caffemodel")
    broken = dict(blobs, upscore2=blobs["upscore2"] + [np.zeros(20, np.float32)])  # a deconv with a bias
    with pytest.raises(CheckpointError, match="'upscore2' has 2 blob"):
        net.load_caffe_blobs(broken, "x.caffemodel")


def test_hed_like_caffemodel_is_rejected(tmp_path):
    blobs = {k: v for k, v in _random_blobs(div=32, classes=20).items() if k.startswith("conv")}
    blobs["score-dsn1"] = [np.zeros((1, 2, 1, 1), np.float32), np.zeros(1, np.float32)]
    with pytest.raises(CheckpointError, match="not an FCN-8s caffemodel: missing layer 'fc6_cs'"):
        FCN8s(20, width=1 / 32).load_caffe_blobs(blobs, tmp_path / "hed.caffemodel")


def test_bilinear_kernel_upsamples_constants():
    w = bilinear_kernel(2, 4)
    x = torch.ones(1, 2, 5, 5)
    y = F.conv_transpose2d(x, w, stride=2)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.ones_like(y[:, :, 2:-2, 2:-2]))
    assert torch.all(w[0, 1] == 0)
