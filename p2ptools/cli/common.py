"""Option types shared by several commands, and small printing helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

#: Results go to stdout; progress and errors to stderr.
out = Console()

RunDir = Annotated[Path, typer.Argument(help="Run directory (config.json, checkpoints/).", show_default=False)]
Device = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1, ...")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output of another configuration.")]
Epoch = Annotated[str, typer.Option("--epoch", help="Weights of the run: latest, best (lowest validation L1 among the kept epochs) or an epoch number (kept by train --save-epoch-freq).")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Do not draw progress bars.")]

#: Context settings of commands that parse plugin options themselves.
PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
