"""``p2ptools sweep``: an ablation table as one resumable command (``run``, ``status``, ``list``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from p2ptools.cli.common import NoProgress, out

app = typer.Typer(help="Ablation tables: train, translate and evaluate rows x seeds, the table with mean ± std.",
                  no_args_is_help=True)

SweepDir = Annotated[Path, typer.Argument(help="Sweep directory (written by p2ptools sweep run --out).", metavar="SWEEP_DIR", show_default=False)]


@app.command("run")
def run(
    spec: Annotated[str, typer.Argument(help="Spec file (TOML), or the name of a shipped spec (see 'p2ptools sweep list').",
                                        metavar="SPEC", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Sweep directory: the spec, one folder per cell, the table.", show_default=False)],
    data: Annotated[Optional[Path], typer.Option("--data", help="Aligned dataset of the rows (replaces the spec's data).", show_default=False)] = None,  # noqa: UP007
    fcn_weights: Annotated[Optional[Path], typer.Option("--fcn-weights", help="FCN-8s scorer for eval fcn / ground-truth-row (replaces the spec's).", show_default=False)] = None,  # noqa: UP007
    backend: Annotated[str, typer.Option("--backend", help="Where cells run: local, ray (an existing or a new local Ray cluster) or slurm (submitit).")] = "local",
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="local: cells at once, as subprocesses (one GPU each when there are GPUs; on the CPU they split the cores).")] = 1,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="ray: the cluster's address (default: start a local one).", show_default=False)] = None,  # noqa: UP007
    ray_num_gpus: Annotated[Optional[float], typer.Option("--ray-num-gpus", help="ray: GPUs per cell (default: 1 when the spec trains on a GPU, else 0).", show_default=False)] = None,  # noqa: UP007
    partition: Annotated[Optional[str], typer.Option("--partition", help="slurm: partition (replaces the spec's [slurm] partition).", show_default=False)] = None,  # noqa: UP007
    time_limit: Annotated[Optional[int], typer.Option("--time", min=1, help="slurm: minutes per cell's job (replaces the spec's [slurm] time).", show_default=False)] = None,  # noqa: UP007
    gpus_per_job: Annotated[Optional[int], typer.Option("--gpus-per-job", min=0, help="slurm: GPUs per cell's job (replaces the spec's [slurm] gpus-per-job).", show_default=False)] = None,  # noqa: UP007
    account: Annotated[Optional[str], typer.Option("--account", help="slurm: account to charge (replaces the spec's [slurm] account).", show_default=False)] = None,  # noqa: UP007
    slurm_executor: Annotated[str, typer.Option("--slurm-executor", help="slurm: slurm (submit jobs) or local (submitit's local executor, for tests).")] = "slurm",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Accept a changed spec: redo the cells it changes, keep the others.")] = False,
    no_progress: NoProgress = False,
) -> None:
    """Run (or finish) a sweep: every cell not done yet, then the table (md, csv, tex, html) with mean ± std over seeds.

    Rerunning the same command after a kill or a failure finishes the sweep without redoing finished work.
    Exit code 1 when any cell failed ('p2ptools sweep status SWEEP_DIR' shows why).
    """
    from p2ptools.sweep.backends import get_backend
    from p2ptools.sweep.runner import describe_state, run_sweep
    from p2ptools.sweep.spec import find_spec, load_spec

    spec_obj = load_spec(find_spec(spec), data=data, overrides={"fcn-weights": fcn_weights})
    options: dict = {"local": {"jobs": jobs},
                     "ray": {"address": ray_address, "num_gpus": ray_num_gpus},
                     "slurm": {**spec_obj.slurm, **{k: v for k, v in {"partition": partition, "time": time_limit,
                               "gpus_per_job": gpus_per_job, "account": account}.items() if v is not None},
                               "executor": slurm_executor}}.get(backend, {})  # fmt: skip
    chosen = get_backend(backend, **options)  # a missing optional extra: one line, before any cell starts
    outcome = run_sweep(spec_obj, out_dir, chosen, overwrite=overwrite, progress=not no_progress)
    if outcome.changes:
        out.print(f"spec changed ({'; '.join(outcome.changes)}): changed cells redone, the others kept")
    total = len(outcome.done) + len(outcome.failed)
    out.print(f"{len(outcome.done)}/{total} cells done ({len(outcome.ran)} run now) in {out_dir}")
    for (label, seed), state in outcome.failed.items():
        out.print(f"  {label} seed {seed}: {describe_state(state)}")
    if outcome.table is not None:
        out.print(f"table -> {outcome.table}")
    if outcome.failed:
        raise typer.Exit(1)


@app.command("status")
def status(sweep_dir: SweepDir) -> None:
    """Show each cell of a sweep: done, running (and where), failed (with its error) or waiting."""
    from p2ptools.eval.report import markdown_table
    from p2ptools.sweep.runner import describe_state
    from p2ptools.sweep.store import cell_states, read_stored

    import pandas as pd

    stored = read_stored(sweep_dir)
    states = cell_states(sweep_dir, stored)
    grid = pd.DataFrame(index=[r["label"] for r in stored["rows"]], columns=[f"seed {s}" for s in stored["seeds"]], dtype=object)
    for (label, seed), state in states.items():
        grid.loc[label, f"seed {seed}"] = _short(state)
    done = sum(s["status"] == "done" for s in states.values())
    out.print(f"{stored['title']}: {done}/{len(states)} cells done ({sweep_dir})")
    out.print(markdown_table(grid, "Row").rstrip())
    for (label, seed), state in states.items():
        if state["status"] in ("running", "failed"):
            out.print(f"{label} seed {seed}: {describe_state(state)}")


def _short(state: dict) -> str:
    from p2ptools.sweep.store import is_stale

    if state["status"] == "running":
        return "interrupted" if is_stale(state) else f"running ({state.get('step') or 'starting'})"
    return state["status"]


@app.command("list")
def list_specs() -> None:
    """The specs shipped with p2ptools (run one with 'p2ptools sweep run NAME --data DIR --out SWEEP_DIR')."""
    import tomllib

    from p2ptools.sweep.spec import shipped_specs

    for name, path in shipped_specs().items():
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        rows = ", ".join(str(r.get("label")) for r in raw.get("rows", []))
        out.print(f"{name}: {raw.get('title', name)} (rows: {rows}; seeds {raw.get('seeds', [0])}) {path}")
