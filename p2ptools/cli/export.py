"""``p2ptools export RUN_DIR --format onnx --out model.onnx``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p2ptools.cli.common import Epoch, RunDir, out
from p2ptools.export.writer import OPSET, TOLERANCE
from p2ptools.plugin import LoadOptions, read_run_config
from p2ptools.registry import load_run


def export(
    run_dir: RunDir,
    output: Annotated[Path, typer.Option("--out", help="The file to write (e.g. model.onnx, model.pt).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    epoch: Epoch = "latest",
    opset: Annotated[int, typer.Option("--opset", min=9, help="ONNX opset.")] = OPSET,
    eval_mode: Annotated[bool, typer.Option("--eval-mode", "--eval", help="Export G.eval() (running BN statistics, no dropout) "
                                            "instead of translate's default test-time noise (as translate --eval-mode).")] = False,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="Largest accepted |exported - PyTorch| of the [-1, 1] outputs.")] = TOLERANCE,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Export a run's generator (dynamic batch and size) and check it against PyTorch."""
    from p2ptools.export.writer import export_model
    from p2ptools.training.epoch_weights import parse_epoch  # torch: imported by the commands that need it

    read_run_config(run_dir)
    epoch = str(parse_epoch(epoch))
    model = load_run(run_dir, LoadOptions(device="cpu", eval_mode=eval_mode, epoch=epoch))
    result = export_model(model, run_dir, output, fmt=fmt, opset=opset, tolerance=tolerance, requested_epoch=epoch, overwrite=overwrite)
    out.print(f"wrote {result.path} ({result.format}); parity: max |{result.format} - PyTorch| = {result.max_abs_diff:.3g} "
              f"<= {result.tolerance:g} on {', '.join(result.checked)}")
