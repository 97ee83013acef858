"""``p2ptools models``: list model plugins, show one's options."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from p2ptools import registry
from p2ptools.cli.common import out
from p2ptools.options import choices_text, field_default, flag_of, option_fields

app = typer.Typer(help="List model plugins, or show one's options.", invoke_without_command=True, no_args_is_help=False)


def plugin_table(kind: str) -> Table:
    """Table of registered plugins of ``kind`` (read without importing them)."""
    table = Table(title=f"p2ptools {kind}")
    for col in ("name", "version", "distribution", "summary"):
        table.add_column(col)
    for item in registry.list_plugins(kind):
        table.add_row(item.name, item.version, item.distribution, item.summary)
    return table


def options_table(cls: type, title: str, defaults: dict[str, Any] | None = None) -> Table:
    """Table of an options dataclass: flag, type, default, valid values, help. ``defaults`` (field
    name -> value) replaces the dataclass's defaults where a command uses others (a builder's own)."""
    table = Table(title=title)
    for col in ("option", "type", "default", "choices", "help"):
        table.add_column(col)
    defaults = defaults or {}
    for f, tp in option_fields(cls):
        default = defaults[f.name] if f.name in defaults else field_default(f)
        table.add_row(flag_of(f), getattr(tp, "__name__", str(tp)), f.metadata.get("default_help") or repr(default), escape(choices_text(f) or ""),
                      escape(f.metadata.get("help", "")))
    return table


@app.callback()
def models(ctx: typer.Context) -> None:
    """List the model plugins: name, version, distribution, summary."""
    if ctx.invoked_subcommand is None:
        out.print(plugin_table("models"))


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Model plugin name.", metavar="NAME")]) -> None:
    """Show a model plugin's options with their defaults."""
    cls = registry.load("models", name)
    out.print(f"[bold]{cls.name}[/bold] {cls.version}: {cls.summary}")
    out.print(options_table(cls.Options, f"{name} options"))
