"""``p2ptools hed``: convert the published HED caffemodel once, so that builds load it in a blink."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from p2ptools.cli.common import out
from p2ptools.errors import ConfigError

app = typer.Typer(help="HED, the edge detector of edges2shoes / edges2handbags: convert its Caffe weights.", no_args_is_help=True)


@app.command("convert")
def convert(
    caffemodel: Annotated[Path, typer.Argument(help="hed_pretrained_bsds.caffemodel (new or V1 Caffe format).", show_default=False)],
    out_file: Annotated[Path, typer.Option("--out", help="Output .safetensors (for --hed-weights).", show_default=False)],
) -> None:
    """Convert the BSDS HED caffemodel to safetensors, checking every layer's name and shape."""
    from p2ptools.edges.hed import HED, save_hed

    if out_file.suffix.lower() != ".safetensors":
        raise ConfigError(f"--out {out_file}: the converted weights are a .safetensors file")
    start = time.perf_counter()
    net = HED.from_caffemodel(caffemodel)
    save_hed(net, out_file)
    params = sum(p.numel() for p in net.parameters())
    out.print(f"converted {caffemodel} -> {out_file} ({out_file.stat().st_size / 2**20:.1f} MiB, {params:,} parameters) "
              f"in {time.perf_counter() - start:.1f} s; use it with --hed-weights {out_file}")
