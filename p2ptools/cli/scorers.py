"""``p2ptools scorers``: list the segmentation scorers (entry-point group ``p2ptools.scorers``)."""

from __future__ import annotations

import typer

from p2ptools.cli.common import out
from p2ptools.cli.models import plugin_table

app = typer.Typer(help="List the segmentation scorers of eval --fcn / --miou.", invoke_without_command=True, no_args_is_help=False)


@app.callback()
def scorers(ctx: typer.Context) -> None:
    """List the segmentation scorers: name, version, distribution, summary (none is imported)."""
    if ctx.invoked_subcommand is None:
        out.print(plugin_table("scorers"))
