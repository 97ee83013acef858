"""Our HED against a forward pass written here from the caffemodel's blobs with torch.nn.functional,
with the crop offsets derived from Caffe's coordinate mapping (not copied from the network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from p2ptools.caffe import read_caffemodel, write_caffemodel
from p2ptools.edges.hed import HED, detect_edges, load_hed, save_hed
from p2ptools.errors import CheckpointError

VGG = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
       ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv4_1", 256, 512),
       ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv5_1", 512, 512), ("conv5_2", 512, 512),
       ("conv5_3", 512, 512)]  # fmt: skip
SIDES = [("score-dsn1", 64, None), ("score-dsn2", 128, 2), ("score-dsn3", 256, 4), ("score-dsn4", 512, 8), ("score-dsn5", 512, 16)]


def hed_layers(width: float = 1.0, seed: int = 0) -> list[tuple[str, str, list[np.ndarray]]]:
    """(name, type, blobs) of the BSDS caffemodel with random weights (He-scaled so signals survive)."""
    rng = np.random.default_rng(seed)
    c = lambda n: max(1, round(n * width))  # noqa: E731
    layers = []
    for name, cin, cout in VGG:
        cin = 3 if name == "conv1_1" else c(cin)
        w = rng.normal(0, np.sqrt(2 / (9 * cin)), (c(cout), cin, 3, 3)).astype(np.float32)
        layers.append((name, "Convolution", [w, rng.normal(0, 0.1, c(cout)).astype(np.float32)]))
    for name, cin, factor in SIDES:
        w = rng.normal(0, 1 / np.sqrt(c(cin)), (1, c(cin), 1, 1)).astype(np.float32)
        layers.append((name, "Convolution", [w, rng.normal(0, 0.1, 1).astype(np.float32)]))
        if factor:
            k = 2 * factor
            layers.append((f"upsample_{factor}", "Deconvolution", [rng.normal(0, 1 / factor, (1, 1, k, k)).astype(np.float32)]))
    layers.append(("new-score-weighting", "Convolution", [rng.normal(0.2, 0.1, (1, 5, 1, 1)).astype(np.float32), np.array([-0.5], np.float32)]))
    layers.append(("sigmoid-fuse", "Sigmoid", []))
    return layers


@pytest.fixture(scope="module")
def caffemodel(tmp_path_factory):
    path = tmp_path_factory.mktemp("hed") / "hed_pretrained_bsds.caffemodel"
    write_caffemodel(path, hed_layers())
    return path


def crop_offsets() -> list[int]:
    """Caffe's Crop offsets: map each side output's coordinates back to the input as an affine
    function in = a * out + b (centres of receptive fields); the offset is -b."""
    a, b = 1.0, -35.0 + 1.0  # conv1_1: 3x3, pad 35 -> out j is centred on input j - 34
    offsets = [-b]  # conv1_2 (3x3, pad 1) keeps the mapping; dsn1 is a 1x1 on it
    for factor in (2, 4, 8, 16):
        a, b = 2 * a, b + 0.5 * a  # a 2x2/2 pool: out i covers in 2i, 2i + 1 (centre 2i + 0.5)
        k, s = 2 * factor, factor
        # the deconvolution (kernel k, stride s) undoes the pools: out o <- in (o - (k - 1) / 2) / s
        offsets.append(-(b - a * (k - 1) / 2 / s))
        assert a / s == 1.0
    return [int(o) for o in offsets]


def reference_forward(blobs: dict[str, list[np.ndarray]], x: torch.Tensor) -> torch.Tensor:
    """HED from the blobs: VGG with ceil-mode pools, sides, deconvolutions, crops, fusion, sigmoid."""
    t = {k: [torch.from_numpy(np.array(b)) for b in v] for k, v in blobs.items()}
    h, w = x.shape[-2:]
    feats, y = [], x
    for block in range(1, 6):
        for name in [n for n, _, _ in VGG if n.startswith(f"conv{block}_")]:
            y = F.relu(F.conv2d(y, *t[name], padding=35 if name == "conv1_1" else 1))
        feats.append(y)
        if block < 5:
            y = F.max_pool2d(y, 2, 2, ceil_mode=True)
    sides = []
    for (name, _, factor), feat, off in zip(SIDES, feats, crop_offsets()):
        s = F.conv2d(feat, *t[name])
        if factor:
            s = F.conv_transpose2d(s, t[f"upsample_{factor}"][0], stride=factor)
        sides.append(s[..., off : off + h, off : off + w])
    return torch.sigmoid(F.conv2d(torch.cat(sides, 1), *t["new-score-weighting"]))


def test_crop_offsets_are_the_published_ones():
    assert crop_offsets() == [34, 35, 36, 38, 42]


def test_network_matches_the_reference_on_odd_sizes(caffemodel):
    net = HED.from_caffemodel(caffemodel)
    blobs = read_caffemodel(caffemodel)
    assert sum(p.numel() for p in net.parameters()) == 14_717_531
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for h, w in [(7, 5), (23, 31)]:  # the published widths (conv1_1's pad 35 makes even 1x1 cost 4 GFLOP)
            x = torch.randn(1, 3, h, w, generator=gen) * 50
            ours, ref = net(x), reference_forward(blobs, x)
            assert ours.shape == (1, 1, h, w)
            assert 0.01 < ref.std() and torch.allclose(ours, ref, atol=1e-5), (h, w, (ours - ref).abs().max())


def test_reduced_width_matches_the_reference_on_many_sizes():
    blobs = {name: b for name, _, b in hed_layers(width=1 / 8, seed=2) if b}
    net = HED(width=1 / 8)
    net.load_blobs(blobs, "test")
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for h, w in [(1, 1), (2, 3), (17, 9), (40, 33), (64, 64)]:
            x = torch.randn(2, 3, h, w, generator=gen) * 50
            ours, ref = net(x), reference_forward(blobs, x)
            assert ours.shape == (2, 1, h, w)
            assert torch.allclose(ours, ref, atol=1e-5), (h, w, (ours - ref).abs().max())
            sides = net.side_outputs(x)
            assert [tuple(s.shape) for s in sides] == [(2, 1, h, w)] * 5


def test_old_caffe_layouts_load_the_same(tmp_path, caffemodel):
    """V1 ``layers`` with legacy 4-D blob shapes (a (1, 1, 1, n) bias) give the same network."""
    path = tmp_path / "v1.caffemodel"
    write_caffemodel(path, [layer for layer in hed_layers() if layer[2]], v1=True, legacy_shape=True)
    a, b = HED.from_caffemodel(caffemodel), HED.from_caffemodel(path)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_detect_edges_preprocesses_like_the_reference_script():
    """Reflect-pad 128, RGB -> BGR, minus the mean, crop [128:128+H]; batches group equal sizes."""
    layers = hed_layers(width=1 / 16, seed=1)
    blobs = {name: b for name, _, b in layers if b}
    net = HED(width=1 / 16)
    net.load_blobs(blobs, "test")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(9, 6, 3), (5, 11, 3), (9, 6, 3)]]
    maps = detect_edges(images, net, batch_size=2)
    for image, prob in zip(images, maps):
        padded = np.pad(image.astype(np.float64), ((128, 128), (128, 128), (0, 0)), mode="reflect")
        bgr = padded[:, :, ::-1] - np.array([104.00698793, 116.66876762, 122.67891434])
        x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1))[None].astype(np.float32))
        with torch.inference_mode():
            ref = reference_forward(blobs, x)[0, 0, 128 : 128 + image.shape[0], 128 : 128 + image.shape[1]].numpy()
        assert prob.dtype == np.float32 and prob.shape == image.shape[:2]
        np.testing.assert_allclose(prob, ref, atol=1e-5)
    with pytest.raises(ValueError, match=r"images\[0\].*uint8"):
        detect_edges([images[0].astype(np.float32)], net)


def test_missing_layers_and_wrong_shapes_are_named(tmp_path, caffemodel):
    blobs = dict(read_caffemodel(caffemodel))
    for name in ("score-dsn3", "upsample_8"):
        del blobs[name]
    with pytest.raises(CheckpointError, match="missing layer.*score-dsn3, upsample_8"):
        HED().load_blobs(blobs, "x.caffemodel")
    blobs = dict(read_caffemodel(caffemodel))
    blobs["conv3_2"] = [np.zeros((256, 128, 3, 3), np.float32), blobs["conv3_2"][1]]
    with pytest.raises(CheckpointError, match=r"x\.caffemodel.*'conv3_2'.*\(256, 128, 3, 3\).*\(256, 256, 3, 3\)"):
        HED().load_blobs(blobs, "x.caffemodel")
    blobs = dict(read_caffemodel(caffemodel))
    blobs["upsample_4"] = blobs["upsample_4"] + [np.full(1, 0.5, np.float32)]
    with pytest.raises(CheckpointError, match="'upsample_4' has 2 blob"):
        HED().load_blobs(blobs, "x.caffemodel")
    blobs["upsample_4"][1] = np.zeros(1, np.float32)  # Caffe's default bias term, left at zero: no bias
    net = HED()
    net.load_blobs(blobs, "x.caffemodel")
    assert torch.equal(net.upsample_4.weight, torch.from_numpy(np.array(blobs["upsample_4"][0])))


def test_safetensors_round_trip_and_errors(tmp_path):
    net = HED(width=1 / 32)
    path = tmp_path / "hed.safetensors"
    save_hed(net, path)
    loaded = load_hed(path)
    assert loaded.width == net.width
    for (k, v), (k2, v2) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["score_dsn2.weight"] = torch.zeros(1, 3, 1, 1)
    save_file(state, tmp_path / "bad.safetensors", metadata={"width": repr(1 / 32)})
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*score_dsn2\.weight.*\(1, 3, 1, 1\).*\(1, 4, 1, 1\)"):
        load_hed(tmp_path / "bad.safetensors")
    del state["score_dsn2.weight"]
    save_file(state, tmp_path / "bad.safetensors", metadata={"width": repr(1 / 32)})
    with pytest.raises(CheckpointError, match="missing score_dsn2.weight"):
        load_hed(tmp_path / "bad.safetensors")
    (tmp_path / "w.pth").write_bytes(b"x")
    with pytest.raises(Exception, match=r"w\.pth.*\.caffemodel or \.safetensors"):
        load_hed(tmp_path / "w.pth")


def test_hed_convert_command(tmp_path, caffemodel, cli):
    res = cli("hed", "convert", caffemodel, "--out", tmp_path / "hed.safetensors")
    assert res.code == 0, res.stderr
    said = " ".join(res.stdout.split())  # rich wraps long lines
    # VGG16's 13 convolutions 14,714,688 + 5 side outputs 1,477 + 4 upsampling kernels 1,360 + fusion 6
    assert "14,717,531 parameters" in said and f"--hed-weights {tmp_path / 'hed.safetensors'}" in said
    converted, original = load_hed(tmp_path / "hed.safetensors"), HED.from_caffemodel(caffemodel)
    assert converted.width == 1.0
    for (k, v), (k2, v2) in zip(converted.state_dict().items(), original.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
    # errors: one line naming the file, exit 1, nothing written
    (tmp_path / "junk.caffemodel").write_bytes(b"\x00\x01 not protobuf")
    for args, needle in [((tmp_path / "junk.caffemodel", "--out", tmp_path / "a.safetensors"), "junk.caffemodel"),
                         ((tmp_path / "missing.caffemodel", "--out", tmp_path / "b.safetensors"), "missing.caffemodel"),
                         ((caffemodel, "--out", tmp_path / "c.pth"), "c.pth")]:
        res = cli("hed", "convert", *args)
        assert res.code == 1 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hed.safetensors", "junk.caffemodel"]
