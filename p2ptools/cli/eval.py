"""``p2ptools eval``: FCN / segmentation scores, Lab color histograms, image metrics, reports and
ablation tables (GUIDE.md sections 4-6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from p2ptools.cli.common import BatchSize, Device, Epoch, NoProgress, out

PathList = Optional[list[Path]]  # noqa: UP007


def eval_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Report folder (report.*; with several rows, table.* and one folder per row).", show_default=False)],
    paths: Annotated[PathList, typer.Argument(help="More run directories (with config.json) or results folders.", show_default=False)] = None,
    fcn: Annotated[bool, typer.Option("--fcn", help="FCN-8s scores of result photos against label maps.")] = False,
    seg: Annotated[bool, typer.Option("--seg", help="Results are color label maps: decode by nearest class color and score.")] = False,
    color: Annotated[bool, typer.Option("--color", help="Lab histogram intersections and plots against the ground-truth photos.")] = False,
    results: Annotated[PathList, typer.Option("--results", help="Results folder (repeatable), e.g. written by p2ptools translate.", show_default=False)] = None,
    runs: Annotated[PathList, typer.Option("--runs", help="Run directory (repeatable): translated on its test split first.", show_default=False)] = None,
    cityscapes: Annotated[Optional[Path], typer.Option("--cityscapes", help="Cityscapes root (gtFine/<split>/<city>/*_gtFine_labelIds.png).", show_default=False)] = None,  # noqa: UP007
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Folder of train-id or color label PNGs, matched by name.", show_default=False)] = None,  # noqa: UP007
    real: Annotated[Optional[Path], typer.Option("--real", help="Folder of ground-truth photos, matched by file stem.", show_default=False)] = None,  # noqa: UP007
    data: Annotated[Optional[Path], typer.Option("--data", help="Aligned dataset: ground-truth photos are the target halves.", show_default=False)] = None,  # noqa: UP007
    split: Annotated[str, typer.Option("--split", help="Split of --data and of the runs' datasets.")] = "test",
    direction: Annotated[Optional[str], typer.Option("--direction", help="AtoB or BtoA: which half of --data is the input (default: the results' translate.json, else AtoB).", show_default=False)] = None,  # noqa: UP007
    fcn_weights: Annotated[Optional[Path], typer.Option("--fcn-weights", help="FCN-8s scorer: .safetensors, a p2ptools fcn train checkpoint, or the .caffemodel.", show_default=False)] = None,  # noqa: UP007
    ground_truth_row: Annotated[bool, typer.Option("--ground-truth-row", help="Also score the real photos (resized to 256x256) as the upper bound.")] = False,
    epoch: Epoch = "latest",
    samples: Annotated[int, typer.Option("--samples", min=0, help="Sample triplets shown in report.html.")] = 8,
    device: Device = "cpu",
    batch_size: BatchSize = 8,
    tf32: Annotated[bool, typer.Option("--tf32", help="Allow TF32 matmuls in the scorer (faster on GPU, not reference-grade).")] = False,
    precision: Annotated[str, typer.Option("--precision", help="Scorer precision: fp32 (reference) or bf16 (fast).")] = "fp32",
    no_progress: NoProgress = False,
) -> None:
    """Evaluate results (or runs) the way the paper did and write a report or an ablation table."""
    from p2ptools.eval.api import EvalRequest, run_evaluation
    from p2ptools.eval.evaluate import EvalOptions

    run_dirs = list(runs or [])
    result_dirs = list(results or [])
    for path in paths or []:
        (run_dirs if (path / "config.json").is_file() else result_dirs).append(path)
    options = EvalOptions(
        fcn=fcn, seg=seg, color=color, cityscapes=cityscapes, labels=labels, real=real, data=data, split=split, direction=direction,
        ground_truth_row=ground_truth_row, batch_size=batch_size, samples=samples, progress=not no_progress,
    )  # fmt: skip
    request = EvalRequest(
        out=out_dir, options=options, runs=run_dirs, results=result_dirs, fcn_weights=fcn_weights, device=device,
        tf32=tf32, precision=precision, epoch=epoch,
    )  # fmt: skip
    outcome = run_evaluation(request)
    if outcome.summary is not None:
        out.print(outcome.summary.to_string(float_format=lambda v: f"{v:.3f}"))
        out.print(f"{'report' if outcome.index.name == 'report.html' else 'table'} -> {outcome.index}")
