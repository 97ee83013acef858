"""How far each ``--resize-backend`` is from PIL's bicubic (the reference's resize), on photo-like images.

The photos are the synthetic-scenes builder's street scenes (edges, textures, gradients), each
rendered from its own seed (``render_scene(default_rng(seed), size)``), in the training-time
resizes that matter: 256 -> 286 (the paper's load size), 1024 -> 286 (a large photo), 256x512
halves -> 286x286 (Cityscapes-style halves: the height grows while the width shrinks) and
256 -> 128. Printed per case and backend: the largest difference in gray levels (0-255), the
99.9th and 99th percentiles and the mean, over all pixels and channels. The figures in README.md
and ``--resize-backend``'s help come from ``python benchmarks/resize_fidelity.py`` (about 30 s).

Usage: ``python benchmarks/resize_fidelity.py [--photos 8] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from p2ptools.training.resize import RESIZE_BACKENDS, resize  # noqa: E402
from p2ptools_datasets.synthetic import render_scene  # noqa: E402

#: (name, rendered side, rows kept (None: all), target width and height)
CASES = (("256->286", 256, None, (286, 286)), ("1024->286", 1024, None, (286, 286)),
         ("256x512 halves->286", 512, (128, 384), (286, 286)), ("256->128", 256, None, (128, 128)))


def photo(seed: int, side: int, rows: tuple[int, int] | None) -> np.ndarray:
    """Scene ``seed`` at ``side`` pixels, cut to ``rows`` (a 256x512 half from a 512 scene)."""
    image = render_scene(np.random.default_rng(seed), side)[0]
    return image if rows is None else np.ascontiguousarray(image[rows[0] : rows[1]])


def differences(image: np.ndarray, width: int, height: int, backend: str) -> np.ndarray:
    """Absolute differences (gray levels) between ``backend`` and PIL's bicubic, all pixels and channels."""
    reference = np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC)).astype(np.int16)
    return np.abs(resize(image, width, height, backend).astype(np.int16) - reference).ravel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=8, help="photos per case (1024-px cases use a quarter, at least 1)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = {}
    for name, side, rows, size in CASES:
        count = max(1, args.photos // 4) if side >= 1024 else args.photos
        photos = [photo(seed, side, rows) for seed in range(count)]
        for backend in RESIZE_BACKENDS:
            if backend == "pil":
                continue
            d = np.concatenate([differences(p, *size, backend) for p in photos])
            row = {"max": int(d.max()), "p99.9": float(np.percentile(d, 99.9)), "p99": float(np.percentile(d, 99)),
                   "mean": round(float(d.mean()), 4), "photos": count}
            results[f"{name} {backend}"] = row
            print(f"{name:20s} {backend:12s} max {row['max']:3d}  p99.9 {row['p99.9']:4.1f}  p99 {row['p99']:4.1f}  "
                  f"mean {row['mean']:.3f}  ({count} photos)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
