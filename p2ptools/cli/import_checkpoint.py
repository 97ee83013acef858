"""``p2ptools import-checkpoint FILE --model NAME --out RUN_DIR [model options]``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from p2ptools import registry
from p2ptools.cli.common import out
from p2ptools.cli.dynamic import build_options, dataclass_parameters, find_value, run_command
from p2ptools.cli.train import DEFAULT_MODEL, PREFIX
from p2ptools.errors import ConfigError
from p2ptools.locks import output_lock


def import_checkpoint(ctx: typer.Context) -> None:
    """Turn a foreign checkpoint (e.g. the pix2pix reference's latest_net_G.pth) into a run directory.

    `p2ptools import-checkpoint --model NAME --help` lists the architecture options to describe it.
    """
    args = list(ctx.args)
    name = find_value(args, "--model") or DEFAULT_MODEL
    cls = registry.load("models", name)

    def p(pname: str, tp: Any, default: Any, option: Any) -> inspect.Parameter:
        return inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[tp, option])

    params = [
        inspect.Parameter(
            "checkpoint",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[Optional[Path], typer.Argument(help="Checkpoint file.", show_default=False)],  # noqa: UP007
            default=None,
        ),
        p("model", str, name, typer.Option("--model", help="Model plugin.")),
        p("run_dir", Optional[Path], None, typer.Option("--out", help="Run directory to create.")),  # noqa: UP007
        p("overwrite", bool, False, typer.Option("--overwrite", help="Replace an existing run directory.")),
    ]
    params += dataclass_parameters(cls.Options, PREFIX, f"{name} options")

    def body(values: dict[str, Any]) -> None:
        if values["checkpoint"] is None or values["run_dir"] is None:
            raise ConfigError("import-checkpoint needs a checkpoint FILE and --out RUN_DIR")
        options = build_options(cls.Options, values, PREFIX)
        with output_lock(values["run_dir"]):
            run_dir = cls().import_checkpoint(values["checkpoint"], options, values["run_dir"], overwrite=values["overwrite"])
        out.print(f"imported {values['checkpoint']} -> {run_dir}")

    run_command("p2ptools import-checkpoint", f"Import a checkpoint into a {name!r} run.", params, body, args)
