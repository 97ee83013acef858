"""Typer commands whose options come from dataclasses chosen at run time (plugin options).

``p2ptools train --model pix2pix --netG unet_128 --help`` works by reading the model name from the
raw arguments, loading that plugin's ``Options`` dataclass and building a Typer command with one
option per field (its own flag, type, default and help), then running it on the same arguments.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from p2ptools.cli.common import tidy_help
from p2ptools.options import check_options, choices_text, field_default, field_range, flag_of, option_fields, unwrap_optional

_SIMPLE = (str, int, float, bool, Path)


def find_value(args: Sequence[str], *flags: str) -> str | None:
    """The value of the first of ``flags`` in raw arguments (``--x V`` or ``--x=V``), else None."""
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1 :]
    return None


def dataclass_parameters(cls: type, prefix: str, panel: str) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``cls`` (python names prefixed to avoid collisions)."""
    params = []
    for f, tp in option_fields(cls):
        base, optional = unwrap_optional(tp)
        if base not in _SIMPLE:
            raise TypeError(f"{cls.__name__}.{f.name}: option type {tp} is not supported on the command line")
        flag = flag_of(f)
        decls = [f"{flag}/--no-{flag[2:]}"] if base is bool else [flag]
        help_text = f.metadata.get("help", "")
        if "choices" in f.metadata:
            help_text += f" Choices: {choices_text(f)}."
        elif field_range(f) is not None:
            help_text += f" Range: {field_range(f)}."
        option = typer.Option(*decls, help=help_text, rich_help_panel=panel, show_default=f.metadata.get("default_help", True))
        annotation = Annotated[Optional[base] if optional else base, option]  # noqa: UP007
        params.append(
            inspect.Parameter(
                prefix + f.name, inspect.Parameter.KEYWORD_ONLY, default=field_default(f), annotation=annotation
            )
        )
    return params


def build_options(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Instantiate ``cls`` from the parsed values of :func:`dataclass_parameters`, checked by
    :func:`p2ptools.options.check_options` (choices, ranges, combinations)."""
    kwargs = {f.name: values[prefix + f.name] for f in dataclasses.fields(cls)}
    options = cls(**kwargs)
    check_options(options)
    return options


def run_command(
    prog_name: str,
    help_text: str,
    params: list[inspect.Parameter],
    body: Callable[[dict[str, Any]], None],
    args: list[str],
) -> None:
    """Build a one-command Typer app from ``params`` and run it on ``args``. ``--help`` prints every
    option; usage errors propagate to :func:`p2ptools.cli.main` (one line, exit 2), and so does a
    ``typer.Exit`` with a non-zero code."""

    def command(**kwargs: Any) -> None:
        body(kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help_text
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(context_settings={"max_content_width": 120})(command)
    code = tidy_help(typer.main.get_command(app)).main(args=args, prog_name=prog_name, standalone_mode=False)
    if isinstance(code, int) and code != 0:
        raise typer.Exit(code)
