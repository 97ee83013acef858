"""The ``p2ptools`` command line: one module per command group, assembled here.

Library errors (:class:`p2ptools.errors.P2PError`) become one line on stderr and exit code 1;
usage errors (unknown option, missing value, bad value) one line too, with exit code 2;
``P2PTOOLS_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from p2ptools import __version__
from p2ptools.cli import datasets, demo, export, fcn, hed, import_checkpoint, make_dataset, models, scorers, sweep, train, translate
from p2ptools.cli import eval as eval_cli
from p2ptools.cli.common import PASSTHROUGH, tidy_help
from p2ptools.errors import P2PError

app = typer.Typer(
    name="p2ptools",
    help="Paired image-to-image translation (pix2pix): build datasets, train, translate, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"p2ptools {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """p2ptools: paired image-to-image translation."""


app.add_typer(models.app, name="models")
app.add_typer(datasets.app, name="datasets")
app.add_typer(scorers.app, name="scorers")
app.command("make-dataset", context_settings=PASSTHROUGH, add_help_option=False)(make_dataset.make_dataset)
app.command("train", context_settings=PASSTHROUGH, add_help_option=False)(train.train)
app.command("translate")(translate.translate)
app.command("export")(export.export)
app.command("import-checkpoint", context_settings=PASSTHROUGH, add_help_option=False)(import_checkpoint.import_checkpoint)
app.command("eval")(eval_cli.eval_command)
app.command("eval-merge", hidden=True)(eval_cli.merge_command)  # reached as "p2ptools eval merge", see main()
app.add_typer(fcn.app, name="fcn")
app.add_typer(hed.app, name="hed")
app.add_typer(sweep.app, name="sweep")
app.command("demo")(demo.demo)


def _one_line(message: str) -> str:
    """Errors are one line: a message of several lines (e.g. a library's) is joined with spaces."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    debug = os.environ.get("P2PTOOLS_DEBUG", "") not in ("", "0")
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["eval", "merge"]:  # "eval" is one command with positional paths, so its "merge" is routed here
        args = ["eval-merge", *args[2:]]
    code = 0
    try:
        code = tidy_help(typer.main.get_command(app)).main(args=args, prog_name="p2ptools", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors, as typer ships them: one line, no box
        if debug:
            raise
        if type(exc).__name__ != "NoArgsIsHelpError":  # the help is already printed
            print(usage_error_line(exc, args), file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except P2PError as exc:
        if debug:
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{_one_line(str(exc.strerror or exc))}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # a bug: one line, and how to see more
        if debug:
            raise
        print(f"error: internal error {type(exc).__name__}: {_one_line(str(exc))} (set P2PTOOLS_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def usage_error_line(exc: typer.TyperException, argv: list[str]) -> str:
    """One line for a usage error: the message and where the help is, e.g.
    ``error: No such option: --bogus (see 'p2ptools train --help')``."""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        where = ctx.command_path
    else:  # an option's missing value: the parser knows no command; the first argument names it
        commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
        where = f"p2ptools {argv[0]}" if argv and argv[0] in commands else "p2ptools"
    message = " ".join(exc.format_message().split())
    return f"error: {message} (see '{where} --help')"
