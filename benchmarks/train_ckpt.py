"""What checkpoints cost: wall time of one short pix2pix run under several checkpoint policies.

All runs train the same networks on the same data in this process (``trainer.train``, no progress
bar), alternating policies over ``--repeats`` rounds, keeping each policy's fastest run:

- ``end_only``: the full state written once, at the end (``--checkpoint-minutes`` 1e6), the floor;
- ``default``: the default policy (``--checkpoint-minutes 10``, background writer);
- ``every_epoch_background``: the full state at every epoch end (``--checkpoint-minutes 0``), written
  by the background writer;
- ``every_epoch_sync``: the same, written on the training thread (the behaviour before the
  background writer).

Reported: seconds per run, the ratio of each to ``end_only`` (the issue's bar: ``default`` within
1.10), and the bytes of one full checkpoint. The defaults mirror the demo's case that motivated the
writer (unet_64 at ngf 64: 117 MB of G plus 234 MB of optimiser state per checkpoint; 24 pairs,
6 steps an epoch).

Usage: ``python benchmarks/train_ckpt.py [--pairs 24] [--batch-size 4] [--epochs 3] [--size 64]
[--ngf 64] [--repeats 3] [--threads 1] [--device cpu] [--json PATH]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2ptools_pix2pix.options import Pix2PixOptions  # noqa: E402
from p2ptools_pix2pix.trainer import train  # noqa: E402
from train_step import synthetic_dataset  # noqa: E402

from p2ptools.training import saving  # noqa: E402

POLICIES = {
    "end_only": (1e6, True),
    "default": (Pix2PixOptions.checkpoint_minutes, True),
    "every_epoch_background": (0.0, True),
    "every_epoch_sync": (0.0, False),
}


class _SyncWriter(saving.BackgroundWriter):
    def __init__(self, background: bool = True) -> None:
        super().__init__(background=False)


def run_once(options: Pix2PixOptions, data: Path, run_dir: Path, background: bool) -> float:
    """Seconds of one training run into a fresh ``run_dir``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    writer_class = saving.BackgroundWriter
    if not background:
        saving.BackgroundWriter = _SyncWriter  # the Checkpointer builds its writer from this name
    try:
        start = time.perf_counter()
        train(options, data, run_dir, progress=False)
        return time.perf_counter() - start
    finally:
        saving.BackgroundWriter = writer_class


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24, help="synthetic training pairs")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (constant lr)")
    parser.add_argument("--size", type=int, default=64, help="crop size = U-Net size (unet_<size>)")
    parser.add_argument("--ngf", type=int, default=64, help="generator and discriminator width")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the policies; the fastest run of each is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> dict:

    with tempfile.TemporaryDirectory(prefix="p2p-ckpt-bench-") as tmp:
        data = synthetic_dataset(Path(tmp) / "data", args.pairs, args.size)
        (data / "val").mkdir()
        shutil.copy(next((data / "train").iterdir()), data / "val" / "00000.jpg")
        base = Pix2PixOptions(netG=f"unet_{args.size}", netD="patch70", ngf=args.ngf, ndf=args.ngf, load_size=args.size,
                              crop_size=args.size, epochs=args.epochs, epochs_decay=0, batch_size=args.batch_size, workers=0,
                              device=args.device, log_every=10_000, sample_images=1, val_limit=1)
        seconds: dict[str, float] = {}
        checkpoint_bytes = 0
        for _ in range(args.repeats):
            for name, (minutes, background) in POLICIES.items():
                run_dir = Path(tmp) / name
                took = run_once(dataclasses.replace(base, checkpoint_minutes=minutes), data, run_dir, background)
                seconds[name] = min(seconds.get(name, float("inf")), took)
                checkpoint_bytes = sum(p.stat().st_size for p in (run_dir / "checkpoints").iterdir())
    steps = args.epochs * -(-args.pairs // args.batch_size)
    report = {
        "config": {**vars(args), "json": str(args.json) if args.json else None, "steps": steps,
                   "torch_threads": torch.get_num_threads()},
        "checkpoint_bytes": checkpoint_bytes,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "ratio_to_end_only": {k: round(v / seconds["end_only"], 3) for k, v in seconds.items()},
    }
    print(f"{steps} steps, {args.epochs} epochs, one checkpoint = {checkpoint_bytes / 1e6:.1f} MB")
    print(f"{'policy':<24} {'seconds':>8} {'ratio':>6}")
    for name, value in seconds.items():
        print(f"{name:<24} {value:>8.2f} {report['ratio_to_end_only'][name]:>6.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
