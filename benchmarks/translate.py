"""Translation speed on this machine's CPU: PyTorch eager vs channels_last vs onnxruntime, and tiled
vs whole-image translation of a large image (time and peak memory), in one command.

1. ``unet_256`` (ngf 64, batch norm, eval mode: the deterministic graph all three run) at 256x256,
   batch 1 and 8: images/s of PyTorch eager (NCHW), PyTorch with channels_last weights and inputs,
   and onnxruntime on the file ``p2ptools export`` writes (CPU provider), each as a ratio to eager.
   Each figure is the best of ``--repeats`` timed batches after one warm-up batch.
2. One ``--large`` x ``--large`` image (2048 by default) through ``Pix2PixModel.translate`` whole and
   with ``translate_tiled`` (``--tile``, ``--overlap``, batch ``--tile-batch``), each in a fresh
   process: wall time and peak resident memory (``ru_maxrss``) of that process.

Usage: ``python benchmarks/translate.py [--repeats 3] [--threads 2] [--large 2048] [--tile 512]
[--overlap 128] [--json PATH]``. Weights are random (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from p2ptools_pix2pix.model import Pix2PixModel
from p2ptools_pix2pix.networks import define_G
from p2ptools_pix2pix.options import Pix2PixOptions


def make_model(ngf: int = 64) -> Pix2PixModel:
    torch.manual_seed(0)
    options = Pix2PixOptions(netG="unet_256", ngf=ngf)
    return Pix2PixModel(define_G("unet_256", 3, 3, ngf, "batch", True), options, torch.device("cpu"), eval_mode=True)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def backends(args: argparse.Namespace) -> list[dict]:
    import onnxruntime as ort

    from p2ptools.export.writer import write_onnx

    model = make_model()
    graph = model.graph()
    eager = graph.module
    last = make_model().graph().module.to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unet_256.onnx"
        write_onnx(graph, path, model.size_multiple, 17, {})
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        rows = []
        for batch in (1, 8):
            x = torch.rand(batch, 3, 256, 256) * 2 - 1
            xl, xn = x.to(memory_format=torch.channels_last), x.numpy()
            with torch.inference_mode():
                t_eager = best_time(lambda: eager(x), args.repeats)
                t_last = best_time(lambda: last(xl), args.repeats)
                y, yl = eager(x).numpy(), last(xl).numpy()
            t_ort = best_time(lambda: sess.run(None, {"input": xn}), args.repeats)
            y_ort = sess.run(None, {"input": xn})[0]
            rows.append({"batch": batch, "eager_ips": batch / t_eager, "channels_last_ips": batch / t_last, "onnxruntime_ips": batch / t_ort,
                         "max_diff_channels_last": float(np.abs(yl - y).max()), "max_diff_onnxruntime": float(np.abs(y_ort - y).max())})
    return rows


def large_child(mode: str, args: argparse.Namespace) -> None:
    """In a fresh process: translate one image whole or tiled; print seconds and peak RSS (MiB)."""
    from p2ptools.tiling import Tiling, translate_tiled

    torch.set_num_threads(args.threads)
    model = make_model()
    image = np.random.default_rng(0).integers(0, 256, (args.large, args.large, 3), dtype=np.uint8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if mode == "whole":
        out = model.translate([image])[0]
    else:
        out = translate_tiled(image, lambda tiles, maps: model.translate(tiles), Tiling(args.tile, args.overlap, model.size_multiple),
                              batch_size=args.tile_batch)
    seconds = time.perf_counter() - start
    assert out.shape == image.shape
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_rss_mib": peak, "rss_before_mib": base}))


def large(args: argparse.Namespace) -> list[dict]:
    rows = []
    for mode in ("whole", "tiled"):
        command = [sys.executable, __file__, "--child", mode, "--large", str(args.large), "--tile", str(args.tile), "--overlap",
                   str(args.overlap), "--tile-batch", str(args.tile_batch), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--large", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--tile-batch", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=("whole", "tiled"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        large_child(args.child, args)
        return
    torch.set_num_threads(args.threads)
    rows = backends(args)
    print(f"unet_256 ngf 64, 256x256, eval mode, {args.threads} threads, best of {args.repeats}")
    print("| batch | eager img/s | channels_last img/s (ratio) | onnxruntime img/s (ratio) | max diff cl / ort |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['eager_ips']:.2f} | {r['channels_last_ips']:.2f} ({r['channels_last_ips'] / r['eager_ips']:.2f}x) | "
              f"{r['onnxruntime_ips']:.2f} ({r['onnxruntime_ips'] / r['eager_ips']:.2f}x) | "
              f"{r['max_diff_channels_last']:.1e} / {r['max_diff_onnxruntime']:.1e} |")
    big = large(args)
    whole, tiled = big
    print(f"\n{args.large}x{args.large} image, unet_256: whole vs --tile {args.tile} --overlap {args.overlap} (tile batch {args.tile_batch})")
    print("| mode | seconds | peak RSS MiB |")
    print("|---|---|---|")
    for r in big:
        print(f"| {r['mode']} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} |")
    print(f"tiled / whole: time {tiled['seconds'] / whole['seconds']:.2f}x, peak RSS {tiled['peak_rss_mib'] / whole['peak_rss_mib']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"backends": rows, "large": big}, indent=1))


if __name__ == "__main__":
    main()
