"""The GPU check behind ``benchmarks/gpu_check.sh``: every CUDA path once, on one GPU, in minutes.

Steps (each timed; a failing step is reported and the others still run):

1. ``cuda_tests``: the tests marked ``cuda`` (bf16/fp16 autocast, channels_last, compile, GPU vs
   CPU translation), ``pytest -m cuda``;
2. ``ddp_syncbatch``: a 1-process ``torchrun`` training of a few steps with ``--norm syncbatch``,
   forced onto DistributedDataParallel (``P2PTOOLS_DDP=1``: NCCL, SyncBatchNorm, DDP wrappers);
3. ``train_step``: ``benchmarks/train_step.py``, our step against the reference-style fp32 NCHW
   step at batch 1 and 16 in the paper's configuration (unet_256, patch70, 286 -> 256), with the
   loss-curve check (mean L1 within 5%);
4. ``fcn_scorer``: FCN-8s (full width, random weights) images/s at 1024x2048, fp32;
5. peak GPU memory of the steps run in this process (``torch.cuda.max_memory_allocated``) and the
   peak resident memory of the child processes.

It prints one table and writes it as JSON (``--json``). ``--dry-run`` runs every step on the CPU with
tiny sizes (gloo instead of NCCL, ``--norm batch``, 32-pixel images, a 1/8-width FCN at 64x128),
to check the script end to end without a GPU; its numbers mean nothing.

Usage: ``bash benchmarks/gpu_check.sh [--dry-run] [--json PATH] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402


def peak_gpu_mib() -> float | None:
    """Peak GPU memory since the last reset, in MiB (None without CUDA)."""
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def reset_gpu_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cmd``, its output into ``log``; raise with the log's tail if it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=ROOT)
    log.write_text(f"$ {' '.join(cmd)}\n{done.stdout}\n{done.stderr}", encoding="utf-8")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return done


# ------------------------------------------------------------------------------------- steps

def step_cuda_tests(work: Path, dry: bool) -> dict:
    target = "tests/pix2pix/test_cuda.py" if dry else "tests"
    done = run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", target], work / "cuda_tests.log")
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|skipped|failed|deselected)", done.stdout)}
    summary = f"{counts.get('passed', 0)} passed, {counts.get('skipped', 0)} skipped"
    return {"summary": summary, **counts}


def step_ddp(work: Path, dry: bool) -> dict:
    from train_step import synthetic_dataset

    data = synthetic_dataset(work / "ddp_data", 8, 32)
    (data / "val").mkdir(exist_ok=True)
    shutil.copy(next((data / "train").iterdir()), data / "val" / "00000.jpg")
    run_dir = work / "ddp_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    args = ["--data", str(data), "--out", str(run_dir), "--netG", "unet_32", "--netD", "patch16", "--ngf", "8", "--ndf", "8",
            "--load-size", "36", "--crop-size", "32", "--batch-size", "2", "--epochs", "1", "--epochs-decay", "1", "--max-steps", "3",
            "--workers", "0", "--log-every", "1", "--no-progress",
            "--norm", "batch" if dry else "syncbatch", "--device", "cpu" if dry else "cuda"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "p2ptools", "train", *args]
    run(cmd, work / "ddp_syncbatch.log", env={"P2PTOOLS_DDP": "1", "OMP_NUM_THREADS": "1"})
    state = json.loads((run_dir / "checkpoints" / "latest_state.json").read_text())
    if not state.get("distributed"):
        raise RuntimeError("the torchrun process trained without a process group")
    key = "G_L1_weighted"  # lambda_L1 x L1 (logs before this name: "G_L1")
    steps = [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if key in r]
    backend = "gloo" if dry else "nccl"
    return {"summary": f"{backend}, {state['step']} steps, {key} {steps[0][key]:.3g} -> {steps[-1][key]:.3g}",
            "backend": backend, "steps": state["step"], "norm": "batch" if dry else "syncbatch"}


def step_train(work: Path, dry: bool) -> dict:
    import train_step

    if dry:
        argv = ["--size", "32", "--ngf", "4", "--steps", "2", "--warmup", "0", "--chunk", "1", "--pairs", "2", "--workers", "0",
                "--data-passes", "1", "--batch-sizes", "1,2", "--device", "cpu"]
    else:
        argv = ["--batch-sizes", "1,16", "--steps", "300", "--warmup", "20", "--pairs", "400", "--workers", "8", "--device", "cuda"]
    report = train_step.main([*argv, "--json", str(work / "train_step.json")])
    rows = report["train"]
    for row in rows:
        row["loss_curve_ok"] = bool(row["mean_L1_rel_diff"] < 0.05)
    summary = "; ".join(f"batch {r['batch_size']}: {r['ratio']:.2f}x ({r['precision']}), L1 diff {100 * r['mean_L1_rel_diff']:.1f}%"
                        for r in rows)
    if not all(r["loss_curve_ok"] for r in rows) and not dry:
        raise RuntimeError("loss curves differ by 5% or more: " + summary)
    return {"summary": summary, "rows": rows, "data_pipeline": report["data_pipeline"]}


def step_fcn(work: Path, dry: bool) -> dict:
    import numpy as np

    from p2ptools.eval.scorer import CITYSCAPES_MEAN_BGR, Scorer, ScorerConfig
    from p2ptools.labels import CITYSCAPES
    from p2ptools.nets.fcn8s import FCN8s

    device = "cpu" if dry else "cuda"
    size, width, images, batch = ((64, 128), 0.125, 2, 1) if dry else ((1024, 2048), 1.0, 24, 4)
    torch.manual_seed(0)
    net = FCN8s(20, width)
    for m in net.modules():  # random weights with sane scales (no checkpoint needed)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight)
    config = ScorerConfig(20, width, CITYSCAPES, CITYSCAPES_MEAN_BGR, {"file": "random"})
    scorer = Scorer(net, config, Path("random"), device=device, precision="fp32", tf32=False, batch_size=batch)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(batch)]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    scorer.predict(inputs, size)  # warm-up (cuDNN autotuning)
    sync()
    start, done = time.perf_counter(), 0
    while done < images:
        scorer.predict(inputs, size)
        done += batch
    sync()
    rate = done / (time.perf_counter() - start)
    return {"summary": f"{rate:.2f} images/s at {size[0]}x{size[1]} fp32 (width {width})", "images_per_s": rate,
            "size": list(size), "width": width}


STEPS = (("cuda_tests", step_cuda_tests), ("ddp_syncbatch", step_ddp), ("train_step", step_train), ("fcn_scorer", step_fcn))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU with tiny sizes (checks the script)")
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where to write the table as JSON")
    parser.add_argument("--work", type=Path, help="folder for logs and run directories (default: a temporary one)")
    parser.add_argument("--only", help="comma-separated step names to run (default: all)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --dry-run to check the script on the CPU", file=sys.stderr)
        return {}
    only = set(args.only.split(",")) if args.only else None
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="p2p-gpu-check-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.dry_run else "cpu (dry run)"
    results = []
    try:
        for name, fn in STEPS:
            if only and name not in only:
                continue
            reset_gpu_peak()
            start = time.perf_counter()
            try:
                entry = {"step": name, "status": "ok", **fn(work, args.dry_run)}
            except Exception as exc:  # reported in the table; the other steps still run
                entry = {"step": name, "status": "FAILED", "summary": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}
                (work / f"{name}.error.log").write_text(traceback.format_exc(), encoding="utf-8")
            entry["seconds"] = round(time.perf_counter() - start, 1)
            entry["peak_gpu_mib"] = peak_gpu_mib() if name in ("train_step", "fcn_scorer") else None
            results.append(entry)
    finally:
        if tmp is not None:
            tmp.cleanup()
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB on Linux
    report = {"device": device, "dry_run": args.dry_run, "torch": torch.__version__, "steps": results,
              "peak_child_rss_mib": round(children_rss, 1), "ok": all(r["status"] == "ok" for r in results)}
    print(f"\ngpu_check on {device} (torch {torch.__version__}){' -- DRY RUN, numbers mean nothing' if args.dry_run else ''}")
    print(f"{'step':<14} {'status':<7} {'seconds':>8} {'peak GPU MiB':>12}  result")
    for r in results:
        peak = "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
        print(f"{r['step']:<14} {r['status']:<7} {r['seconds']:>8.1f} {peak:>12}  {r['summary']}")
    print(f"peak resident memory of the child processes: {report['peak_child_rss_mib']:.0f} MiB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"written: {args.json}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main().get("ok") else 1)
