"""``p2ptools translate RUN_DIR --input PATH --output DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from p2ptools.cli.common import BatchSize, Device, Epoch, NoProgress, RunDir, out
from p2ptools.devices import check_device
from p2ptools.errors import ConfigError
from p2ptools.plugin import LoadOptions, read_run_config
from p2ptools.registry import load_run
from p2ptools.translate import Fit, check_output, resolve_inputs, translate_files


def translate(
    run_dir: RunDir,
    input: Annotated[Path, typer.Option("--input", help="Image, folder, aligned dataset root or split folder.")],
    output: Annotated[Path, typer.Option("--output", help="Output folder (PNG, input names kept).")],
    batch_size: BatchSize = 1,
    device: Device = "cpu",
    split: Annotated[str, typer.Option("--split", help="Split of an aligned dataset root.")] = "test",
    aligned: Annotated[
        Optional[bool],  # noqa: UP007
        typer.Option("--aligned/--plain", help="Inputs are A|B pairs / plain images (default: detect).", show_default=False),
    ] = None,
    eval_mode: Annotated[bool, typer.Option("--eval-mode", help="Running BN statistics and no dropout (default: the reference's test-time noise).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of test-time dropout.")] = 0,
    epoch: Epoch = "latest",
    resize: Annotated[Optional[int], typer.Option("--resize", help="Resize every input to NxN first (outputs are NxN).", show_default=False)] = None,  # noqa: UP007
    pad: Annotated[bool, typer.Option("--pad", help="Pad inputs the network cannot take to its size multiple; crop outputs back.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable or unusable inputs (listed in translate.json) instead of stopping.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier translation folder (only one p2ptools wrote).")] = False,
    no_progress: NoProgress = False,
) -> None:
    """Translate images with a trained (or imported) run."""
    check_device(device)
    if resize is not None and pad:
        raise ConfigError("choose one of --resize N and --pad")
    fit = Fit("resize", resize) if resize is not None else Fit("pad") if pad else Fit()
    from p2ptools.training.epochs import parse_epoch  # torch: imported by the commands that need it

    read_run_config(run_dir)  # the run first (cheap): a missing or broken run is the first thing to say
    epoch = str(parse_epoch(epoch))
    inputs = resolve_inputs(input, split=split, aligned=aligned)
    check_output(output, inputs, overwrite=overwrite)  # before the (slow) model loading
    model = load_run(run_dir, LoadOptions(device=device, eval_mode=eval_mode, seed=seed, epoch=epoch))
    count = translate_files(model, inputs, output, batch_size=batch_size, progress=not no_progress, run_dir=run_dir,
                            overwrite=overwrite, skip_bad=skip_bad, fit=fit, requested_epoch=epoch)
    skipped = len(inputs.files) - count
    out.print(f"translated {count} image(s) -> {output}" + (f" ({skipped} skipped, see translate.json)" if skipped else ""))
