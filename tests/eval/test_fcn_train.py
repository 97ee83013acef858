"""fcn train: learns a tiny flat-color segmentation, saves a checkpoint load_scorer reads with its table."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.eval.fcn_train import FCNTrainOptions, detect_photo_side, list_items, load_vgg16, train_fcn
from p2ptools.eval.scorer import load_scorer
from p2ptools.imageio import write_image
from p2ptools.labels import ClassTable
from p2ptools.nets.fcn8s import FCN8s
from p2ptools.pairs import Manifest, PairRecord, write_pair

TABLE = ClassTable("toy", ("ground", "wall", "sky"), (1, 2, 3), ((128, 64, 128), (70, 70, 70), (70, 130, 180)))
PHOTO_COLORS = np.array([(150, 110, 60), (210, 200, 90), (40, 90, 230)], np.float32)
SIZE = 64


def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sky above ground with a wall rectangle; photo = noisy class colors (not the label colors)."""
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[: rng.integers(SIZE // 4, 3 * SIZE // 4)] = 2  # sky above ground
    y, x = rng.integers(0, SIZE // 2, 2)
    h, w = rng.integers(SIZE // 3, SIZE // 2, 2)
    ids[y : y + h, x : x + w] = 1  # a wall
    photo = PHOTO_COLORS[ids] + rng.normal(0, 12, (SIZE, SIZE, 3))
    return np.clip(photo, 0, 255).astype(np.uint8), ids


def make_dataset(root, *, counts=(("train", 16), ("val", 8)), with_labels=True, photo_side="A", seed=0):
    rng = np.random.default_rng(seed)
    pairs = []
    for split, n in counts:
        for i in range(n):
            photo, ids = scene(rng)
            color = TABLE.render(ids)
            a, b = (photo, color) if photo_side == "A" else (color, photo)
            rel = f"{split}/s{i:03d}.png"
            digest = write_pair(root / rel, a, b)
            extras = {}
            if with_labels:
                lab = f"labels/{split}/s{i:03d}.png"
                extras["labels"] = {"file": lab, "sha256": write_image(root / lab, ids)}
            pairs.append(PairRecord(split, f"s{i:03d}", rel, ["toy"], digest, extras))
    Manifest({"name": "toy", "version": "1"}, {}, ["toy"], [SIZE, SIZE], "png", pairs, extras={"class_table": TABLE.to_dict()}).write(root)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("toy"))
    out = tmp_path_factory.mktemp("run") / "fcn"
    opts = FCNTrainOptions(data=root, out=out, width=1 / 16, epochs=8, batch_size=4, lr=3e-3, size=SIZE, classes="manifest", progress=False)
    return root, out, train_fcn(opts)


def test_learns_to_segment(trained):
    root, out, result = trained
    assert result.val["pixel_acc"] > 0.9, result.val
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and log[-1]["train_loss"] < log[0]["train_loss"]
    config = json.loads((out / "config.json").read_text())
    assert config["photo"] == "A" and config["classes"]["names"] == list(TABLE.names)
    b, g, r = config["mean_bgr"]
    assert 100 < r < 150 and 100 < g < 150 and 80 < b < 160  # the photos' mean, not Cityscapes'


def test_checkpoint_loads_as_scorer_with_its_table(trained):
    root, out, result = trained
    rng = np.random.default_rng(99)
    photos, labels = zip(*(scene(rng) for _ in range(6)))
    for weights in (out, result.checkpoint):
        scorer = load_scorer(weights)
        assert scorer.classes == TABLE and scorer.num_classes == 3 and scorer.config.train_size == SIZE
        pred = scorer.predict(list(photos), (SIZE, SIZE))
        assert (pred == np.stack(labels)).mean() > 0.88
    # scoring at the label size of a larger ground truth (upsampled like the protocol)
    big = scorer.predict(list(photos[:2]), (2 * SIZE, 2 * SIZE))
    assert big.shape == (2, 2 * SIZE, 2 * SIZE)


def test_color_label_halves_and_photo_detection(tmp_path):
    root = make_dataset(tmp_path / "toy", counts=(("train", 6),), with_labels=False, photo_side="B")
    items = list_items(root, "train")
    assert all(it.labels is None for it in items)
    assert detect_photo_side(items, TABLE) == "B"
    table = tmp_path / "table.json"
    table.write_text(json.dumps(TABLE.to_dict()))
    result = train_fcn(FCNTrainOptions(data=root, out=tmp_path / "run", width=1 / 32, epochs=1, batch_size=3, lr=1e-3, size=16, classes=str(table), progress=False))
    assert result.checkpoint.is_file() and result.val == {}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["photo"] == "B"
    with pytest.raises(ConfigError, match="--overwrite"):
        train_fcn(FCNTrainOptions(data=root, out=tmp_path / "run", width=1 / 32, epochs=1, size=SIZE, classes=str(table), progress=False))


def test_bad_inputs(tmp_path):
    root = make_dataset(tmp_path / "toy", counts=(("train", 2),))
    with pytest.raises(InputFileError, match="no pairs in split 'test'"):
        train_fcn(FCNTrainOptions(data=root, out=tmp_path / "o", split="test", classes="manifest", progress=False))
    # labels outside a 2-class table
    two = ClassTable("two", ("a", "b"), (1, 2), ((1, 2, 3), (4, 5, 6)))
    (tmp_path / "two.json").write_text(json.dumps(two.to_dict()))
    with pytest.raises(InputFileError, match=r"s000\.png: label values 2 outside the 2 classes"):
        train_fcn(FCNTrainOptions(data=root, out=tmp_path / "o", width=1 / 32, epochs=1, size=SIZE, classes=str(tmp_path / "two.json"), photo="A", progress=False))
    with pytest.raises(ConfigError, match="--classes"):
        train_fcn(FCNTrainOptions(data=root, out=tmp_path / "o", classes="nope", progress=False))


def test_vgg16_initialisation_from_torchvision_layout(tmp_path):
    """A torchvision vgg16 state dict (real key layout, width-reduced shapes; the real file is 528 MB)."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    with torch.device("meta"):
        full = {k: tuple(v.shape) for k, v in vgg16().state_dict().items()}
    assert full["features.28.weight"] == (512, 512, 3, 3) and full["classifier.0.weight"] == (4096, 25088)
    div = 16

    def reduced(key, shape):
        if key.startswith("classifier.0"):
            return (4096 // div, 512 // div * 49)[: len(shape)]
        return tuple(s if s == 3 else s // div for s in shape)

    small = {k: torch.randn(reduced(k, s)) * 0.01 for k, s in full.items() if not k.startswith("classifier.6")}
    path = tmp_path / "vgg16.pth"
    torch.save(small, path)
    net = FCN8s(3, 1 / div)
    mean_bgr = (100.0, 110.0, 120.0)
    load_vgg16(net, path, mean_bgr)
    assert torch.equal(net.conv5_3.weight, small["features.28.weight"])
    assert torch.equal(net.conv2_1.bias, small["features.5.bias"])
    assert torch.equal(net.fc6_cs.weight, small["classifier.0.weight"].reshape(256, 32, 7, 7))
    assert torch.equal(net.fc7_cs.weight[:, :, 0, 0], small["classifier.3.weight"])
    # conv1_1 on our input (BGR, 0-255, mean subtracted) == torchvision's conv1 on its normalised RGB
    rgb = torch.rand(1, 3, 5, 5) * 255
    ours = rgb.flip(1) - torch.tensor(mean_bgr).view(1, 3, 1, 1)
    tv_in = (rgb / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    want = torch.nn.functional.conv2d(tv_in, small["features.0.weight"], small["features.0.bias"])
    got = torch.nn.functional.conv2d(ours, net.conv1_1.weight, net.conv1_1.bias)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(CheckpointError, match=r"features\.0\.weight has shape \(4, 3, 3, 3\), expected \(8, 3, 3, 3\) for conv1_1"):
        load_vgg16(FCN8s(3, 1 / 8), path, mean_bgr)
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="missing 'features.0.bias'"):
        load_vgg16(FCN8s(3, 1 / div), tmp_path / "other.pth", mean_bgr)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="not a torch weights file"):
        load_vgg16(FCN8s(3, 1 / div), tmp_path / "junk.pth", mean_bgr)


def test_position_jitter_moves_photos_and_labels_together():
    import random

    import numpy as np

    from p2ptools.eval.fcn_train import _jitter_position

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (3, 8, 8), dtype=np.uint8)
    photos = np.stack([labels * 40] * 3, axis=-1).astype(np.uint8)  # photo = a function of the label
    seen = set()
    for seed in range(12):
        p, lab = _jitter_position(photos, labels, random.Random(seed))
        assert p.shape == photos.shape and lab.shape == labels.shape
        assert (p[..., 0] == lab * 40).all()  # still aligned pixel for pixel
        assert sorted(lab.ravel()) == sorted(labels.ravel())  # a permutation of the pixels
        seen.add(lab.tobytes())
    assert len(seen) > 6  # it actually moves things


def test_photometric_jitter_against_its_formula():
    import random

    from p2ptools.eval.fcn_train import photometric_jitter

    photos = np.random.default_rng(1).integers(40, 200, (4, 6, 6, 3), dtype=np.uint8)
    assert np.array_equal(photometric_jitter(photos, 0.0, random.Random(0)), photos)
    out = photometric_jitter(photos, 0.4, random.Random(7))
    assert out.dtype == np.uint8 and out.shape == photos.shape and not np.array_equal(out, photos)
    rng = random.Random(7)  # the same draws, in the documented order, computed independently
    for image, got in zip(photos, out, strict=True):
        c, b = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4)
        gain = [rng.uniform(0.8, 1.2) for _ in range(3)]
        x = image.astype(np.float64)
        expected = np.clip(np.rint(((x - x.mean()) * c + x.mean() * b) * np.array(gain)), 0, 255)
        assert np.abs(expected - got).max() <= 1  # float32 against float64 rounding
    assert np.array_equal(photometric_jitter(photos, 0.4, random.Random(7)), out)  # seeded
    with pytest.raises(ValueError, match="strength"):
        photometric_jitter(photos, 1.0, random.Random(0))


def test_resume_continues_exactly(tmp_path):
    """3 epochs straight == 2 epochs, then --resume to 3 (weights bit-identical); other options refuse."""
    from safetensors.torch import load_file

    from p2ptools.errors import ConfigError
    from p2ptools.eval.fcn_train import FCNTrainOptions, train_fcn

    data = make_dataset(tmp_path / "data", counts=(("train", 8), ("val", 4)))
    common = dict(data=data, width=1 / 16, batch_size=4, size=32, lr=1e-3, progress=False, position_jitter=True, photometric_jitter=0.3)
    straight = train_fcn(FCNTrainOptions(out=tmp_path / "straight", epochs=3, **common))
    train_fcn(FCNTrainOptions(out=tmp_path / "resumed", epochs=2, **common))
    with pytest.raises(ConfigError, match="pass --resume to continue it"):
        train_fcn(FCNTrainOptions(out=tmp_path / "resumed", epochs=3, **common))
    with pytest.raises(ConfigError, match=r"cannot resume with other options \(lr: 0.001 -> 0.01\)"):
        train_fcn(FCNTrainOptions(out=tmp_path / "resumed", epochs=3, resume=True, **{**common, "lr": 1e-2}))
    resumed = train_fcn(FCNTrainOptions(out=tmp_path / "resumed", epochs=3, resume=True, **common))
    a, b = load_file(str(straight.checkpoint)), load_file(str(resumed.checkpoint))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "resumed/log.jsonl").read_text() == (tmp_path / "straight/log.jsonl").read_text()
    with pytest.raises(Exception, match="nothing to resume"):
        train_fcn(FCNTrainOptions(out=tmp_path / "empty", epochs=1, resume=True, **common))


def test_poly_learning_rate_follows_its_formula_step_by_step(tmp_path, monkeypatch):
    """--lr-policy poly: each Adam step runs at lr * (1 - i / n) ** 0.9, i over all epochs; fixed stays put."""
    from p2ptools.errors import ConfigError
    from p2ptools.eval.fcn_train import FCNTrainOptions, learning_rate, train_fcn

    assert learning_rate(1e-3, "fixed", 7, 10) == 1e-3
    assert learning_rate(1e-3, "poly", 0, 10) == 1e-3 and learning_rate(1e-3, "poly", 10, 10) == 0.0
    assert learning_rate(1e-3, "poly", 5, 10) == pytest.approx(1e-3 * 0.5**0.9, rel=1e-12)
    seen: list[float] = []
    real_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    data = make_dataset(tmp_path / "data", counts=(("train", 8), ("val", 2)))
    common = dict(data=data, width=1 / 16, batch_size=4, size=32, lr=1e-3, progress=False, epochs=3)
    train_fcn(FCNTrainOptions(out=tmp_path / "poly", lr_policy="poly", **common))
    assert seen == pytest.approx([1e-3 * (1 - i / 6) ** 0.9 for i in range(6)], rel=1e-12)
    seen.clear()
    train_fcn(FCNTrainOptions(out=tmp_path / "fixed", **common))
    assert seen == [1e-3] * 6
    with pytest.raises(ConfigError, match="--lr-policy must be one of fixed, poly, got 'step'"):
        train_fcn(FCNTrainOptions(out=tmp_path / "bad", lr_policy="step", **common))
    assert not (tmp_path / "bad").exists()


def test_issue23_fcn_train_never_writes_into_a_users_folder(tmp_path):
    root = make_dataset(tmp_path / "toy", counts=(("train", 2),))
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.json").write_text("my own config")
    (user / "log.jsonl").write_text("my own log\n")
    opts = FCNTrainOptions(data=root, out=user, width=1 / 32, epochs=1, size=SIZE, classes="manifest", photo="A", progress=False)
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"holds no p2ptools scorer"):
            train_fcn(dataclasses.replace(opts, overwrite=overwrite))
    assert (user / "config.json").read_text() == "my own config" and (user / "log.jsonl").read_text() == "my own log\n"
    with pytest.raises(ConfigError, match="is inside the input"):
        train_fcn(dataclasses.replace(opts, out=root / "fcn"))
    assert not (root / "fcn").exists()
