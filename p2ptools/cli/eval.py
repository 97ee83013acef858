"""``p2ptools eval``: FCN / segmentation scores, the mIoU protocol (``--miou``), Lab color histograms, image metrics, reports and
ablation tables (GUIDE.md sections 4-6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from p2ptools.cli.common import BatchSize, Device, Epoch, NoProgress, out
from p2ptools.errors import ConfigError

PathList = Optional[list[Path]]  # noqa: UP007


def eval_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Report folder (report.*; with several rows, table.* and one folder per row).", show_default=False)],
    paths: Annotated[PathList, typer.Argument(help="Folders to evaluate, one row each: run directories (with config.json: translated first, like --runs) or results folders (like --results); PATH=LABEL names the row.", metavar="PATH", show_default=False)] = None,
    fcn: Annotated[bool, typer.Option("--fcn", help="FCN-8s scores of result photos against label maps.")] = False,
    seg: Annotated[bool, typer.Option("--seg", help="Results are color label maps: decode by nearest class color and score.")] = False,
    color: Annotated[bool, typer.Option("--color", help="Lab histogram intersections and plots against the ground-truth photos.")] = False,
    results: Annotated[PathList, typer.Option("--results", help="Results folder (repeatable), e.g. written by p2ptools translate; DIR=LABEL names its row.", show_default=False)] = None,
    runs: Annotated[PathList, typer.Option("--runs", help="Run directory (repeatable): translated on its dataset's test split (else val) first; DIR=LABEL names its row.", show_default=False)] = None,
    row_labels: Annotated[str, typer.Option("--row-labels", help="Label the table's rows by what differs in the runs' configurations (config: objective, networks, data, schedule; never logging, checkpoints, workers or device) or by their folders' names (folder). DIR=LABEL overrides either.")] = "config",
    cityscapes: Annotated[Optional[Path], typer.Option("--cityscapes", help="Cityscapes root (gtFine/<split>/<city>/*_gtFine_labelIds.png).", show_default=False)] = None,  # noqa: UP007
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Folder of train-id or color label PNGs, matched by name.", show_default=False)] = None,  # noqa: UP007
    real: Annotated[Optional[Path], typer.Option("--real", help="Folder of ground-truth photos, matched by file stem.", show_default=False)] = None,  # noqa: UP007
    data: Annotated[Optional[Path], typer.Option("--data", help="Aligned dataset: ground-truth photos are the target halves.", show_default=False)] = None,  # noqa: UP007
    split: Annotated[Optional[str], typer.Option("--split", help="Split of --data and of the runs' datasets (default: test, else val; recorded in report.json).", show_default=False)] = None,  # noqa: UP007
    direction: Annotated[Optional[str], typer.Option("--direction", help="AtoB or BtoA: which half of --data is the input (default: the results' translate.json, else AtoB).", show_default=False)] = None,  # noqa: UP007
    fcn_weights: Annotated[Optional[Path], typer.Option("--fcn-weights", help="FCN-8s scorer: .safetensors, a p2ptools fcn train checkpoint, or the .caffemodel.", show_default=False)] = None,  # noqa: UP007
    ground_truth_row: Annotated[bool, typer.Option("--ground-truth-row", help="Also score the real photos (each resized to its result's size, 256x256 in the paper) as the upper bound.")] = False,
    epoch: Epoch = "latest",
    samples: Annotated[int, typer.Option("--samples", min=0, help="Sample triplets shown in report.html.")] = 8,
    device: Device = "auto",
    batch_size: BatchSize = 8,
    tf32: Annotated[bool, typer.Option("--tf32", help="Allow TF32 matmuls in the scorer (faster on GPU, not reference-grade).")] = False,
    precision: Annotated[str, typer.Option("--precision", help="Scorer precision: fp32 (reference) or bf16 (fast).")] = "fp32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an evaluation already in --out (swapped in when the new one is complete).")] = False,
    fid: Annotated[bool, typer.Option("--fid", help="FID of the results against the ground-truth photos (pytorch-fid's Inception, local weights).")] = False,
    kid: Annotated[bool, typer.Option("--kid", help="KID (unbiased, cubic kernel, mean ± std over subsets): the FID for small test sets.")] = False,
    lpips: Annotated[bool, typer.Option("--lpips", help="LPIPS of each result against its ground truth, with a worst-first gallery.")] = False,
    fid_protocol: Annotated[str, typer.Option("--fid-protocol", help="Resize to 299: clean (clean-fid's PIL bicubic, antialiased) or legacy (pytorch-fid's bilinear).")] = "clean",
    inception_weights: Annotated[Optional[Path], typer.Option("--inception-weights", help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid's release), for --fid/--kid.", show_default=False)] = None,  # noqa: UP007
    lpips_net: Annotated[Optional[str], typer.Option("--lpips-net", help="LPIPS backbone: alex or vgg (with --lpips). [default: alex]", show_default=False)] = None,  # noqa: UP007
    lpips_backbone_weights: Annotated[Optional[Path], typer.Option("--lpips-backbone-weights", help="torchvision alexnet-owt-7be5be79.pth or vgg16-397923af.pth, for --lpips.", show_default=False)] = None,  # noqa: UP007
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", min=1, help="KID: number of random subsets.")] = 100,
    kid_subset_size: Annotated[int, typer.Option("--kid-subset-size", min=2, help="KID: images per subset (capped by the set size).")] = 1000,
    kid_seed: Annotated[int, typer.Option("--kid-seed", help="KID: seed of the subsets (torch-fidelity's default).")] = 2020,
    miou: Annotated[Optional[str], typer.Option("--miou", help="Segment the result photos with this scorer (see 'p2ptools scorers', e.g. drn-d-105) and report mIoU, per-class IoU and pixel accuracy.", show_default=False)] = None,  # noqa: UP007
    miou_weights: Annotated[Optional[Path], typer.Option("--miou-weights", "--drn-weights", help="Local weights of the --miou scorer (drn-d-105: fyu/drn's drn-d-105_ms_cityscapes.pth).", show_default=False)] = None,  # noqa: UP007
    miou_size: Annotated[str, typer.Option("--miou-size", help="native (segment each image at its size), 1024x2048 (Cityscapes' full resolution) or WxH: images are resized bilinearly to it first.")] = "native",
    label_resize: Annotated[str, typer.Option("--label-resize", help="Ground-truth labels at the segmented size: nearest or bilinear-argmax.")] = "nearest",
    miou_split: Annotated[str, typer.Option("--miou-split", help="Cityscapes split of the --miou labels; the results must cover it (val: 500 images).")] = "val",
    miou_multi_scale: Annotated[bool, typer.Option("--miou-multi-scale/--miou-single-scale", help="The scorer's multi-scale test (drn-d-105: segment.py --ms, scales 0.5-1.75, no flip) or the single-scale one.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: evaluate every N-th result from the I-th and write a partial state to --out; combine with 'p2ptools eval merge PARTS... --out REPORT'.", show_default=False)] = None,  # noqa: UP007
    no_progress: NoProgress = False,
) -> None:
    """Evaluate results (or runs) the way the paper did and write a report or an ablation table.

    Shards of one results folder: 'p2ptools eval --shard I/N ... --out PART_I', then
    'p2ptools eval merge PART_0 ... PART_N-1 --out REPORT' writes the report of the whole folder.
    """
    from p2ptools.devices import check_device
    from p2ptools.errors import ConfigError

    check_device(device)
    if lpips_net is not None and not lpips:
        raise ConfigError(f"--lpips-net {lpips_net} is the backbone of --lpips: add --lpips, or drop --lpips-net")
    from p2ptools.eval.api import EvalRequest, run_evaluation
    from p2ptools.eval.evaluate import EvalOptions
    from p2ptools.eval.fidelity import FidelityOptions
    from p2ptools.eval.miou import MiouOptions
    from p2ptools.eval.partial import parse_shard
    from p2ptools.eval.report import summary_text

    if row_labels not in ("config", "folder"):
        raise ConfigError(f"--row-labels: invalid value {row_labels!r}; choose from config, folder")
    row_names: dict[Path, str] = {}  # not `labels`: that is --labels, the label-map folder
    run_dirs = [_labelled(p, row_names) for p in runs or []]
    result_dirs = [_labelled(p, row_names) for p in results or []]
    for path in paths or []:
        path = _labelled(path, row_names)
        (run_dirs if (path / "config.json").is_file() else result_dirs).append(path)
    options = EvalOptions(
        fcn=fcn, seg=seg, color=color, cityscapes=cityscapes, labels=labels, real=real, data=data, split=split, direction=direction,
        ground_truth_row=ground_truth_row, batch_size=batch_size, samples=samples, progress=not no_progress,
        fidelity=FidelityOptions(
            fid=fid, kid=kid, lpips=lpips, protocol=fid_protocol, inception_weights=inception_weights, lpips_net=lpips_net or "alex",
            lpips_backbone_weights=lpips_backbone_weights, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, kid_seed=kid_seed,
        ),
        miou=MiouOptions(scorer=miou, weights=miou_weights, size=miou_size, label_resize=label_resize, split=miou_split, multi_scale=miou_multi_scale)
        if miou is not None else None,
    )  # fmt: skip
    request = EvalRequest(
        out=out_dir, options=options, runs=run_dirs, results=result_dirs, fcn_weights=fcn_weights, device=device,
        tf32=tf32, precision=precision, overwrite=overwrite, shard=parse_shard(shard) if shard is not None else None, epoch=epoch,
        labels=row_names, folder_labels=row_labels == "folder",
    )  # fmt: skip
    outcome = run_evaluation(request)
    if outcome.summary is None and outcome.index is not None:
        out.print(f"partial state -> {outcome.index} (combine the shards with: p2ptools eval merge PARTS... --out REPORT)")
    if outcome.summary is not None:
        out.print(summary_text(outcome.summary))
        out.print(f"{'report' if outcome.index.name == 'report.html' else 'table'} -> {outcome.index}")


def _labelled(path: Path, labels: dict[Path, str]) -> Path:
    """``DIR=LABEL`` -> ``DIR`` (its label put in ``labels``); a plain ``DIR`` as is. The split is at
    the first ``=`` whose left side exists (a label may hold ``=``, e.g. ``lambda=10``), else the first."""
    text = str(path)
    cuts = [i for i, ch in enumerate(text) if ch == "="]
    if not cuts or path.exists():
        return path
    cut = next((i for i in cuts if Path(text[:i]).exists()), cuts[0])
    folder, label = Path(text[:cut]), text[cut + 1 :].strip()
    if not label:
        raise ConfigError(f"{text}: empty row label after '=' (DIR=LABEL)")
    labels[folder] = label
    return folder


def merge_command(
    parts: Annotated[list[Path], typer.Argument(help="Folders written by 'p2ptools eval --shard I/N', one per shard.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Report folder (the report a single run writes).", show_default=False)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a report already in --out (swapped in when the new one is complete).")] = False,
) -> None:
    """Combine the partial states of 'p2ptools eval --shard I/N' into one report."""
    from p2ptools.eval.api import MergeRequest, run_merge
    from p2ptools.eval.report import summary_text

    outcome = run_merge(MergeRequest(parts=list(parts), out=out_dir, overwrite=overwrite))
    out.print(summary_text(outcome.summary))
    out.print(f"report -> {outcome.index}")
