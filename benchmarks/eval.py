"""Evaluator benchmarks, each against a baseline run in the same command.

1. Confusion-matrix accumulation (p2ptools.eval.confusion.accumulate: one bincount over
   ``gt << 8 | pred``) against a naive per-frame ``np.histogram2d`` over the valid pixels, and against
   the pix2pix reference's masked ``np.bincount(n * gt + pred)`` for context.
2. Lab histograms (p2ptools.eval.color.LabHistogram: 24-bit color table filled lazily) against
   ``skimage.color.rgb2lab`` + ``np.histogram`` per image, on rendered street-scene photos; "cold"
   starts from an empty color table (every new color converted once), "warm" is a second pass.
3. On a GPU: FCN-8s (full width, random weights) images/s at 1024x2048, the protocol's full
   pipeline (256x256 uint8 in, bilinear resize, fp32 TF32 off), against the GPU's measured fp32
   convolution throughput; plus the opt-in TF32 and bf16 modes and their argmax agreement with fp32.
   Skipped cleanly without a GPU.
4. FID feature pass: images/s of pytorch-fid's own ``get_activations`` loop (its dataset, loader and
   InceptionV3, in-network bilinear resize) against ours on the same PNGs (legacy protocol, same
   features to 1e-5; and the clean protocol for its cost), CPU, random weights in the published layout.
5. DRN-D-105 (``--miou drn-d-105``, random weights in the published layout) images/s at 1024x2048:
   the scorer's whole single-scale pipeline (256x512 uint8 in, bilinear upsampling, normalisation,
   log-softmax, argmax) against the bare network forward on a prepared input, on the CPU and, when
   CUDA is present, on the GPU (fp32, TF32 off). ``--drn-only`` runs just this one.

Usage: ``python benchmarks/eval.py [--json PATH] [--quick] [--drn-only] [--drn-images N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from p2ptools.eval import color as color_mod
from p2ptools.eval.color import CHANNELS, LabBins, LabHistogram
from p2ptools.eval.confusion import accumulate, new_hist

C = 19


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


# ---------------------------------------------------------------------------------- confusion


def confusion_frames(count: int, height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    import cv2

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        coarse = rng.integers(0, C, (height // 32, width // 32)).astype(np.uint8)
        gt = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_NEAREST)
        gt[rng.random((height, width)) < 0.1] = 255
        pred = np.where(rng.random((height, width)) < 0.7, gt, rng.integers(0, C + 1, (height, width))).astype(np.uint8)
        pred[gt == 255] = rng.integers(0, C + 1, int((gt == 255).sum()))
        frames.append((gt, pred))
    return frames


def naive_histogram2d(frames) -> np.ndarray:
    hist = np.zeros((C, C + 1), np.int64)
    for gt, pred in frames:
        valid = gt != 255
        p = np.minimum(pred[valid], C)
        h, _, _ = np.histogram2d(gt[valid], p, bins=(C, C + 1), range=((0, C), (0, C + 1)))
        hist += h.astype(np.int64)
    return hist


def reference_bincount(frames) -> np.ndarray:
    """The pix2pix reference's fast_hist, with the 20th channel folded into an extra column."""
    hist = np.zeros((C, C + 1), np.int64)
    for gt, pred in frames:
        k = gt < C
        a = gt[k].astype(np.int64)
        b = np.minimum(pred[k], C).astype(np.int64)
        hist += np.bincount((C + 1) * a + b, minlength=C * (C + 1)).reshape(C, C + 1)
    return hist


def ours_confusion(frames) -> np.ndarray:
    hist = new_hist(C)
    for gt, pred in frames:
        accumulate(hist, gt, pred, C)
    return hist


def bench_confusion(count: int, height: int, width: int, repeat: int) -> dict:
    frames = confusion_frames(count, height, width)
    ref = naive_histogram2d(frames)
    assert np.array_equal(ours_confusion(frames), ref) and np.array_equal(reference_bincount(frames), ref), "methods disagree"
    mpix = count * height * width / 1e6
    t_ours = best_of(lambda: ours_confusion(frames), repeat)
    t_naive = best_of(lambda: naive_histogram2d(frames), max(1, repeat // 2))
    t_ref = best_of(lambda: reference_bincount(frames), repeat)
    return {
        "frames": count, "size": [height, width],
        "ours_mpix_s": mpix / t_ours, "naive_histogram2d_mpix_s": mpix / t_naive, "reference_bincount_mpix_s": mpix / t_ref,
        "ratio_vs_naive": t_naive / t_ours, "ratio_vs_reference_bincount": t_ref / t_ours,
    }  # fmt: skip


# ---------------------------------------------------------------------------------- Lab


def scene_photos(count: int, size: int) -> list[np.ndarray]:
    try:
        from p2ptools_datasets.synthetic import render_scene
    except ImportError:  # fall back to smooth random images
        render_scene = None
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        if render_scene is not None:
            out.append(render_scene(rng, size)[0])
        else:
            import cv2

            small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            noisy = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR).astype(int) + rng.integers(-6, 7, (size, size, 3))
            out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def bench_lab(count: int, size: int) -> dict:
    from skimage.color import rgb2lab

    images = scene_photos(count, size)
    bins = LabBins()

    def baseline():
        counts = {ch: np.zeros(n, np.int64) for ch, n in zip(CHANNELS, bins.counts(), strict=True)}
        for image in images:
            lab = rgb2lab(image)
            for k, (ch, n, (lo, hi)) in enumerate(zip(CHANNELS, bins.counts(), bins.ranges(), strict=True)):
                counts[ch] += np.histogram(np.clip(lab[..., k], lo, hi), bins=n, range=(lo, hi))[0]
        return counts

    def ours():
        hist = LabHistogram(bins)
        for image in images:
            hist.update(image)
        return hist.counts

    t = time.perf_counter()
    ref = baseline()
    t_base = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as cache:
        os.environ[color_mod.CACHE_ENV] = cache  # a private, empty on-disk table cache
        color_mod._TABLES.clear()  # cold: an empty color table
        t = time.perf_counter()
        cold = ours()
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        warm = ours()
        t_warm = time.perf_counter() - t
        color_mod.save_color_tables()
        color_mod._TABLES.clear()  # a new process: the table comes from the disk cache
        t = time.perf_counter()
        cached = ours()
        t_cached = time.perf_counter() - t
    for ch in CHANNELS:
        for got in (cold, warm, cached):
            assert np.array_equal(got[ch], ref[ch]), f"{ch} histograms differ"
    unique = len(np.unique(np.concatenate([color_mod.color_codes(im) for im in images])))
    mpix = count * size * size / 1e6
    return {
        "images": count, "size": size, "unique_colors": unique,
        "ours_cold_mpix_s": mpix / t_cold, "ours_warm_mpix_s": mpix / t_warm, "baseline_mpix_s": mpix / t_base,
        "ours_disk_cached_mpix_s": mpix / t_cached,
        "ratio_cold": t_base / t_cold, "ratio_warm": t_base / t_warm, "ratio_disk_cached": t_base / t_cached,
    }  # fmt: skip


# ---------------------------------------------------------------------------------- GPU


def bench_gpu(images: int, batch: int) -> dict | None:
    """FCN-8s on the GPU at 1024x2048, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return bench_fcn("cuda", (1024, 2048), images, batch, conv_batch=8)


def bench_fcn(device: str, label_size: tuple[int, int], images: int, batch: int, conv_batch: int) -> dict:
    """Scorer throughput (fp32 TF32 off, TF32, bf16) against the device's fp32 conv throughput."""
    import torch

    from p2ptools.eval.scorer import (
        CITYSCAPES_MEAN_BGR,
        Scorer,
        ScorerConfig,
        fp32_mode,
    )
    from p2ptools.labels import CITYSCAPES
    from p2ptools.nets.fcn8s import FCN8s

    torch.manual_seed(0)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    # the device's fp32 convolution throughput (TF32 off): a VGG-like 3x3 conv, 512 -> 512 channels
    x = torch.randn(conv_batch, 512, 128, 256, device=dev).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(512, 512, 3, padding=1).to(dev).to(memory_format=torch.channels_last)
    with torch.inference_mode(), fp32_mode(False):
        for _ in range(2):
            conv(x)
        sync()
        t = time.perf_counter()
        for _ in range(5):
            conv(x)
        sync()
        conv_flops = 5 * 2 * conv_batch * 512 * 512 * 9 * 128 * 256 / (time.perf_counter() - t)
    del x, conv
    net = FCN8s(20, 1.0)
    for m in net.modules():  # random weights with sane scales (no checkpoint needed)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight)
    config = ScorerConfig(20, 1.0, CITYSCAPES, CITYSCAPES_MEAN_BGR, {"file": "random"})
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(batch)]
    macs = [0]  # multiply-adds of one forward pass at label_size, counted with hooks

    def hook(mod, inp, out):
        k = mod.weight.shape[2] * mod.weight.shape[3]
        if isinstance(mod, torch.nn.ConvTranspose2d):
            macs[0] += inp[0].numel() * mod.weight.shape[1] * k
        else:
            macs[0] += out.numel() * mod.weight.shape[1] * k

    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    results: dict = {"conv_fp32_tflops": conv_flops / 1e12, "device": name, "size": list(label_size)}
    reference = None
    for mode, precision, tf32 in (("fp32", "fp32", False), ("tf32", "fp32", True), ("bf16", "bf16", False)):
        scorer = Scorer(net, config, Path("random"), device=device, precision=precision, tf32=tf32, batch_size=batch)
        if mode == "fp32":
            handles = [m.register_forward_hook(hook) for m in scorer.net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
            scorer.predict(inputs[:1], label_size)
            for h in handles:
                h.remove()
            results["fcn_gmacs_per_image"] = macs[0] / 1e9
        pred = scorer.predict(inputs, label_size)  # warm-up (cuDNN autotuning)
        sync()
        t = time.perf_counter()
        done = 0
        while done < images:
            pred = scorer.predict(inputs, label_size)
            done += batch
        sync()
        rate = done / (time.perf_counter() - t)
        entry = {"images_s": rate, "seconds_for_500": 500 / rate}
        if mode == "fp32":
            reference = pred
            entry["fraction_of_conv_fp32"] = rate * 2 * macs[0] / conv_flops
        else:
            entry["argmax_agreement_with_fp32"] = float((pred == reference).mean())
        results[mode] = entry
    return results

# ---------------------------------------------------------------------------------- FID features


def fid_images(folder: Path, count: int, size: int = 256) -> list[Path]:
    """``count`` smooth random RGB PNGs of size x size (different sizes would not batch in pytorch-fid)."""
    import cv2

    from p2ptools.imageio import write_image

    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2.0)
        files.append(folder / f"{i:05d}.png")
        write_image(files[-1], image)
    return files


def bench_fid(count: int, batch: int) -> dict:
    """Inception pool features of the same PNGs: pytorch-fid's own get_activations (its dataset,
    DataLoader and InceptionV3, legacy resize) against ours (decode, legacy resize, channels_last
    batches). Random weights in the published file's layout (tests/metric_weights.py): nothing downloads."""
    import pytorch_fid.inception as pfi
    import torch
    from pytorch_fid.fid_score import get_activations

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from metric_weights import make_inception_file

    from p2ptools.imageio import read_image
    from p2ptools.metrics.inception import FeatureExtractor, features_of_files, load_inception

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = make_inception_file(tmp / "pt_inception-2015-12-05-6726825d.pth")
        files = fid_images(tmp / "images", count)
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = lambda *a, **k: torch.load(weights, weights_only=True)
        try:
            reference = pfi.InceptionV3([3]).eval()
        finally:
            pfi.load_state_dict_from_url = original
        net, _ = load_inception(weights)
        ours = {p: FeatureExtractor(net, p) for p in ("legacy", "clean")}

        def baseline():
            return get_activations([str(f) for f in files], reference, batch_size=batch, dims=2048, device="cpu", num_workers=0)

        def ours_pass(protocol):
            return features_of_files(files, ours[protocol], batch_size=batch, threads=2)

        with torch.inference_mode():
            ours["legacy"]([read_image(files[0])])  # warm-up (oneDNN primitives)
            reference(torch.zeros(1, 3, 64, 64))
        t = time.perf_counter()
        theirs = baseline()
        t_base = time.perf_counter() - t
        t = time.perf_counter()
        mine = ours_pass("legacy")
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        ours_pass("clean")
        t_clean = time.perf_counter() - t
    return {
        "images": count, "batch": batch, "threads": torch.get_num_threads(),
        "pytorch_fid_images_s": count / t_base, "ours_legacy_images_s": count / t_ours, "ours_clean_images_s": count / t_clean,
        "ratio_legacy": t_base / t_ours, "max_abs_feature_difference": float(np.abs(mine - theirs).max()),
    }  # fmt: skip


# ---------------------------------------------------------------------------------- main


# ---------------------------------------------------------------------------------- DRN-D-105


def bench_drn(device: str, images: int, size: tuple[int, int] = (1024, 2048)) -> dict:
    """DRN-D-105 scorer pipeline vs the bare network, ``images`` generated 256x512 images each."""
    import torch

    from p2ptools.eval.drn_scorer import DRNScorer
    from p2ptools.eval.scorer import resize_for_scoring
    from p2ptools.eval.scorers import ScorerOptions
    from p2ptools.nets.drn import DRNSeg

    torch.manual_seed(0)
    scorer = DRNScorer(DRNSeg(19), Path("random-weights.pth"), ScorerOptions(device=device, batch_size=1))
    rng = np.random.default_rng(0)
    generated = [rng.integers(0, 256, (256, 512, 3), dtype=np.uint8) for _ in range(images)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):  # cuDNN's first-call algorithm search is not the steady state
        scorer.predict(generated[:1], size)
    sync()
    start = time.perf_counter()
    scorer.predict(generated, size)
    sync()
    pipeline = time.perf_counter() - start
    x = scorer.preprocess(resize_for_scoring(generated[0], size)[None])
    with torch.inference_mode():
        sync()
        start = time.perf_counter()
        for _ in range(images):
            scorer.logits(x)
        sync()
    network = time.perf_counter() - start
    return {"device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)",
            "images": images, "size_wxh": [size[1], size[0]], "pipeline_images_s": images / pipeline, "network_images_s": images / network,
            "pipeline_over_network": pipeline / network, "seconds_for_500": 500 * pipeline / images}


def drn_rows(drn: dict) -> list[tuple[str, str, str]]:
    rows = []
    for key, entry in drn.items():
        if entry is None:
            rows.append((f"DRN-D-105 on {key}", "skipped", "no CUDA device"))
            continue
        rows.append((f"DRN-D-105 1024x2048 network only, {entry['device']}", f"{entry['network_images_s']:.3f} img/s", ""))
        rows.append((f"DRN-D-105 1024x2048 scorer pipeline, {entry['device']}", f"{entry['pipeline_images_s']:.3f} img/s ({entry['seconds_for_500']:.0f} s / 500)",
                     f"{entry['pipeline_over_network']:.2f}x the network's time"))
    return rows


def bench_drn_devices(images: int) -> dict:
    import torch

    return {"cpu": bench_drn("cpu", images), "gpu": bench_drn("cuda", 5 * images) if torch.cuda.is_available() else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="Also write the numbers here.")
    parser.add_argument("--quick", action="store_true", help="Smaller inputs (a smoke run).")
    parser.add_argument("--gpu-images", type=int, default=48, help="Images per GPU measurement.")
    parser.add_argument("--gpu-batch", type=int, default=4, help="FCN batch size on the GPU.")
    parser.add_argument("--fid-images", type=int, default=100, help="Images of the FID feature pass (about 1 s each on 2 CPU cores).")
    parser.add_argument("--fid-batch", type=int, default=50, help="Batch size of both FID feature passes (pytorch-fid's default: 50).")
    parser.add_argument("--drn-images", type=int, default=2, help="Images per DRN-D-105 measurement on the CPU (about a minute each on 2 cores; x5 on a GPU).")
    parser.add_argument("--drn-only", action="store_true", help="Run only the DRN-D-105 benchmark.")
    args = parser.parse_args(argv)
    if args.drn_only:
        out = {"drn": bench_drn_devices(args.drn_images)}
        for name, value, ratio in drn_rows(out["drn"]):
            print(f"{name:<60}  {value:<28}  {ratio}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=1) + "\n")
        return out
    frames, (h, w), lab_images = (2, (256, 512), 8) if args.quick else (6, (1024, 2048), 48)
    out = {
        "confusion": bench_confusion(frames, h, w, repeat=3),
        "lab": bench_lab(lab_images, 256),
        "gpu": bench_gpu(args.gpu_images, args.gpu_batch),
        "fid": bench_fid(8 if args.quick else args.fid_images, args.fid_batch),
        "drn": bench_drn_devices(1 if args.quick else args.drn_images),
    }
    c, lab = out["confusion"], out["lab"]
    rows = [
        ("confusion: ours (bincount of gt<<8|pred)", f"{c['ours_mpix_s']:.1f} Mpix/s", ""),
        ("confusion: naive np.histogram2d per frame", f"{c['naive_histogram2d_mpix_s']:.1f} Mpix/s", f"ours {c['ratio_vs_naive']:.1f}x"),
        ("confusion: reference masked bincount", f"{c['reference_bincount_mpix_s']:.1f} Mpix/s", f"ours {c['ratio_vs_reference_bincount']:.1f}x"),
        ("Lab: rgb2lab + np.histogram per image", f"{lab['baseline_mpix_s']:.2f} Mpix/s", ""),
        ("Lab: ours, cold color table", f"{lab['ours_cold_mpix_s']:.2f} Mpix/s", f"ours {lab['ratio_cold']:.1f}x"),
        ("Lab: ours, warm color table", f"{lab['ours_warm_mpix_s']:.2f} Mpix/s", f"ours {lab['ratio_warm']:.1f}x"),
        ("Lab: ours, table from the disk cache", f"{lab['ours_disk_cached_mpix_s']:.2f} Mpix/s", f"ours {lab['ratio_disk_cached']:.1f}x"),
    ]
    gpu = out["gpu"]
    if gpu is None:
        rows.append(("FCN-8s on GPU", "skipped", "no CUDA device"))
    else:
        rows.append((f"GPU conv fp32 throughput ({gpu['device']})", f"{gpu['conv_fp32_tflops']:.1f} TFLOP/s", ""))
        for mode in ("fp32", "tf32", "bf16"):
            e = gpu[mode]
            extra = f"{e['fraction_of_conv_fp32']:.0%} of conv fp32" if mode == "fp32" else f"argmax agreement {e['argmax_agreement_with_fp32']:.4f}"
            rows.append((f"FCN-8s 1024x2048 {mode}", f"{e['images_s']:.1f} img/s ({e['seconds_for_500']:.0f} s / 500)", extra))
    f = out["fid"]
    rows += [
        ("FID features: pytorch-fid get_activations", f"{f['pytorch_fid_images_s']:.2f} img/s", ""),
        ("FID features: ours, legacy protocol", f"{f['ours_legacy_images_s']:.2f} img/s", f"ours {f['ratio_legacy']:.2f}x, max abs diff {f['max_abs_feature_difference']:.1e}"),
        ("FID features: ours, clean protocol", f"{f['ours_clean_images_s']:.2f} img/s", ""),
    ]
    rows += drn_rows(out["drn"])
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'throughput':<28}  ratio")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:<28}  {ratio}")
    print(f"(confusion: {c['frames']} frames of {c['size'][1]}x{c['size'][0]}; Lab: {lab['images']} scene photos of {lab['size']}x{lab['size']}, {lab['unique_colors']} distinct colors)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
