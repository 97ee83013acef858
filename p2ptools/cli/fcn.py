"""``p2ptools fcn``: convert the published FCN-8s caffemodel, or train an FCN-8s scorer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from p2ptools.cli.common import BatchSize, Device, NoProgress, Overwrite, out

app = typer.Typer(help="FCN-8s scorers: convert the Cityscapes caffemodel, train one for another domain.", no_args_is_help=True)


@app.command("convert")
def convert(
    caffemodel: Annotated[Path, typer.Argument(help="fcn-8s-cityscapes.caffemodel (new or V1 Caffe format).", show_default=False)],
    out_file: Annotated[Path, typer.Option("--out", help="Output .safetensors (weights + class table + mean).", show_default=False)],
) -> None:
    """Convert a Caffe FCN-8s (Cityscapes) to safetensors, checking every layer's name and shape."""
    from p2ptools.eval.scorer import convert_caffemodel

    start = time.perf_counter()
    config = convert_caffemodel(caffemodel, out_file)
    size = out_file.stat().st_size
    out.print(
        f"converted {caffemodel} -> {out_file} ({size / 2**20:.1f} MiB, {config.num_classes} score channels, "
        f"width {config.width:g}, classes {config.classes.name}) in {time.perf_counter() - start:.1f} s"
    )


@app.command("train")
def train(
    data: Annotated[Path, typer.Option("--data", help="Aligned dataset: photo in one half, labels as extras or the other half.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Checkpoint folder (fcn8s.safetensors, config.json, log.jsonl).", show_default=False)],
    width: Annotated[float, typer.Option("--width", min=0.0, help="Channel multiplier (1 = the published network).")] = 1.0,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training split.")] = 50,
    batch_size: BatchSize = 4,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-4,
    lr_policy: Annotated[str, typer.Option("--lr-policy", help="fixed (constant) or poly (lr * (1 - step/steps) ** 0.9 over the run).")] = "fixed",
    size: Annotated[int, typer.Option("--size", min=8, help="Training image size (photos and labels resized to size x size).")] = 256,
    vgg_weights: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Option("--vgg-weights", help="Local torchvision vgg16 state dict (.pth) to initialise the trunk.", show_default=False),
    ] = None,
    classes: Annotated[str, typer.Option("--classes", help="Class table: cityscapes, manifest (the dataset's own), or a JSON file.")] = "cityscapes",
    photo: Annotated[str, typer.Option("--photo", help="Which half is the photo: A, B or auto.")] = "auto",
    split: Annotated[str, typer.Option("--split", help="Training split.")] = "train",
    val_split: Annotated[str, typer.Option("--val-split", help="Validation split ('' for none).")] = "val",
    device: Device = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation, order and flips.")] = 0,
    overwrite: Overwrite = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out from its last finished epoch (--epochs may grow).")] = False,
    position_jitter: Annotated[bool, typer.Option("--position-jitter", help="Also flip vertically and shift circularly, so the scorer must use appearance, not position.")] = False,
    photometric_jitter: Annotated[float, typer.Option("--photometric-jitter", min=0.0, max=0.95, help="Random brightness/contrast/colour-balance change per image, up to this fraction, so the scorer must read texture, not mean colour.")] = 0.0,
    no_progress: NoProgress = False,
) -> None:
    """Train an FCN-8s scorer whose checkpoint records its class table (loadable with --fcn-weights)."""
    from p2ptools.devices import check_device
    from p2ptools.eval.fcn_train import FCNTrainOptions, train_fcn

    check_device(device)

    options = FCNTrainOptions(
        data=data, out=out_dir, width=width, epochs=epochs, batch_size=batch_size, lr=lr, size=size,
        vgg_weights=vgg_weights, classes=classes, photo=photo, split=split, val_split=val_split,
        device=device, seed=seed, overwrite=overwrite, resume=resume, progress=not no_progress, position_jitter=position_jitter,
        photometric_jitter=photometric_jitter, lr_policy=lr_policy,
    )  # fmt: skip
    result = train_fcn(options)
    val = ", ".join(f"val {k} {v:.3f}" for k, v in result.val.items())
    out.print(f"trained {result.epochs} epoch(s): train loss {result.train_loss:.4f}{', ' + val if val else ''} -> {result.checkpoint}")
