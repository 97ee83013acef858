"""Fixtures of the evaluator tests: a fake scorer with the real one's interface, tiny Cityscapes
trees, results folders and aligned datasets (all 16-64 px)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from p2ptools.imageio import write_image
from p2ptools.labels import CITYSCAPES, ClassTable
from p2ptools.pairs import FORMAT_ID, Manifest, PairRecord, write_pair


class FakeScorer:
    """Predicts by nearest class color after a nearest resize to the label size (black -> "no class" 19).

    A result image that is the rendering of train ids at the label size is predicted exactly.
    """

    def __init__(self, classes: ClassTable = CITYSCAPES) -> None:
        self.classes = classes
        self.calls: list[tuple[int, tuple[int, int]]] = []

    def predict(self, images, label_size):
        self.calls.append((len(images), tuple(label_size)))
        out = []
        for image in images:
            big = cv2.resize(image, (label_size[1], label_size[0]), interpolation=cv2.INTER_NEAREST)
            pred = self.classes.decode_colors(big)
            pred[pred == 255] = self.classes.num_classes  # black: the "20th channel"
            out.append(pred)
        return np.stack(out).astype(np.uint8)


@pytest.fixture
def fake_scorer():
    return FakeScorer()


def naive_hist(pairs, num_classes):
    """Independent confusion matrix: python loops over classes, extra last column = "no class"."""
    hist = np.zeros((num_classes, num_classes + 1), np.int64)
    for gt, pred in pairs:
        for g in range(num_classes):
            row = pred[gt == g]
            for p in range(num_classes):
                hist[g, p] += int((row == p).sum())
            hist[g, num_classes] += int((row >= num_classes).sum())
    return hist


def frame(i: int) -> str:
    return f"frankfurt_000000_{i:06d}"


def random_train_ids(rng, shape, ignore_frac=0.1):
    ids = rng.integers(0, 19, shape).astype(np.uint8)
    ids[rng.random(shape) < ignore_frac] = 255
    return ids


def train_to_label_ids(train_ids):
    """Inverse map (train id -> Cityscapes labelId; 255 -> 0 'unlabeled')."""
    lut = np.zeros(256, np.uint8)
    for t, lid in enumerate(CITYSCAPES.label_ids):
        lut[t] = lid
    return lut[train_ids]


def make_cityscapes(root: Path, gts: dict[str, np.ndarray], split: str = "val") -> Path:
    for name, train_ids in gts.items():
        city = name.split("_")[0]
        write_image(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", train_to_label_ids(train_ids))
    return root


def make_results(folder: Path, preds: dict[str, np.ndarray], *, suffix: str = "_leftImg8bit") -> Path:
    """Result images: the class colors of ``preds`` (19 -> black, i.e. "no class")."""
    for name, pred in preds.items():
        write_image(folder / f"{name}{suffix}.png", CITYSCAPES.render(np.where(pred >= 19, 255, pred).astype(np.uint8)))
    return folder


@pytest.fixture
def scene(tmp_path):
    """3 frames: Cityscapes gt (32x48 labelIds), predictions (with 'no class' pixels), results, real photos."""
    rng = np.random.default_rng(0)
    gts, preds, photos = {}, {}, {}
    for i in range(3):
        gt = random_train_ids(rng, (32, 48))
        pred = np.where(rng.random((32, 48)) < 0.6, gt, rng.integers(0, 20, (32, 48))).astype(np.uint8)
        pred[gt == 255] = rng.integers(0, 19, int((gt == 255).sum()))
        pred[:, :2] = 19
        gts[frame(i)], preds[frame(i)] = gt, pred
        photos[frame(i)] = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    make_cityscapes(tmp_path / "cs", gts)
    make_results(tmp_path / "results", preds)
    real = tmp_path / "real"
    for name, photo in photos.items():
        write_image(real / f"{name}_leftImg8bit.png", photo)
    return {"root": tmp_path, "cs": tmp_path / "cs", "results": tmp_path / "results", "real": real, "gts": gts, "preds": preds, "photos": photos}


def make_aligned_dataset(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]], split: str = "test", labels: dict[str, np.ndarray] | None = None, sources: dict[str, list[str]] | None = None) -> Path:
    records = []
    for name, (a, b) in pairs.items():
        digest = write_pair(root / split / f"{name}.png", a, b)
        extras = {}
        if labels is not None:
            write_image(root / "labels" / split / f"{name}.png", labels[name])
            extras["labels"] = {"file": f"labels/{split}/{name}.png", "sha256": "x"}
        records.append(PairRecord(split, name, f"{split}/{name}.png", (sources or {}).get(name, [name]), digest, extras))
    Manifest({"name": "test", "version": "1"}, {}, ["<test>"], [16, 16], "png", records, extras={"class_table": CITYSCAPES.to_dict()}, format=FORMAT_ID).write(root)
    return root


def write_translate_json(folder: Path, **info) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "translate.json").write_text(json.dumps(info))


@pytest.fixture
def kit():
    """The helpers above, for tests (conftest modules are not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        FakeScorer=FakeScorer, naive_hist=naive_hist, frame=frame, random_train_ids=random_train_ids,
        train_to_label_ids=train_to_label_ids, make_cityscapes=make_cityscapes, make_results=make_results,
        make_aligned_dataset=make_aligned_dataset, write_translate_json=write_translate_json,
    )


@pytest.fixture(autouse=True)
def _color_cache(tmp_path_factory, monkeypatch):
    """Keep the Lab color-table cache out of the home folder (one cache for the whole session)."""
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path_factory.getbasetemp() / "p2ptools-cache"))
