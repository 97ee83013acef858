"""Import a generator saved by the PyTorch pix2pix reference implementation (``latest_net_G.pth``).

The reference saves plain state dicts without architecture settings (GUIDE.md section 3), so the
user names the architecture (``--netG``, ``--ngf``, ``--norm``, ``--dropout``, channels) and the file
is checked against it key by key and shape by shape. Accepted variations: a ``module.`` prefix
(DataParallel), files without ``num_batches_tracked`` (older PyTorch; zeros are added), instance-norm
running statistics saved by PyTorch < 0.4 (dropped, as the reference's loader does), and with
``--norm none`` the reference's bias-free convolutions (zero biases are added: the same function).
The file is read with ``torch.load(weights_only=True)``: no code is ever unpickled.

The result is an ordinary run directory (``config.json`` + ``checkpoints/latest_G.safetensors``),
written to a temporary sibling folder and renamed into place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from p2ptools.training.foreign import import_generator
from p2ptools.training.foreign import read_state_dict as read_reference_state
from p2ptools_pix2pix.model import PLUGIN_NAME, architecture_flags, build_generator
from p2ptools_pix2pix.options import Pix2PixOptions


def plugin_version() -> str:
    """``p2ptools_pix2pix.__version__`` when defined, else "0.1.0"."""
    import p2ptools_pix2pix

    return str(getattr(p2ptools_pix2pix, "__version__", "0.1.0"))


# --- reading ------------------------------------------------------------------------------------


_NORM_BUFFERS = (".running_mean", ".running_var", ".num_batches_tracked")


def _complete_state(state: dict[str, torch.Tensor], net: torch.nn.Module, options: Pix2PixOptions) -> dict[str, torch.Tensor]:
    """Reconcile the legitimate differences of reference files with ``net``'s state dict.

    Adds ``num_batches_tracked`` (older files) and, for ``norm none``, the zero biases of the
    reference's bias-free convolutions; drops the running statistics that PyTorch < 0.4 saved for
    instance-norm layers (the reference's own loader removes them too: they are never used).
    """
    expected = net.state_dict()
    instance_norms = {name for name, m in net.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)}

    def stale(key: str) -> bool:  # statistics of a non-affine norm where we have an instance norm
        module = key.rsplit(".", 1)[0]
        return key not in expected and key.endswith(_NORM_BUFFERS) and module in instance_norms and f"{module}.weight" not in state

    state = {k: v for k, v in state.items() if not stale(k)}
    for key, value in expected.items():
        if key in state:
            continue
        module = key.rsplit(".", 1)[0]
        if key.endswith(".num_batches_tracked") and f"{module}.running_mean" in state:
            state[key] = torch.zeros_like(value)
        elif options.norm == "none" and key.endswith(".bias") and f"{module}.weight" in state and value.dim() == 1:
            state[key] = torch.zeros_like(value)
    return state


def guess_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """Flags describing a reference generator state dict (U-Net or ResNet layout), or None.

    Dropout is invisible in a U-Net's weights and therefore not guessed for it.
    """

    def norm_of(has_bias: bool) -> str:
        if any(k.endswith(".running_mean") for k in state):
            return "batch"
        return "instance" if has_bias else "none"

    try:
        if "model.model.0.weight" in state and "model.model.3.weight" in state:
            depth = max(k.split(".").count("model") for k in state) - 1
            first, last = state["model.model.0.weight"], state["model.model.3.weight"]
            ngf, input_nc, output_nc = first.shape[0], first.shape[1], last.shape[1]
            kind = "unet" if last.shape[0] == 2 * ngf else "encoder_decoder"
            norm = norm_of("model.model.0.bias" in state)
            return f"--netG {kind}_{2**depth} --ngf {ngf} --norm {norm} --input-nc {input_nc} --output-nc {output_nc}"
        if "model.1.weight" in state and state["model.1.weight"].dim() == 4:
            first = state["model.1.weight"]
            blocks = {m.group(1) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
            dropout = any(".conv_block.6.weight" in k for k in state)
            convs = [(int(m.group(1)), v) for k, v in state.items() if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
            output_nc = max(convs, key=lambda iv: iv[0])[1].shape[0]
            norm = norm_of("model.1.bias" in state)
            return (
                f"--netG resnet_{len(blocks)}blocks --ngf {first.shape[0]} --norm {norm} "
                f"{'--dropout' if dropout else '--no-dropout'} --input-nc {first.shape[1]} --output-nc {output_nc}"
            )
    except (IndexError, ValueError, KeyError):
        return None
    return None


# --- writing ------------------------------------------------------------------------------------


def import_reference_checkpoint(checkpoint: Path, options: Pix2PixOptions, run_dir: Path, overwrite: bool = False) -> Path:
    """Turn the reference's ``latest_net_G.pth`` into a run directory that ``translate`` can use
    (:func:`p2ptools.training.foreign.import_generator`, with this module's completion and guess).

    Raises:
        CheckpointError: unreadable file, NaN/inf values, or keys / shapes that differ from the
            architecture the options describe (one message listing them, with a guess of the file's).
        ConfigError: invalid options, or ``run_dir`` exists without ``overwrite``.
    """
    return import_generator(checkpoint, options, run_dir, overwrite, plugin=PLUGIN_NAME, version=plugin_version(),
                            build=build_generator, flags=architecture_flags, guess=guess_architecture,
                            complete=_complete_state)


__all__ = ["guess_architecture", "import_reference_checkpoint", "plugin_version", "read_reference_state"]
