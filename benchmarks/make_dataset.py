"""Benchmark: dataset building, in one command.

1. The ``cityscapes`` builder against a baseline written like the pix2pix reference preparation
   script (one process, PIL: open the photo and the color label, resize both to 256x256 with PIL's
   default bicubic filter, paste side by side, save JPEG), on a generated Cityscapes tree at the
   full 2048x1024 size (photos with smooth, photo-like content; labelIds and RGBA color PNGs drawn
   from random polygons). Generation is not timed. Reported: frames/s of each, and the ratio.
   Ours does more per frame (label rendering, a train-id PNG, checksums, a journal, a manifest).
2. The HED post-processing alone (:func:`p2ptools.edges.postprocess.postprocess_hed`: NMS, threshold,
   thinning, small-component removal, inversion) in images/s at 256x256, and the projected time for
   the 50,025 UT-Zappos50K images.

    python benchmarks/make_dataset.py [--frames 100] [--workers 2] [--repeats 2] [--format png] [--json out.json]

Ours writes PNG pairs by default (the builder's default: B is a label map); the baseline JPEG.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ZAPPOS_IMAGES = 50_025
CITIES = ("aachen", "bochum", "bremen", "cologne")


def make_cityscapes(root: Path, frames: int, width: int = 2048, height: int = 1024) -> None:
    """leftImg8bit/train/<city>/..._leftImg8bit.png and gtFine/train/<city>/..._gtFine_{labelIds,color}.png."""
    from p2ptools.labels import CITYSCAPES

    rng = np.random.default_rng(0)
    color_of = {lid: c for lid, c in zip(CITYSCAPES.label_ids, CITYSCAPES.colors, strict=True)}
    ids_pool = np.array(list(CITYSCAPES.label_ids) + [0, 1, 4], np.uint8)
    png = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    for i in range(frames):
        city = CITIES[i % len(CITIES)]
        stem = f"{city}_{i // len(CITIES):06d}_000019"
        small = rng.integers(0, 255, (height // 32, width // 32, 3), dtype=np.uint8)
        photo = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        photo = cv2.add(photo, rng.integers(0, 12, photo.shape, dtype=np.uint8))  # sensor-like noise
        ids = np.full((height, width), 7, np.uint8)
        for _ in range(25):
            pts = rng.integers([0, 0], [width, height], (6, 2)).astype(np.int32)
            cv2.fillPoly(ids, [cv2.convexHull(pts)], int(rng.choice(ids_pool)))
        lut = np.zeros((256, 4), np.uint8)
        lut[:, 3] = 255
        for lid, c in color_of.items():
            lut[lid, :3] = c
        color = lut[ids]
        left = root / "leftImg8bit" / "train" / city
        gt = root / "gtFine" / "train" / city
        left.mkdir(parents=True, exist_ok=True)
        gt.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(left / f"{stem}_leftImg8bit.png"), photo, png)
        cv2.imwrite(str(gt / f"{stem}_gtFine_labelIds.png"), ids, png)
        cv2.imwrite(str(gt / f"{stem}_gtFine_color.png"), cv2.cvtColor(color, cv2.COLOR_RGBA2BGRA), png)


def baseline(root: Path, out: Path) -> int:
    """Like the reference preparation script: PIL, one process, color label, bicubic, JPEG."""
    from PIL import Image

    out.mkdir(parents=True)
    count = 0
    for photo_path in sorted((root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png")):
        color_path = root / "gtFine" / "train" / photo_path.parent.name / photo_path.name.replace("leftImg8bit.png", "gtFine_color.png")
        photo = Image.open(photo_path).convert("RGB").resize((256, 256))
        label = Image.open(color_path).convert("RGB").resize((256, 256))
        side = Image.new("RGB", (512, 256))
        side.paste(photo, (0, 0))
        side.paste(label, (256, 0))
        count += 1
        side.save(out / f"{count}.jpg", format="JPEG", subsampling=0, quality=100)
    return count


def ours(root: Path, out: Path, workers: int, fmt: str) -> int:
    from p2ptools_datasets.cityscapes import CityscapesBuilder

    from p2ptools.buildkit import BuildOptions

    manifest = CityscapesBuilder().build([root], out, BuildOptions(size=256, workers=workers, format=fmt), progress=False)
    return len(manifest.pairs)


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - start, n


def bench_cityscapes(frames: int, workers: int, repeats: int, fmt: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_cityscapes(tmp / "src", frames)
        print(f"generated {frames} Cityscapes frames (2048x1024) in {time.perf_counter() - t0:.1f} s (not timed)")
        times: dict[str, list[float]] = {"baseline": [], "ours": [], "ours_1_worker": []}
        for r in range(repeats):  # interleaved, so load changes hit both alike
            for key, run in (("baseline", lambda o: baseline(tmp / "src", o)), ("ours", lambda o: ours(tmp / "src", o, workers, fmt)),
                             ("ours_1_worker", lambda o: ours(tmp / "src", o, 1, fmt))):  # fmt: skip
                out = tmp / f"{key}-{r}"
                seconds, n = timed(run, out)
                assert n == frames, (key, n)
                times[key].append(seconds)
                shutil.rmtree(out)
        best = {k: min(v) for k, v in times.items()}
        result = {
            "frames": frames,
            "size": [2048, 1024],
            "workers": workers,
            "ours_format": fmt,
            "cpu_count": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "seconds": times,
            "baseline_fps": frames / best["baseline"],
            "ours_fps": frames / best["ours"],
            "ours_1_worker_fps": frames / best["ours_1_worker"],
            "median_ratio": statistics.median(times["baseline"]) / statistics.median(times["ours"]),
        }
        result["ratio"] = result["ours_fps"] / result["baseline_fps"]
        result["ratio_1_worker"] = result["ours_1_worker_fps"] / result["baseline_fps"]
        return result


def bench_postprocess(images: int) -> dict | None:
    try:
        from p2ptools.edges.postprocess import postprocess_hed
    except ImportError as exc:
        print(f"skipping the HED post-processing benchmark: p2ptools.edges.postprocess.postprocess_hed is not available ({exc})")
        return None
    rng = np.random.default_rng(0)
    maps = []
    for _ in range(8):  # HED-like maps: soft, blurred contours of random shapes
        canvas = np.zeros((256, 256), np.float32)
        for _ in range(6):
            pts = rng.integers(16, 240, (5, 2)).astype(np.int32)
            cv2.polylines(canvas, [pts], True, float(rng.uniform(0.5, 1.0)), 2)
        canvas = cv2.GaussianBlur(canvas, (0, 0), 2.0)
        maps.append(np.clip(canvas / max(canvas.max(), 1e-6) + rng.uniform(0, 0.05, canvas.shape).astype(np.float32), 0, 1))
    postprocess_hed(maps[0], 256)  # warm-up
    start = time.perf_counter()
    for i in range(images):
        out = postprocess_hed(maps[i % len(maps)], 256)
    seconds = time.perf_counter() - start
    assert out.shape == (256, 256) and out.dtype == np.uint8
    ips = images / seconds
    return {"images": images, "seconds": seconds, "images_per_s": ips, "zappos_images": ZAPPOS_IMAGES,
            "projected_zappos_s": ZAPPOS_IMAGES / ips, "processes": 1}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="Generated Cityscapes frames (>= 100 for the report).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--edge-images", type=int, default=200)
    parser.add_argument("--format", default="png", choices=("png", "jpg"), help="Our pair format (png: the builder's default).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    city = bench_cityscapes(args.frames, args.workers, args.repeats, args.format)
    print(f"cityscapes, {city['frames']} frames at 2048x1024 -> 256x256 (best of {args.repeats}, load {city['load_avg_1m']:.1f}):")
    print(f"  baseline (reference-like, PIL, 1 process): {city['baseline_fps']:.2f} frames/s")
    print(f"  ours ({args.workers} workers, {args.format}):                {city['ours_fps']:.2f} frames/s  ratio {city['ratio']:.2f}x")
    print(f"  ours (1 worker, {args.format}):                     {city['ours_1_worker_fps']:.2f} frames/s  ratio {city['ratio_1_worker']:.2f}x")
    edges = bench_postprocess(args.edge_images)
    if edges is not None:
        print(f"HED post-processing at 256x256: {edges['images_per_s']:.1f} images/s (1 process); "
              f"projected {edges['projected_zappos_s'] / 60:.1f} min for {ZAPPOS_IMAGES} Zappos images")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"cityscapes": city, "hed_postprocess": edges}, indent=1) + "\n")


if __name__ == "__main__":
    main()
