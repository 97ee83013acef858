"""``p2ptools train``: train a model plugin; the plugin's options are added at run time."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from p2ptools import registry
from p2ptools.cli.common import out
from p2ptools.cli.dynamic import build_options, dataclass_parameters, find_value, run_command
from p2ptools.errors import ConfigError, P2PError
from p2ptools.locks import maybe_output_lock, rank_zero
from p2ptools.outputs import refuse_overlap
from p2ptools.options import from_dict, to_dict
from p2ptools.plugin import TrainRequest, read_run_config

DEFAULT_MODEL = "pix2pix"
PREFIX = "opt__"


def train(ctx: typer.Context) -> None:
    """Train a model: p2ptools train --model NAME --data DIR --out RUN_DIR, plus model options.

    `p2ptools train --model NAME --help` lists the model's options. `--resume RUN_DIR` continues an
    interrupted run with its own configuration.
    """
    args = list(ctx.args)
    resume = find_value(args, "--resume")
    if resume is not None and not resume.startswith("-") and "--help" not in args:
        from p2ptools.training.checkpoint import require_run, write_config  # torch: only when the command runs
        from p2ptools.training.paths import resume_options

        config = read_run_config(resume)  # a missing or broken config.json is one line naming it
        require_run(resume)
        cls = registry.load("models", config["plugin"])
        options = from_dict(cls.Options, config.get("options", {}), f"{resume}/config.json")
        options, moved = resume_options(options, config, [a for a in args if a not in ("--resume", resume)], resume)
        if moved:  # a weight file pointed at again (same content): the run's config says where it is now
            with maybe_output_lock(resume):
                write_config(Path(resume), {**config, "options": to_dict(options)})
        data = config.get("data")
        request = TrainRequest(Path(data) if data else None, Path(resume), resume=True, progress="--no-progress" not in args)
        with maybe_output_lock(resume):  # a second train or resume of this run is refused, naming this PID
            run_dir = cls().train(options, request)
        if os.environ.get("RANK", "0") == "0":
            out.print(f"resumed and finished: {run_dir}")
        return
    name = find_value(args, "--model")
    cls = registry.load("models", DEFAULT_MODEL if name is None else name)  # "" is an unknown model, not the default
    name = cls.name
    params = [
        _param("model", str, name, typer.Option("--model", help="Model plugin (see `p2ptools models`).")),
        _param("data", Optional[Path], None, typer.Option("--data", help="Aligned dataset root. Required (unless --resume).", show_default=False)),  # noqa: UP007
        _param("run_dir", Optional[Path], None, typer.Option("--out", help="Run directory to create. Required (unless --resume).", show_default=False)),  # noqa: UP007
        _param("resume", Optional[str], None, typer.Option(  # noqa: UP007  (handled before parsing; here for --help)
            "--resume", metavar="RUN_DIR", show_default=False,
            help="Continue the interrupted run RUN_DIR exactly, with its own config.json (no other options needed).")),
        _param("overwrite", bool, False, typer.Option("--overwrite", help="Replace a run of another configuration.")),
        _param("no_progress", bool, False, typer.Option("--no-progress", help="Do not draw progress bars.")),
    ]
    params += dataclass_parameters(cls.Options, PREFIX, f"{name} options")

    def body(values: dict[str, Any]) -> None:
        if values["resume"] is not None:  # only a value that looks like an option gets here
            raise typer.BadParameter(f"needs a run directory, got {values['resume']!r}: p2ptools train --resume RUN_DIR",
                                     param_hint="'--resume'")
        if values["data"] is None or values["run_dir"] is None:
            raise ConfigError("train needs --data DIR and --out RUN_DIR (or --resume RUN_DIR)")
        options = build_options(cls.Options, values, PREFIX)
        refuse_overlap(values["run_dir"], [values["data"]], "--out")  # before the lock file is made beside it
        request = TrainRequest(values["data"], values["run_dir"], overwrite=values["overwrite"], progress=not values["no_progress"])
        with maybe_output_lock(values["run_dir"]):
            try:
                run_dir = cls().train(options, request)
            except BaseException as exc:
                from p2ptools.training.checkpoint import restore_replaced

                if not (values["overwrite"] and rank_zero() and restore_replaced(values["run_dir"])):
                    raise
                note = f"the previous run in {values['run_dir']} is back in place (the new one stopped before its first checkpoint)"
                if isinstance(exc, P2PError):
                    raise P2PError(f"{exc}; {note}") from None
                print(note, file=sys.stderr)
                raise
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
            out.print(f"trained: {run_dir}")

    run_command("p2ptools train", f"Train the {name!r} model: {cls.summary}", params, body, args)


def _param(name: str, tp: Any, default: Any, option: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[tp, option])
