"""Local weight files: where the public copies live, checked loading, and their sha256.

Nothing is downloaded. A missing file is one line that names the option to pass and the public
address of the file; a file that is not a plain tensor state dict (``torch.load(weights_only=True)``)
or does not fit the network is one line naming the file and the first mismatching keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used
    import torch
    from torch import nn

from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.imageio import sha256_file


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: its name, the option that passes it and where to get it."""

    name: str
    option: str
    url: str

    @property
    def sha256_prefix(self) -> str:
        """The 8 hex digits torch.hub names put before the suffix (the start of the sha256)."""
        return Path(self.name).stem.rsplit("-", 1)[-1]


INCEPTION = WeightFile(
    "pt_inception-2015-12-05-6726825d.pth", "--inception-weights",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
)  # fmt: skip
ALEXNET = WeightFile("alexnet-owt-7be5be79.pth", "--lpips-backbone-weights", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
VGG16 = WeightFile("vgg16-397923af.pth", "--lpips-backbone-weights", "https://download.pytorch.org/models/vgg16-397923af.pth")


def check_not_empty(path: str | Path, what: str) -> Path:
    """``path`` as a Path; an :class:`InputFileError` naming it when it exists but holds 0 bytes (an
    interrupted download or copy), before a loader reports something obscure (``EOFError``).
    ``what`` names the file's kind, e.g. "VGG19 weights"."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(path, f"empty file (0 bytes), not {what}: the download or copy was cut short, fetch it again")
    return path


def require_file(path: str | Path | None, published: WeightFile, what: str) -> Path:
    """``path`` as a Path, or a :class:`ConfigError` saying which file to pass and where it lives
    (``what``: who needs it, with the verb, e.g. "--lpips needs")."""
    hint = f"pass {published.option} {published.name} (the public copy: {published.url}; nothing is downloaded)"
    if path is None:
        raise ConfigError(f"{what} local weights: {hint}")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, f"no such weights file; {hint}")
    return path


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` state dict, loaded with ``weights_only=True`` (no pickled code)."""
    import torch

    path = check_not_empty(path, "a torch weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise CheckpointError(path, f"not a torch weights file ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "not a state dict of tensors")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, what: str) -> None:
    """Load ``state`` into ``module`` strictly; a mismatch is one line with the first differing keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {', '.join(unexpected[:3])}")
        if wrong:
            parts.append(f"wrong shapes: {', '.join(wrong[:3])}")
        raise CheckpointError(path, f"not {what}: {'; '.join(parts)}")
    filled = dict(state)
    for key, value in expected.items():
        if key not in filled:  # old files lack BatchNorm's num_batches_tracked
            filled[key] = value
    module.load_state_dict(filled, strict=True)


def weight_info(path: str | Path, published: WeightFile) -> dict[str, object]:
    """What a report records of a weight file: path, sha256, and whether it is the published file."""
    digest = sha256_file(path)
    return {"path": str(path), "sha256": digest, "published_name": published.name, "matches_published": digest.startswith(published.sha256_prefix)}
