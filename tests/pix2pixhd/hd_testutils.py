"""Tiny pix2pixHD datasets: A|B pairs plus label_ids/ and instance_ids/ extras, in the layout the
Cityscapes builder writes with --ids-extras."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from p2p_testutils import make_dataset  # noqa: F401  (re-exported for the RGB-input tests)

from p2ptools.pairs import write_pair

#: colors of the photo half per label id (the target is a function of the label map)
PHOTO_COLORS = np.array([[20, 20, 20], [200, 40, 40], [40, 200, 40], [40, 40, 200], [220, 220, 60]], np.uint8)


def make_label_dataset(root: Path, *, train: int = 4, val: int = 2, height: int = 32, width: int = 64, label_nc: int = 5,
                       seed: int = 0) -> Path:
    """``root/{train,val}/NNN.png`` pairs (A = photo, B = label colors) with label and instance maps."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            labels = np.zeros((height, width), np.uint8)
            inst = np.zeros((height, width), np.uint16)
            for k in range(3):
                y, x = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 12))
                cls = int(rng.integers(1, label_nc))
                labels[y : y + 8, x : x + 12] = cls
                inst[y : y + 8, x : x + 12] = cls * 1000 + k
            photo = PHOTO_COLORS[labels % len(PHOTO_COLORS)]
            shown = np.stack([labels * 50] * 3, axis=2).astype(np.uint8)
            write_pair(root / split / f"{i:03d}.png", photo, shown)
            for kind, image in (("label_ids", labels), ("instance_ids", inst)):
                path = root / kind / split / f"{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), image)
    return root


def random_vgg19_file(path, *, drop: str | None = None, reshape: str | None = None, random: bool = True) -> None:
    """A torchvision vgg19 state dict (its real keys and shapes, built on meta first) of random values."""
    with torch.device("meta"):
        layout = torchvision.models.vgg19().state_dict()
    g = torch.Generator().manual_seed(0)
    make = (lambda shape: torch.randn(shape, generator=g) * 0.05) if random else torch.zeros
    state = {k: make(v.shape) for k, v in layout.items() if k.startswith("features.")}
    state["classifier.6.bias"] = torch.zeros(1000)  # the classifier is ignored (kept small here)
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = torch.zeros(2, 2)
    torch.save(state, path)


def pix2pix_resume_helpers():
    """tests/pix2pix/test_resume.py (its kill/resume helpers), loaded by path under its own name."""
    import importlib.util
    import sys

    name = "p2p_pix2pix_resume_helpers"
    if name not in sys.modules:
        path = Path(__file__).parent.parent / "pix2pix" / "test_resume.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.path.insert(0, str(path.parent))  # it imports its conftest by name
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]
