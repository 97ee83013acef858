"""``p2ptools datasets``: list builders, show one, verify a built dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p2ptools import registry
from p2ptools.buildkit.contract import BuildOptions
from p2ptools.cli.common import out
from p2ptools.cli.models import options_table, plugin_table
from p2ptools.errors import P2PError
from p2ptools.pairs import verify_dataset

app = typer.Typer(help="List dataset builders, show one, or verify a dataset.", invoke_without_command=True)


@app.callback()
def datasets(ctx: typer.Context) -> None:
    """List the dataset builders: name, version, distribution, summary."""
    if ctx.invoked_subcommand is None:
        out.print(plugin_table("datasets"))


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Builder name.", metavar="NAME")]) -> None:
    """Show a builder's expected source layout and options."""
    cls = registry.load("datasets", name)
    out.print(f"[bold]{cls.name}[/bold] {cls.version}: {cls.summary}")
    out.print(f"Source: {cls.source_layout}")
    out.print(options_table(cls.Options, f"{name} options"))
    out.print(options_table(BuildOptions, "options of every builder", defaults=cls.build_defaults()))


@app.command("verify")
def verify(root: Annotated[Path, typer.Argument(help="Dataset root with manifest.json.", metavar="DIR")]) -> None:
    """Check every file of a dataset against the sha256 in its manifest."""
    report = verify_dataset(root)
    if not report.ok:
        problems = report.problems()
        for line in problems[:20]:
            out.print(line)
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        raise P2PError(f"{root}: {len(problems)} problem(s) against manifest.json{more}")
    out.print(f"{root}: OK, {report.checked} files match manifest.json")
