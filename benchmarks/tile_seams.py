"""Seam error of tiled translation, per normalisation, on trained tiny runs (README "Translating
large images").

Trains small generators on synthetic street scenes (label colours -> photo, 64 px crops of 256 px
scenes): unet_64 with batch norm, unet_64 with instance norm and resnet_6blocks with batch norm
(ngf 16), then translates one 1024 px scene whole and in tiles (``--tile``, ``--overlap``) and
reports, per test-time semantics, the max and mean |tiled - whole| (uint8 levels, the largest over
the channels) in tile interiors (pixels one tile covers) and along the seams (pixels several tiles
cover, where they are blended). Saves a picture ``--picture``: input | whole | tiled | 4 x |diff|,
of the batch-norm U-Net in eval mode.

Usage: ``python benchmarks/tile_seams.py [--tile 256] [--overlap 64] [--epochs 8] [--picture tiled_1024.png]``
(about 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from p2ptools_datasets.synthetic import render_scene
from p2ptools_pix2pix.options import Pix2PixOptions

from p2ptools import registry
from p2ptools.imageio import write_image
from p2ptools.labels import CITYSCAPES
from p2ptools.pairs import join_pair
from p2ptools.plugin import LoadOptions, TrainRequest
from p2ptools.tiling import Tiling, coverage, seam_error, translate_tiled

LABELS = np.array(CITYSCAPES.colors, dtype=np.uint8)  # train id -> label colour


def scene(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(label colours, photo) of one synthetic scene."""
    photo, ids = render_scene(np.random.default_rng(seed), size)
    return LABELS[ids], photo


def make_data(root: Path, count: int, size: int) -> Path:
    for split, n, offset in (("train", count, 0), ("val", 2, 10_000)):
        for i in range(n):
            a, b = scene(offset + i, size)
            write_image(root / split / f"{i:03d}.png", join_pair(a, b))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--scenes", type=int, default=32)
    parser.add_argument("--size", type=int, default=1024, help="side of the translated scene")
    parser.add_argument("--picture", type=Path, default=Path("tiled_1024.png"))
    args = parser.parse_args()
    torch.manual_seed(0)
    plugin = registry.load("models", "pix2pix")()
    image = scene(99, args.size)[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data", args.scenes, 256)
        for netg, norm in (("unet_64", "batch"), ("unet_64", "instance"), ("resnet_6blocks", "batch")):
            options = Pix2PixOptions(netG=netg, norm=norm, netD="patch16", ngf=16, ndf=16, load_size=256, crop_size=64, epochs=args.epochs,
                                     epochs_decay=0, batch_size=4, workers=0, device="cpu", log_every=50)
            run = plugin.train(options, TrainRequest(data, Path(tmp) / f"{netg}-{norm}", progress=False))
            for eval_mode in ((True, False) if norm == "batch" else (False,)):
                model = registry.load_run(run, LoadOptions(eval_mode=eval_mode))
                tiling = Tiling(args.tile, args.overlap, model.size_multiple)
                whole = model.translate([image])[0]
                tiled = translate_tiled(image, lambda tiles, maps: model.translate(tiles), tiling, batch_size=4)
                semantics = ("running statistics (--eval-mode)" if eval_mode else "batch statistics + dropout (default)") \
                    if norm == "batch" else "instance norm"
                rows.append((netg, semantics, seam_error(tiled, whole, coverage(*image.shape[:2], tiling))))
                if netg == "unet_64" and norm == "batch" and eval_mode:
                    diff = np.clip(4 * np.abs(tiled.astype(int) - whole), 0, 255).astype(np.uint8)
                    write_image(args.picture, np.concatenate([image, whole, tiled, diff], axis=1))
    print(f"{args.size}x{args.size} scene, --tile {args.tile} --overlap {args.overlap}, {args.epochs} epochs on {args.scenes} scenes")
    print("| generator | test-time norm | interior max | interior mean | seam max | seam mean |")
    print("|---|---|---|---|---|---|")
    for netg, semantics, e in rows:
        print(f"| {netg} | {semantics} | {e['interior_max']:.0f} | {e['interior_mean']:.2f} | {e['seam_max']:.0f} | {e['seam_mean']:.2f} |")
    print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()
