"""``p2ptools make-dataset NAME``: run a dataset builder (its own options are added at run time)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from p2ptools import registry
from p2ptools.buildkit.contract import BuildOptions
from p2ptools.cli.common import out
from p2ptools.cli.dynamic import build_options, dataclass_parameters, run_command
from p2ptools.download import BASE_URL_ENV, default_download_dir, download_sources, fetch_prebuilt
from p2ptools.errors import ConfigError

BUILD_PREFIX = "build__"
OWN_PREFIX = "own__"


class MissingName(typer.BadParameter):
    """A usage error (exit 2) worded as click's own "Missing argument" (no "Invalid value for")."""

    def format_message(self) -> str:
        return self.message


def make_dataset(ctx: typer.Context) -> None:
    """Build an aligned A|B dataset: p2ptools make-dataset NAME --source PATH --out DIR, plus options.

    `p2ptools make-dataset NAME --help` lists NAME's own options; `p2ptools datasets` lists builders.
    """
    args = list(ctx.args)
    if not args or args[0] in ("--help", "-h"):
        out.print(ctx.get_help())
        if not args:
            raise typer.Exit(2)
        return
    if args[0].startswith("-"):  # NAME comes first: the first word after an option is that option's value
        raise MissingName("Missing argument 'NAME': the dataset builder comes first, as in p2ptools make-dataset NAME "
                          "--source PATH --out DIR (`p2ptools datasets` lists the names)", ctx=ctx)
    name = args.pop(0)
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
            "download",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option("--download", help="Fetch the original archive(s) into --download-dir (resumable, checked), then build from them.", rich_help_panel="Download")],
        ),
        inspect.Parameter(
            "prebuilt",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option("--prebuilt", help="Fetch the published pix2pix archive and extract it into --out (no building).", rich_help_panel="Download")],
        ),
        inspect.Parameter(
            "download_dir",
            inspect.Parameter.KEYWORD_ONLY,
            default=default_download_dir(),
            annotation=Annotated[Path, typer.Option("--download-dir", help="Cache folder for downloads.", rich_help_panel="Download")],
        ),
        inspect.Parameter(
            "download_base_url",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[Optional[str], typer.Option("--download-base-url", help=f"Replace the download server's base URL (a mirror; also ${BASE_URL_ENV}).", rich_help_panel="Download")],  # noqa: UP007
        ),
        inspect.Parameter(
            "no_progress",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option("--no-progress", help="Do not draw a progress bar.")],
        ),
    ]
    defaults = {BUILD_PREFIX + key: value for key, value in cls.build_defaults().items()}
    if not cls.takes_source:  # generated data, or sources of its own options: --source/--download/--prebuilt do not apply
        params = [p for p in params if p.name not in ("source", "download", "prebuilt", "download_dir", "download_base_url")]
    params += [
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in dataclass_parameters(BuildOptions, BUILD_PREFIX, "Options of every builder")
        if cls.uses_size or p.name != BUILD_PREFIX + "size"  # a builder that does not resize has no --size to ignore
    ]
    params += dataclass_parameters(cls.Options, OWN_PREFIX, f"{name} options")

    def body(values: dict[str, Any]) -> None:
        values = {"source": [], "download": False, "prebuilt": False, "download_dir": None, "download_base_url": None,
                  BUILD_PREFIX + "size": BuildOptions.size, **values}  # the options a builder does not take
        build = build_options(BuildOptions, values, BUILD_PREFIX)
        builder = cls(build_options(cls.Options, values, OWN_PREFIX))
        sources, progress = values["source"] or [], not values["no_progress"]
        fetch = {"base_url": values["download_base_url"], "progress": progress}
        if values["download"] and values["prebuilt"]:
            raise ConfigError("use either --download (build from the original) or --prebuilt (the published archive)")
        if (values["download"] or values["prebuilt"]) and sources:
            raise ConfigError("--download/--prebuilt fetch the source themselves: drop --source")
        if values["prebuilt"]:
            counts = fetch_prebuilt(cls, values["out_dir"], values["download_dir"], overwrite=build.overwrite, **fetch)
            out.print(f"{name} (prebuilt): {', '.join(f'{k} {v}' for k, v in counts.items())} -> {values['out_dir']}")
            return
        if values["download"]:
            sources = download_sources(cls, values["download_dir"], **fetch)
        try:
            manifest = builder.build(sources, values["out_dir"], build, progress=progress)
        except KeyboardInterrupt:
            print(f"interrupted: the finished pairs are kept in {values['out_dir']}; rerun the same command to "
                  "resume", file=sys.stderr)
            raise typer.Exit(130) from None
        counts = ", ".join(f"{k} {v}" for k, v in manifest.counts.items()) or "no pairs"
        skipped = f", {len(manifest.skipped)} skipped (see manifest.json)" if manifest.skipped else ""
        out.print(f"{name}: {counts}{skipped} -> {values['out_dir']}")

    run_command(f"p2ptools make-dataset {name}", f"{cls.summary}\n\nSource: {cls.source_layout}", params, body, args)
