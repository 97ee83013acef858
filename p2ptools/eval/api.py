"""One entry point for an evaluation: a results folder -> a report, or several runs/results -> an
ablation table. ``p2ptools eval`` and ``p2ptools demo`` both call :func:`run_evaluation`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from p2ptools.errors import ConfigError
from p2ptools.eval.evaluate import EvalOptions
from p2ptools.locks import maybe_output_lock, rank_zero
from p2ptools.outputs import OutputKind, carry_over, discard, refuse_foreign, refuse_overlap, seal, staging_path, swap_in

#: Files that mark a folder as an evaluation p2ptools wrote (a report, an ablation table, an --shard state).
REPORT_MARKERS = ("report.json", "table.csv", "partial.json")
#: An evaluation folder (``p2ptools.outputs``): its ownership record lists every file written, so an
#: ``--overwrite`` carries the user's other files into the new report.
EVALUATION = OutputKind("evaluation", REPORT_MARKERS)


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate (``runs`` and/or ``results``), how (``options``: what to measure and where
    the ground truth is), with which scorer, and where to write (see ``p2ptools eval --help``)."""

    out: Path
    options: EvalOptions
    runs: list[Path] = field(default_factory=list)
    results: list[Path] = field(default_factory=list)
    fcn_weights: Path | None = None
    device: str = "auto"  # resolved by p2ptools.devices.resolve_device; the device used is in report.json
    tf32: bool = False
    precision: str = "fp32"
    overwrite: bool = False
    shard: tuple[int, int] | None = None
    epoch: str = "latest"  # weights of the runs (LoadOptions.epoch)
    labels: dict[Path, str] = field(default_factory=dict)  # a row's folder (as given) -> its label in the table
    folder_labels: bool = False  # label the other rows by their folders' names, not by what differs in their configs

    def check(self) -> None:
        """Raise :class:`ConfigError` for an incomplete or contradictory request."""
        opts = self.options
        if not self.runs and not self.results:
            raise ConfigError("nothing to evaluate: give --results DIR or --runs RUN_DIR")
        if not (opts.fcn or opts.seg or opts.color or opts.real or opts.data or opts.fidelity.any or opts.miou):
            raise ConfigError("choose what to measure: --fcn, --seg, --miou, --color, --fid, --kid and/or --lpips (image metrics need --real or --data)")
        opts.fidelity.check()
        if opts.miou is not None:
            opts.miou.check()
        if self.shard is not None and (self.runs or len(self.results) != 1):
            raise ConfigError("--shard evaluates one --results folder (translate runs first, then shard their results)")
        if opts.direction not in (None, "AtoB", "BtoA"):
            raise ConfigError(f"--direction: invalid value {opts.direction!r}; choose from AtoB, BtoA")
        from p2ptools.training.epoch_weights import parse_epoch

        parse_epoch(self.epoch)
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision: invalid value {self.precision!r}; choose from fp32, bf16")
        if (opts.fcn or opts.ground_truth_row) and self.fcn_weights is None:
            raise ConfigError(
                "--fcn and --ground-truth-row need --fcn-weights PATH (.safetensors, a p2ptools fcn train checkpoint, or the .caffemodel)"
            )


@dataclass
class EvalOutcome:
    """What was written: ``summary`` is the printed table; ``index`` the HTML page to open."""

    summary: pd.DataFrame | None
    index: Path | None


def run_evaluation(request: EvalRequest) -> EvalOutcome:
    """Evaluate one results folder into a report, or several rows into an ablation table.

    Under ``torchrun`` every rank scores a shard and only rank 0 writes (its outcome is returned;
    other ranks get an empty outcome).
    """
    from p2ptools.eval.evaluate import distributed_session

    request.check()
    out, opts = Path(request.out), request.options
    refuse_overlap(out, [*request.runs, *request.results, opts.data, opts.real, opts.labels, opts.cityscapes], "--out")
    state = refuse_foreign(out, EVALUATION, "--out")
    rerun_shard = request.shard is not None and not any((out / m).is_file() for m in ("report.json", "table.csv"))
    if state == "ours" and not request.overwrite and not rerun_shard:  # a job array's retried shard just runs again
        raise ConfigError(f"--out {out}: holds an evaluation already ({' / '.join(REPORT_MARKERS)}); use --overwrite to replace it "
                          "(the old one stays until the new one is complete) or another --out")
    with maybe_output_lock(out), distributed_session(request.device) as device:
        writer = rank_zero()  # only rank 0 writes and swaps
        staging = staging_path(out)
        if writer:
            discard(staging)
        try:
            outcome = _evaluate(replace(request, out=staging), device)
            if writer:
                _replace(staging, out)
        except BaseException:
            if writer:
                discard(staging)
            raise
        if not writer:
            return outcome
        index = out / outcome.index.name if outcome.index is not None else None
        return EvalOutcome(outcome.summary, index)


def _replace(staging: Path, out: Path) -> None:
    """Record what the evaluation wrote, carry the user's files of an old ``out`` into it (a file
    in the new one's way stops the replacement, the old folder untouched), and swap it in."""
    seal(staging, EVALUATION)
    carry_over(out, staging)
    swap_in(staging, out)


def _evaluate(request: EvalRequest, device: str) -> EvalOutcome:
    from p2ptools.eval.evaluate import distributed_context, evaluate_results
    from p2ptools.eval.matching import find_results
    from p2ptools.eval.report import summary_frame, write_report
    from p2ptools.eval.tables import evaluate_rows, plan_rows, table_frame

    rank, _ = distributed_context()
    options = request.options
    single = find_results(request.results[0]) if not request.runs and len(request.results) == 1 else None  # bad input before loading networks
    scorer, scorer_info = None, None
    if options.fcn or options.ground_truth_row:
        from p2ptools.eval.scorer import load_scorer

        scorer = load_scorer(request.fcn_weights, device=device, precision=request.precision, tf32=request.tf32, batch_size=options.batch_size)
        scorer_info = {"weights": str(request.fcn_weights), "device": device, "precision": request.precision, "tf32": request.tf32}
    miou_scorer = None
    if options.miou is not None:
        from p2ptools.eval.miou import load_miou_scorer

        miou_scorer = load_miou_scorer(options.miou, device=device, precision=request.precision, tf32=request.tf32, batch_size=options.batch_size)
    fidelity = None
    if options.fidelity.any:
        from p2ptools.eval.fidelity import FidelityModels

        fidelity = FidelityModels(options.fidelity, device)
    out = Path(request.out)  # the staging folder: run_evaluation removes it on failure
    if single is not None:
        evaluation = evaluate_results(single, options, scorer, scorer_info=scorer_info, fidelity=fidelity, feature_dir=out / "features", shard=request.shard,
                                      miou_scorer=miou_scorer)
        evaluation.report["device"] = device
        if rank != 0:
            return EvalOutcome(None, None)
        if request.shard is not None:
            from p2ptools.eval.partial import write_partial

            evaluation.partial.context["device"] = device  # the merged report names the device(s) of its shards
            write_partial(evaluation.partial, out)
            return EvalOutcome(None, out / "partial.json")
        write_report(evaluation, out, options.bins)
        return EvalOutcome(summary_frame(evaluation), out / "report.html")
    title, rows = plan_rows(list(request.runs), list(request.results), out, labels=request.labels, folder_labels=request.folder_labels)
    evaluations = evaluate_rows(rows, options, scorer, out, title=title, device=device, batch_size=options.batch_size,
                                scorer_info=scorer_info, fidelity=fidelity, epoch=str(request.epoch), miou_scorer=miou_scorer)
    if rank != 0:
        return EvalOutcome(None, None)
    return EvalOutcome(table_frame(evaluations, title), out / "table.html")


@dataclass(frozen=True)
class MergeRequest:
    """``p2ptools eval merge PARTS... --out REPORT``: shard folders into one report."""

    parts: list[Path]
    out: Path
    overwrite: bool = False


def run_merge(request: MergeRequest) -> EvalOutcome:
    """Sum the ``--shard`` folders into the report a single run writes."""
    from p2ptools.eval.partial import build_evaluation, merge_partials
    from p2ptools.eval.report import summary_frame, write_report

    out = Path(request.out)
    refuse_overlap(out, list(request.parts), "--out")
    state = refuse_foreign(out, EVALUATION, "--out")
    if state == "ours" and not request.overwrite:
        raise ConfigError(f"--out {out}: holds an evaluation already ({' / '.join(REPORT_MARKERS)}); use --overwrite to replace it "
                          "(the old one stays until the new one is complete) or another --out")
    with maybe_output_lock(out):
        staging = staging_path(out)  # built beside, swapped in when complete (as run_evaluation)
        discard(staging)
        try:
            partial, feature_dir = merge_partials(list(request.parts), staging)
            evaluation = build_evaluation(partial, feature_dir)
            from p2ptools.eval.color import LabBins

            bins = partial.context["bins"]
            write_report(evaluation, staging, LabBins(float(bins["width"]), tuple(bins["L"]), tuple(bins["a"])))
            _replace(staging, out)
        except BaseException:
            discard(staging)
            raise
    return EvalOutcome(summary_frame(evaluation), out / "report.html")
