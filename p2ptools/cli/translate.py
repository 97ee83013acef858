"""``p2ptools translate RUN_DIR --input PATH --output DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from p2ptools.cli.common import BatchSize, Device, Epoch, NoProgress, RunDir, out
from p2ptools.errors import ConfigError
from p2ptools.plugin import LoadOptions, read_run_config
from p2ptools.registry import load_run
from p2ptools.translate import Fit, check_output, resolve_inputs, translate_files


def translate(
    run_dir: RunDir,
    input: Annotated[Path, typer.Option("--input", help="Image, folder, aligned dataset root or split folder.")],
    output: Annotated[Path, typer.Option("--output", help="Output folder (PNG, input names kept).")],
    batch_size: BatchSize = 1,
    device: Device = "auto",
    split: Annotated[Optional[str], typer.Option("--split", help="Split of an aligned dataset root (default: test, else val).", show_default=False)] = None,  # noqa: UP007
    aligned: Annotated[
        Optional[bool],  # noqa: UP007
        typer.Option("--aligned/--plain", help="Inputs are A|B pairs / plain images (default: detect: a dataset's split folders "
                     "and folders of images all twice as wide as high are pairs; when unsure, translate asks).", show_default=False),
    ] = None,
    eval_mode: Annotated[bool, typer.Option("--eval-mode", help="Running BN statistics and no dropout (default: the reference's test-time noise).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of test-time dropout.")] = 0,
    epoch: Epoch = "latest",
    resize: Annotated[Optional[int], typer.Option("--resize", help="Resize every input to NxN first (outputs are NxN).", show_default=False)] = None,  # noqa: UP007
    pad: Annotated[bool, typer.Option("--pad", help="Pad inputs the network cannot take to its size multiple; crop outputs back.")] = False,
    tile: Annotated[Optional[int], typer.Option("--tile", help="Translate in TxT tiles (a multiple of the network's size multiple), blended; any image size, the memory of one batch of tiles.", show_default=False)] = None,  # noqa: UP007
    overlap: Annotated[Optional[int], typer.Option("--overlap", min=0, help="Pixels tiles overlap by (with --tile; default T/4; rounded up so tiles start on the size multiple).", show_default=False)] = None,  # noqa: UP007
    backend: Annotated[str, typer.Option("--backend", help="torch, or onnx (onnxruntime, with --onnx FILE from p2ptools export).")] = "torch",
    onnx: Annotated[Optional[Path], typer.Option("--onnx", help="The ONNX file of --backend onnx (exported from this run).", show_default=False)] = None,  # noqa: UP007
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable or unusable inputs (listed in translate.json) instead of stopping.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier translation folder (only one p2ptools wrote).")] = False,
    no_progress: NoProgress = False,
) -> None:
    """Translate images with a trained (or imported) run."""
    from p2ptools.devices import check_device  # torch: only when the command runs

    check_device(device)
    if sum((resize is not None, pad, tile is not None)) > 1:
        raise ConfigError("choose one of --resize N, --pad and --tile T")
    if overlap is not None and tile is None:
        raise ConfigError("--overlap needs --tile T")
    if backend not in ("torch", "onnx"):
        raise ConfigError(f"--backend must be torch or onnx, got {backend!r}")
    if (backend == "onnx") != (onnx is not None):
        raise ConfigError("--backend onnx needs --onnx FILE" if onnx is None else "--onnx FILE needs --backend onnx")
    if backend == "onnx":
        from p2ptools.export.runtime import require

        require("onnxruntime")
    fit = (Fit("resize", resize) if resize is not None else Fit("pad") if pad else
           Fit("tile", tile=tile, overlap=tile // 4 if overlap is None else overlap) if tile is not None else Fit())
    from p2ptools.training.epoch_weights import parse_epoch  # torch: imported by the commands that need it

    read_run_config(run_dir)  # the run first (cheap): a missing or broken run is the first thing to say
    epoch = str(parse_epoch(epoch))
    inputs = resolve_inputs(input, split=split, aligned=aligned)
    check_output(output, inputs, overwrite=overwrite)  # before the (slow) model loading
    if backend == "onnx":
        from p2ptools.export.backend import OnnxModel

        model = OnnxModel(load_run(run_dir, LoadOptions(device="cpu", eval_mode=eval_mode, seed=seed, epoch=epoch)), onnx, run_dir, device)
    else:
        model = load_run(run_dir, LoadOptions(device=device, eval_mode=eval_mode, seed=seed, epoch=epoch))
    if tile is not None:
        from p2ptools.tiling import Tiling

        Tiling(tile, overlap, max(1, model.size_multiple))  # a tile the network cannot take: say so before translating
    count = translate_files(model, inputs, output, batch_size=batch_size, progress=not no_progress, run_dir=run_dir,
                            overwrite=overwrite, skip_bad=skip_bad, fit=fit, requested_epoch=epoch,
                            notice=lambda line: typer.echo(line, err=True))
    skipped = len(inputs.files) - count
    source = f" of {inputs.dataset_root} {inputs.split}" if inputs.split else ""
    out.print(f"translated {count} image(s){source} -> {output}" + (f" ({skipped} skipped, see translate.json)" if skipped else ""))
