"""Import a generator saved by the official NVIDIA/pix2pixHD code (``latest_net_G.pth``).

The official code saves ``netG.state_dict()``: keys ``model.*`` for ``--netG global`` and
``model.*``, ``model1_1.*``, ``model1_2.*`` for ``--netG local``, the very names of
:mod:`p2ptools_pix2pixhd.networks`. The file holds no settings, so the user names the architecture
(``--netG``, ``--ngf``, ``--n-downsample-global``, ``--n-blocks-*``, ``--label-nc``,
``--instance``/``--no-instance``, ``--norm``); it is checked key by key and shape by shape, read with
``torch.load(weights_only=True)``. The result is an ordinary run directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from p2ptools.training.foreign import import_generator
from p2ptools_pix2pixhd import __version__
from p2ptools_pix2pixhd.build import PLUGIN_NAME, architecture_flags, build_generator
from p2ptools_pix2pixhd.options import Pix2PixHDOptions


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
    return import_generator(checkpoint, options, run_dir, overwrite, plugin=PLUGIN_NAME, version=__version__,
                            build=build_generator, flags=architecture_flags, guess=guess_architecture)
