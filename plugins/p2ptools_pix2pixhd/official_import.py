"""Import a generator saved by the official NVIDIA/pix2pixHD code (``latest_net_G.pth``).

The official code saves ``netG.state_dict()``: keys ``model.*`` for ``--netG global`` and
``model.*``, ``model1_1.*``, ``model1_2.*`` for ``--netG local``, the very names of
:mod:`p2ptools_pix2pixhd.networks`. The file holds no settings, so the user names the architecture
(``--netG``, ``--ngf``, ``--n-downsample-global``, ``--n-blocks-*``, ``--label-nc``,
``--instance``/``--no-instance``, ``--norm``); it is checked key by key and shape by shape, read with
``torch.load(weights_only=True)``. The result is an ordinary run directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from p2ptools.errors import CheckpointError
from p2ptools.options import check_options, to_dict
from p2ptools.plugin import CONFIG_NAME
from p2ptools.training.foreign import check_import_target, read_state_dict, state_dict_problems, write_run
from p2ptools_pix2pixhd import __version__
from p2ptools_pix2pixhd.model import G_WEIGHTS
from p2ptools_pix2pixhd.networks import count_parameters
from p2ptools_pix2pixhd.options import Pix2PixHDOptions
from p2ptools_pix2pixhd.build import PLUGIN_NAME, build_generator


def architecture_flags(options: Pix2PixHDOptions) -> str:
    """The options that decide the generator's weights, as command-line flags."""
    flags = (f"--netG {options.netG} --ngf {options.ngf} --n-downsample-global {options.n_downsample_global} "
             f"--n-blocks-global {options.n_blocks_global} --label-nc {options.label_nc} "
             f"{'--instance' if options.instance else '--no-instance'} --norm {options.norm}")
    if options.netG == "local":
        flags += f" --n-local-enhancers {options.n_local_enhancers} --n-blocks-local {options.n_blocks_local}"
    return flags


def guess_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """What an official generator state dict looks like (netG, ngf, input channels), or None."""
    try:
        local = sorted({int(m.group(1)) for k in state if (m := re.match(r"model(\d+)_1\.", k))})
        first = state["model1_1.1.weight"] if local else state["model.1.weight"]
        block_ids = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
        first_block = min(block_ids, default=10**9)
        # the stride-2 convolutions come before the residual blocks (the transposed ones after)
        downs = sum(1 for k, v in state.items() if (m := re.fullmatch(r"model\.(\d+)\.weight", k)) and int(m.group(1)) < first_block
                    and v.dim() == 4 and v.shape[-1] == 3)
        blocks = len(block_ids)
        text = (f"--netG {'local' if local else 'global'} --ngf {first.shape[0]} --n-downsample-global {downs} "
                f"--n-blocks-global {blocks} with {first.shape[1]} input channels (label classes plus 1 with --instance)")
        return text + (f" --n-local-enhancers {len(local)}" if local else "")
    except (KeyError, IndexError, AttributeError):
        return None


def import_official_checkpoint(checkpoint: Path, options: Pix2PixHDOptions, run_dir: Path, overwrite: bool = False) -> Path:
    """Turn the official ``latest_net_G.pth`` into a run directory that ``translate`` can use.

    Raises:
        CheckpointError: unreadable file, NaN/inf values, or keys / shapes that differ from the
            architecture the options describe (one message listing them, with a guess of the file's).
        ConfigError: invalid options, or ``run_dir`` exists without ``overwrite``.
    """
    checkpoint, run_dir = Path(checkpoint), Path(run_dir)
    check_options(options)
    check_import_target(run_dir, overwrite)  # fail before the (slow) loading
    state = read_state_dict(checkpoint)
    net_g = build_generator(options)
    expected = net_g.state_dict()
    problems = state_dict_problems(expected, state)
    if problems:
        guess = guess_architecture(state)
        hint = f"; the file looks like {guess}" if guess else ""
        raise CheckpointError(checkpoint, f"does not match {architecture_flags(options)}: {problems}{hint}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(checkpoint, f"holds NaN or infinite values in {', '.join(bad[:3])}")
    net_g.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    config: dict[str, Any] = {
        "plugin": PLUGIN_NAME,
        "plugin_version": __version__,
        "options": to_dict(options),
        "data": None,
        "data_manifest_sha256": None,
        "generator_params": count_parameters(net_g),
        "discriminator_params": None,
        "imported_from": str(checkpoint),
    }
    weights = {k: v.detach().contiguous() for k, v in net_g.state_dict().items()}
    write_run(run_dir, {
        str(G_WEIGHTS): safetensors_bytes(weights, metadata={"format": "pt", "imported_from": checkpoint.name}),
        CONFIG_NAME: (json.dumps(config, indent=1) + "\n").encode(),
    }, overwrite)
    return run_dir
