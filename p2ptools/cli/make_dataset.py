"""``p2ptools make-dataset NAME``: run a dataset builder (its own options are added at run time)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from p2ptools import registry
from p2ptools.build.contract import BuildOptions
from p2ptools.cli.common import out
from p2ptools.cli.dynamic import build_options, dataclass_parameters, run_command

BUILD_PREFIX = "build__"
OWN_PREFIX = "own__"


def make_dataset(ctx: typer.Context) -> None:
    """Build an aligned A|B dataset: p2ptools make-dataset NAME --source PATH --out DIR [options].

    `p2ptools make-dataset NAME --help` lists NAME's own options; `p2ptools datasets` lists builders.
    """
    args = list(ctx.args)
    name = next((a for a in args if not a.startswith("-")), None)
    if name is None or name in ("--help", "-h"):
        out.print(ctx.get_help())
        if name is None and not any(a in ("--help", "-h") for a in args):
            raise typer.Exit(2)
        return
    args.remove(name)
    cls = registry.load("datasets", name)
    params = [
        inspect.Parameter(
            "source",
            inspect.Parameter.KEYWORD_ONLY,
            default=[],
            annotation=Annotated[Optional[list[Path]], typer.Option("--source", help=f"Source folder or archive (repeatable). {cls.source_layout}")],  # noqa: UP007
        ),
        inspect.Parameter(
            "out_dir",
            inspect.Parameter.KEYWORD_ONLY,
            default=Path("data") / name,
            annotation=Annotated[Path, typer.Option("--out", help="Output dataset root.")],
        ),
        inspect.Parameter(
            "no_progress",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option("--no-progress", help="Do not draw a progress bar.")],
        ),
    ]
    params += [
        p.replace(default=cls.default_format) if p.name == BUILD_PREFIX + "format" else p
        for p in dataclass_parameters(BuildOptions, BUILD_PREFIX, "Options of every builder")
    ]
    params += dataclass_parameters(cls.Options, OWN_PREFIX, f"{name} options")

    def body(values: dict[str, Any]) -> None:
        build = build_options(BuildOptions, values, BUILD_PREFIX)
        builder = cls(build_options(cls.Options, values, OWN_PREFIX))
        manifest = builder.build(values["source"] or [], values["out_dir"], build, progress=not values["no_progress"])
        counts = ", ".join(f"{k} {v}" for k, v in manifest.counts.items()) or "no pairs"
        skipped = f", {len(manifest.skipped)} skipped (see manifest.json)" if manifest.skipped else ""
        out.print(f"{name}: {counts}{skipped} -> {values['out_dir']}")

    run_command(f"p2ptools make-dataset {name}", f"{cls.summary}\n\nSource: {cls.source_layout}", params, body, args)
