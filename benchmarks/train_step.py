"""pix2pix training speed against a baseline that follows the reference training step, in one command.

1. Data pipeline alone: ours (OpenCV decode, jitter on uint8 with each ``--resize-backend``, float
   conversion last) against the reference's (PIL open + convert, crop halves, torchvision Resize(load, BICUBIC) -> crop ->
   flip -> ToTensor -> Normalize(0.5, 0.5)), both in one process, one thread: images/s and ratio.
2. Training step, end to end (loading included): ours (``trainer.train_step``: autocast bf16 (or
   fp16 + grad scaler), channels_last, cudnn.benchmark, pinned uint8 batches, optional
   ``--compile``) against the baseline (fp32, NCHW, PIL pipeline through a DataLoader, the same
   networks and initial weights, the reference's update order: G forward; D step on the detached
   fake with loss 0.5 * (BCE(fake, 0) + BCE(real, 1)); G step on BCE(D(fake), 1) + 100 * L1).
   Reported: images/s of both, the ratio, and the loss-curve check: mean unweighted L1 over all
   steps of each run (the first ``--steps``), which must agree within 5%.
3. The epoch loop (``--loop``): the whole ``trainer.train`` (the shared
   :func:`p2ptools.training.epoch_loop.run_epochs`: averaged log lines, the progress bar, the
   checkpoint clock, the stop checks) against a bare loop over the same loader calling the same
   ``train_step`` on the same networks, nothing else, within one epoch (no epoch-end work). Timed
   from the first step's start to the last step's end, alternating the two ``--loop-rounds``
   times; reported: steps/s of both (best round) and the ratio (1.0: the loop costs nothing beyond
   the steps).

Defaults are the paper's configuration: 256x256 crops from 286 (unet_256, patch70, L1+cGAN),
batch 1 and 16 on a GPU, 500 steps. On the CPU use small settings, e.g.
``python benchmarks/train_step.py --size 128 --ngf 32 --steps 20 --workers 1`` (about 1-2 minutes on
2 cores). On the CPU both runs are fp32 NCHW, so the ratio there only reflects the data pipeline
and is expected near 1; the mixed-precision gains are measured on a GPU.

Usage: ``python benchmarks/train_step.py [--data DIR] [--size 256] [--steps 500] [--batch-sizes 1,16]
[--compile] [--json PATH]``; without ``--data`` a synthetic aligned dataset (JPEG pairs, B a smooth
function of A) is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from p2ptools_pix2pix.losses import parse_objective  # noqa: E402
from p2ptools_pix2pix.networks import define_D, define_G  # noqa: E402
from p2ptools_pix2pix.options import Pix2PixOptions  # noqa: E402
from p2ptools_pix2pix.trainer import Nets, to_device, train_step  # noqa: E402

from p2ptools.pairs import iter_split, write_pair  # noqa: E402
from p2ptools.training.data import AlignedPairs, Jitter, ResumableSampler, check_batch, make_loader, to_network_range  # noqa: E402
from p2ptools.training.runtime import resolve_precision  # noqa: E402

# ------------------------------------------------------------------------------------- data

def synthetic_dataset(root: Path, count: int, size: int) -> Path:
    """``count`` JPEG pairs of size x size halves; B = a colour remap + blur of A (learnable)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        a = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        a = np.clip(a.astype(np.int16) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
        b = cv2.GaussianBlur(255 - a[:, :, ::-1], (5, 5), 0)
        write_pair(root / "train" / f"{i:05d}.jpg", a, np.ascontiguousarray(b))
    return root


class ReferencePairs(Dataset):
    """The reference's aligned dataset: PIL + torchvision transforms, float tensors in [-1, 1]."""

    def __init__(self, files: list[Path], load_size: int, crop_size: int) -> None:
        self.files, self.load_size, self.crop_size = files, load_size, crop_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ab = Image.open(self.files[index]).convert("RGB")
        w, h = ab.size
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        x = np.random.randint(0, max(0, self.load_size - self.crop_size) + 1)
        y = np.random.randint(0, max(0, self.load_size - self.crop_size) + 1)
        flip = np.random.random() > 0.5
        out = {}
        for key, image in (("A", a), ("B", b)):
            image = TF.resize(image, [self.load_size, self.load_size], TF.InterpolationMode.BICUBIC)
            image = image.crop((x, y, x + self.crop_size, y + self.crop_size))
            if flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            out[key] = TF.normalize(TF.to_tensor(image), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        return out


def bench_data(files: list[Path], load_size: int, crop_size: int, passes: int) -> dict[str, float]:
    """Images/s of both pipelines over ``files``, in this process, one thread each."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ref = ReferencePairs(files, load_size, crop_size)

    def run_ours(backend: str = "torchvision") -> None:
        ours = AlignedPairs(files, Jitter("resize_and_crop", load_size, crop_size, resize_backend=backend))
        for i in range(len(files)):
            item = ours[i]
            to_network_range(item["A"]), to_network_range(item["B"])

    def run_ref() -> None:
        for i in range(len(files)):
            ref[i]

    # Alternate the two, one pass each per round, and keep each one's best pass: on a shared machine
    # the load changes from second to second, and the best pass is the least disturbed one.
    # "ours" uses the default resize (torchvision, PIL's filter); "ours_pil" / "ours_opencv" the
    # other --resize-backend choices.
    result = {"ours": 0.0, "baseline_pil": 0.0, "ours_pil": 0.0, "ours_opencv": 0.0}
    run_ours(), run_ref()  # warm the file cache
    runs = (("ours", run_ours), ("baseline_pil", run_ref), ("ours_pil", lambda: run_ours("pil")),
            ("ours_opencv", lambda: run_ours("opencv")))
    for _ in range(passes):
        for name, fn in runs:
            t = time.perf_counter()
            fn()
            result[name] = max(result[name], len(files) / (time.perf_counter() - t))
    result["ratio"] = result["ours"] / result["baseline_pil"]
    return result


# ------------------------------------------------------------------------------------- steps

def forever(loader, sampler=None):
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def baseline_step(real_a, real_b, net_g, net_d, opt_g, opt_d, lambda_l1: float) -> torch.Tensor:
    """The reference's optimize_parameters (vanilla GAN, conditional D): returns the unweighted L1."""
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
    fake_b = net_g(real_a)
    for p in net_d.parameters():
        p.requires_grad = True
    opt_d.zero_grad()
    pred_fake = net_d(torch.cat((real_a, fake_b), 1).detach())
    loss_d_fake = bce(pred_fake, torch.zeros_like(pred_fake))
    pred_real = net_d(torch.cat((real_a, real_b), 1))
    loss_d_real = bce(pred_real, torch.ones_like(pred_real))
    ((loss_d_fake + loss_d_real) * 0.5).backward()
    opt_d.step()
    for p in net_d.parameters():
        p.requires_grad = False
    opt_g.zero_grad()
    pred_fake = net_d(torch.cat((real_a, fake_b), 1))
    loss_l1 = l1(fake_b, real_b)
    (bce(pred_fake, torch.ones_like(pred_fake)) + loss_l1 * lambda_l1).backward()
    opt_g.step()
    return loss_l1.detach()


class Runner:
    """One side of the comparison: a step function over its own endless batches, timed in chunks."""

    def __init__(self, step_fn, batches, device: torch.device) -> None:
        self.step_fn, self.batches, self.device = step_fn, batches, device
        self.l1s: list[torch.Tensor] = []
        self.images, self.seconds = 0, 0.0

    def run(self, steps: int, timed: bool) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            n, l1 = self.step_fn(next(self.batches))
            self.l1s.append(l1)
            self.images += n if timed else 0
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start if timed else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def mean_l1(self) -> float:
        return float(torch.stack(self.l1s).float().mean())


def bench_train(files: list[Path], args: argparse.Namespace, batch_size: int, device: torch.device) -> dict:
    netg_name = f"unet_{args.size}"
    options = Pix2PixOptions(netG=netg_name, netD="patch70", load_size=args.load_size, crop_size=args.size,
                             batch_size=batch_size, precision=args.precision, compile=args.compile)
    objective = parse_objective("l1+cgan")
    torch.manual_seed(0)
    net_g0, net_d0 = define_G(netg_name, 3, 3, args.ngf, "batch", True), define_D("patch70", 6, args.ngf, "batch")
    result = {"batch_size": batch_size, "netG": netg_name, "ngf": args.ngf, "size": args.size}
    # -- baseline: fp32, NCHW, PIL loader (the reference's DataLoader: shuffle, workers, no pinning)
    net_g, net_d = copy.deepcopy(net_g0).to(device), copy.deepcopy(net_d0).to(device)
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ref_loader = DataLoader(ReferencePairs(files, args.load_size, args.size), batch_size=batch_size, shuffle=True,
                            num_workers=args.workers, drop_last=True, persistent_workers=args.workers > 0)

    def ref_fn(batch):
        torch.backends.cudnn.benchmark = False  # the reference leaves it off
        a, b = batch["A"].to(device), batch["B"].to(device)
        return a.shape[0], baseline_step(a, b, net_g, net_d, opt_g, opt_d, 100.0)

    # -- ours
    amp = resolve_precision(args.precision, device)
    channels_last = device.type == "cuda"
    fmt = torch.channels_last if channels_last else torch.preserve_format
    our_g, our_d = copy.deepcopy(net_g0).to(device, memory_format=fmt), copy.deepcopy(net_d0).to(device, memory_format=fmt)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizers = {"G": torch.optim.Adam(our_g.parameters(), lr=2e-4, betas=(0.5, 0.999), **fused),
                  "D": torch.optim.Adam(our_d.parameters(), lr=2e-4, betas=(0.5, 0.999), **fused)}
    g_call, d_call = (torch.compile(our_g), torch.compile(our_d)) if args.compile else (our_g, our_d)
    nets = Nets(g_call, our_g, d_call, our_d, d_call)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    dataset = AlignedPairs(files, Jitter("resize_and_crop", args.load_size, args.size))
    sampler = ResumableSampler(dataset, seed=0)
    loader = make_loader(dataset, batch_size=batch_size, workers=args.workers, sampler=sampler,
                         pin_memory=device.type == "cuda")

    def our_fn(batch):
        torch.backends.cudnn.benchmark = device.type == "cuda"
        a, b = to_device(check_batch(batch), device, channels_last)
        terms = train_step(a, b, nets, optimizers, scaler, objective, options, amp)
        return a.shape[0], terms["G_L1_weighted"] / options.lambda_l1

    # Alternate chunks of steps so that both sides see the same machine load; the first chunk of
    # each is warm-up (cudnn autotuning, compilation, worker start) and is not timed.
    sides = {"baseline": Runner(ref_fn, forever(ref_loader), device), "ours": Runner(our_fn, forever(loader, sampler), device)}
    for side in sides.values():
        side.run(args.warmup, timed=False)
    chunk = max(1, min(args.chunk, args.steps - args.warmup))
    done = args.warmup
    while done < args.steps:
        n = min(chunk, args.steps - done)
        for side in sides.values():
            side.run(n, timed=True)
        done += n
    base, ours = sides["baseline"], sides["ours"]
    result.update({
        "baseline_images_per_s": base.images_per_s, "ours_images_per_s": ours.images_per_s,
        "ratio": ours.images_per_s / base.images_per_s,
        "precision": str(amp).replace("torch.", "") if amp else "fp32", "channels_last": channels_last,
        "compile": args.compile, "steps": args.steps, "warmup": args.warmup,
        "baseline_mean_L1": base.mean_l1, "ours_mean_L1": ours.mean_l1,
        "mean_L1_rel_diff": abs(ours.mean_l1 - base.mean_l1) / base.mean_l1,
    })
    result["loss_curve_within_5pct"] = result["mean_L1_rel_diff"] <= 0.05
    return result


# ------------------------------------------------------------------------------------- the loop

def bench_loop(root: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """Section 3 of the module docstring: the shared loop's overhead over a bare loop of steps."""
    from p2ptools_pix2pix import trainer

    from p2ptools.training.runtime import Runtime
    from p2ptools.training.session import make_loaders

    options = Pix2PixOptions(netG=f"unet_{args.size}", netD="patch70", ngf=args.ngf, ndf=args.ngf, load_size=args.load_size,
                             crop_size=args.size, batch_size=1, workers=args.workers, device=str(device), epochs=1000,
                             epochs_decay=0, max_steps=args.loop_steps, precision=args.precision, log_every=20)
    objective = parse_objective(options.loss)
    pairs = len(list(iter_split(root, "train")))
    if args.loop_steps > pairs:  # within one epoch: the epoch-end work (validation, samples) is not the loop's overhead
        raise SystemExit(f"--loop-steps {args.loop_steps} must be at most the {pairs} training pairs (one epoch)")
    seconds = {"loop": [], "bare": []}
    real_step = trainer.train_step
    stamps: list[float] = []

    def timed_step(*a, **k):  # stamps around every step the loop takes
        if not stamps:
            stamps.append(time.perf_counter())
        terms = real_step(*a, **k)
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps[1:] = [time.perf_counter()]
        return terms

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.loop_rounds):
            stamps.clear()
            trainer.train_step = timed_step
            try:
                trainer.train(options, root, Path(tmp) / f"run{i}", progress=False)
            finally:
                trainer.train_step = real_step
            seconds["loop"].append(stamps[1] - stamps[0])
            # bare: the same networks, loader and step; no log, bar, clock, stop checks or checkpoint
            torch.manual_seed(options.seed)
            net_g, net_d = trainer.build_networks(options, objective)
            runtime = Runtime(rank=0, world_size=1, local_rank=0, device=device, distributed=False)
            jitter = Jitter(options.preprocess, options.load_size, options.crop_size)
            files = list(iter_split(root, "train"))
            data = make_loaders(AlignedPairs(files, jitter), AlignedPairs(files[:1], jitter), options, runtime, None)
            amp = resolve_precision(options.precision, device)
            channels_last = device.type == "cuda"
            for net in (net_g, net_d):
                net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
            optimizers = {k: torch.optim.Adam(n.parameters(), lr=options.lr, betas=(options.beta1, options.beta2))
                          for k, n in (("G", net_g), ("D", net_d))}
            scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
            nets = trainer.Nets(net_g, net_g, net_d, net_d, net_d)
            done, start = 0, None
            data.sampler.set_epoch(0)
            while done < args.loop_steps:
                for batch in data.train:
                    if start is None:
                        start = time.perf_counter()
                    a, b = trainer.to_device(check_batch(batch), device, channels_last)
                    real_step(a, b, nets, optimizers, scaler, objective, options, amp)
                    done += 1
                    if done == args.loop_steps:
                        break
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds["bare"].append(time.perf_counter() - start)
    loop_rate = [args.loop_steps / s for s in seconds["loop"]]
    bare_rate = [args.loop_steps / s for s in seconds["bare"]]
    best_loop, best_bare = max(loop_rate), max(bare_rate)
    return {"steps": args.loop_steps, "rounds": args.loop_rounds, "loop_steps_per_s": loop_rate, "bare_steps_per_s": bare_rate,
            "ratio": best_loop / best_bare}


# ------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="aligned dataset root (default: synthetic JPEG pairs)")
    parser.add_argument("--pairs", type=int, default=400, help="synthetic pairs to generate (400: the size of facades train)")
    parser.add_argument("--size", type=int, default=256, help="crop size = U-Net size (paper: 256)")
    parser.add_argument("--ngf", type=int, default=64, help="generator and discriminator width (paper: 64)")
    parser.add_argument("--load-size", type=int, help="resize before cropping (default: size * 286 / 256)")
    parser.add_argument("--steps", type=int, default=500, help="training steps per run (paper check: 500)")
    parser.add_argument("--warmup", type=int, help="untimed first steps (default: min(20, steps // 4)), per side")
    parser.add_argument("--chunk", type=int, default=25, help="steps per side before switching sides")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default: 1,16 on GPU, 1 on CPU)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers for both pipelines")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--compile", action="store_true", help="torch.compile our networks")
    parser.add_argument("--data-passes", type=int, default=5, help="rounds (one pass over the data each) in the pipeline benchmark; best kept")
    parser.add_argument("--skip-train", action="store_true", help="only the data pipeline benchmark")
    parser.add_argument("--loop", action="store_true", help="also section 3: the shared epoch loop against a bare loop of steps")
    parser.add_argument("--loop-steps", type=int, default=60, help="steps per run in section 3")
    parser.add_argument("--loop-rounds", type=int, default=3, help="alternating runs per side in section 3 (best kept)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    args.load_size = args.load_size or int(round(args.size * 286 / 256))
    args.warmup = args.warmup if args.warmup is not None else min(20, args.steps // 4)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,16" if device.type == "cuda" else "1")).split(",")]
    threads = torch.get_num_threads()
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)",
                    "torch": torch.__version__, "size": args.size, "load_size": args.load_size}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or synthetic_dataset(Path(tmp), args.pairs, args.size)
        files = list(iter_split(root, "train"))
        report["data"] = str(args.data) if args.data else f"synthetic: {len(files)} JPEG pairs of {args.size}x{args.size}"
        report["data_pipeline"] = bench_data(files, args.load_size, args.size, args.data_passes)
        torch.set_num_threads(threads)
        cv2.setNumThreads(-1)
        d = report["data_pipeline"]
        print(f"data pipeline ({args.size} crops from {args.load_size}, 1 thread): ours {d['ours']:.1f} img/s, "
              f"PIL baseline {d['baseline_pil']:.1f} img/s, ratio {d['ratio']:.2f}x; ours with --resize-backend "
              f"pil {d['ours_pil']:.1f}, opencv {d['ours_opencv']:.1f} img/s")
        report["train"] = []
        if not args.skip_train:
            print(f"{'batch':>5} {'precision':>9} {'baseline img/s':>15} {'ours img/s':>11} {'ratio':>6} "
                  f"{'L1 base':>8} {'L1 ours':>8} {'L1 diff':>8}")
            for bs in batch_sizes:
                r = bench_train(files, args, bs, device)
                report["train"].append(r)
                print(f"{bs:>5} {r['precision']:>9} {r['baseline_images_per_s']:>15.2f} {r['ours_images_per_s']:>11.2f} "
                      f"{r['ratio']:>5.2f}x {r['baseline_mean_L1']:>8.4f} {r['ours_mean_L1']:>8.4f} "
                      f"{100 * r['mean_L1_rel_diff']:>7.2f}%")
        if args.loop:
            report["loop"] = r = bench_loop(Path(root), args, device)
            print(f"epoch loop ({r['steps']} steps, best of {r['rounds']}): shared loop {max(r['loop_steps_per_s']):.2f} steps/s, "
                  f"bare loop {max(r['bare_steps_per_s']):.2f} steps/s, ratio {r['ratio']:.3f}x")
    print(f"device: {report['device']}; {args.steps} steps per run ({args.warmup} untimed), loss check: mean L1 over them within 5%")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
