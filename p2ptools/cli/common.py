"""Option types shared by several commands, and small printing helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from p2ptools.progress import OutputConsole

#: Results go to stdout (never hard-wrapped when it is not a terminal); progress and errors to stderr.
out = OutputConsole()

RunDir = Annotated[Path, typer.Argument(help="Run directory (config.json, checkpoints/).", metavar="RUN_DIR", show_default=False)]
Device = Annotated[str, typer.Option("--device", help="Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output of another configuration.")]
Epoch = Annotated[str, typer.Option("--epoch", help="Weights of the run: latest, best (lowest validation L1 among the kept epochs) or an epoch number (kept by train --save-epoch-freq).")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Do not draw progress bars.")]

#: Context settings of commands that parse plugin options themselves.
PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def tidy_help(command: Any) -> Any:
    """Make the help of a built Typer command (and its subcommands) read like a usual CLI's.

    Typer labels every flag ``<bool>`` (``--help`` included), as if it took a value, and writes
    arguments as ``{run_dir}`` in the usage line. Here flags get no type label and arguments read
    ``RUN_DIR``, ``[NAME]`` (optional) or ``PATH...`` (repeatable). Returns ``command``.
    """
    ctx = typer.Context(command, **command.context_settings)  # names of the (lazily made) --help option
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif param.param_type_name == "argument":
            name = param.metavar = param.metavar or param.name.upper()  # also in "Missing argument 'NAME'"
            piece = (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")
            param.get_usage_pieces = lambda ctx, piece=piece: [piece]
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)
    return command
