"""One entry point for an evaluation: a results folder -> a report, or several runs/results -> an
ablation table. ``p2ptools eval`` and ``p2ptools demo`` both call :func:`run_evaluation`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from p2ptools.errors import ConfigError
from p2ptools.eval.evaluate import EvalOptions
from p2ptools.locks import maybe_output_lock
from p2ptools.outputs import refuse_foreign, refuse_overlap

#: Files that mark a folder as an evaluation p2ptools wrote (a report, or an ablation table).
REPORT_MARKERS = ("report.json", "table.csv")


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate (``runs`` and/or ``results``), how (``options``: what to measure and where
    the ground truth is), with which scorer, and where to write (see ``p2ptools eval --help``)."""

    out: Path
    options: EvalOptions
    runs: list[Path] = field(default_factory=list)
    results: list[Path] = field(default_factory=list)
    fcn_weights: Path | None = None
    device: str = "cpu"
    tf32: bool = False
    precision: str = "fp32"
    epoch: str = "latest"  # weights of the runs (LoadOptions.epoch)

    def check(self) -> None:
        """Raise :class:`ConfigError` for an incomplete or contradictory request."""
        opts = self.options
        if not self.runs and not self.results:
            raise ConfigError("nothing to evaluate: give --results DIR or --runs RUN_DIR")
        if not (opts.fcn or opts.seg or opts.color or opts.real or opts.data):
            raise ConfigError("choose what to measure: --fcn, --seg and/or --color (image metrics need --real or --data)")
        if opts.direction not in (None, "AtoB", "BtoA"):
            raise ConfigError(f"--direction: invalid value {opts.direction!r}; choose from AtoB, BtoA")
        from p2ptools.training.epochs import parse_epoch

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
    refuse_foreign(out, REPORT_MARKERS, "--out", "evaluation")
    with maybe_output_lock(out), distributed_session(request.device) as device:
        return _evaluate(request, device)


def _evaluate(request: EvalRequest, device: str) -> EvalOutcome:
    from p2ptools.eval.evaluate import distributed_context, evaluate_results
    from p2ptools.eval.matching import find_results
    from p2ptools.eval.report import summary_frame, write_report
    from p2ptools.eval.tables import evaluate_rows, plan_rows, table_frame

    rank, _ = distributed_context()
    options = request.options
    scorer, scorer_info = None, None
    if options.fcn or options.ground_truth_row:
        from p2ptools.eval.scorer import load_scorer

        scorer = load_scorer(request.fcn_weights, device=device, precision=request.precision, tf32=request.tf32, batch_size=options.batch_size)
        scorer_info = {"weights": str(request.fcn_weights), "device": device, "precision": request.precision, "tf32": request.tf32}
    out = Path(request.out)
    if not request.runs and len(request.results) == 1:
        evaluation = evaluate_results(find_results(request.results[0]), options, scorer, scorer_info=scorer_info)
        if rank != 0:
            return EvalOutcome(None, None)
        write_report(evaluation, out, options.bins)
        return EvalOutcome(summary_frame(evaluation), out / "report.html")
    title, rows = plan_rows(list(request.runs), list(request.results), out)
    evaluations = evaluate_rows(rows, options, scorer, out, title=title, device=device, batch_size=options.batch_size,
                                scorer_info=scorer_info, epoch=str(request.epoch))
    if rank != 0:
        return EvalOutcome(None, None)
    return EvalOutcome(table_frame(evaluations, title), out / "table.html")
