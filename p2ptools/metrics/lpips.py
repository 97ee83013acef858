"""LPIPS, paired: each output against its ground truth, with the ``lpips`` package's network.

The network is ``lpips.LPIPS(net=..., version="0.1", pnet_rand=True)``: its v0.1 linear layers come
from the files shipped inside the ``lpips`` package, and the backbone, which ``lpips`` would
download through torchvision, is built empty and filled from the user's local torchvision file
(``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``): torchvision's ``features.<i>`` become
``lpips``'s ``net.slice<k>.<i>``. Images are uint8 RGB mapped to [-1, 1] (``x / 127.5 - 1``, as
``lpips.im2tensor``); an output of another size than its ground truth is resized to the ground
truth's size (bilinear, ``cv2.INTER_LINEAR``, or ``INTER_AREA`` when shrinking) and counted.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used (the evaluator imports this module's state without it)
    import torch
    from torch import nn

from p2ptools.metrics.resize import as_rgb
from p2ptools.metrics.state import StreamingMetric
from p2ptools.metrics.weights import (
    ALEXNET,
    VGG16,
    WeightFile,
    load_into,
    load_state_dict,
    require_file,
    weight_info,
)

NETS: dict[str, WeightFile] = {"alex": ALEXNET, "vgg": VGG16}
#: The smallest side each backbone's pooling survives (AlexNet: 11x11 stride-4 conv and two 3x3 pools; VGG16: four 2x2 pools).
MIN_SIZE = {"alex": 31, "vgg": 16}
PROTOCOL = "lpips v0.1 linear layers (lpips package) on a local torchvision backbone; uint8 RGB / 127.5 - 1; spatial mean; outputs resized to their ground truth's size when they differ"


def backbone_state(lpips_net: nn.Module, torchvision_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``features.<i>.*`` tensors renamed to the lpips backbone's ``slice<k>.<i>.*``."""
    out = {}
    for key in lpips_net.state_dict():
        _slice, index, leaf = key.split(".", 2)
        source = f"features.{index}.{leaf}"
        if source in torchvision_state:
            out[key] = torchvision_state[source]
    return out


def load_lpips(net: str, backbone_weights: str | Path | None, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """``lpips.LPIPS`` with its shipped v0.1 linear weights and the backbone from a local file.

    Raises:
        ConfigError: unknown ``net`` or no backbone file given.
        CheckpointError: a backbone file of another network.
    """
    import lpips

    from p2ptools.errors import ConfigError

    if net not in NETS:
        raise ConfigError(f"--lpips-net: invalid value {net!r}; choose from {', '.join(NETS)}")
    path = require_file(backbone_weights, NETS[net], "--lpips needs")
    with contextlib.redirect_stdout(io.StringIO()):  # lpips prints what it loads
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
            model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)
    state = load_state_dict(path)
    renamed = backbone_state(model.net, state) if any(k.startswith("features.") for k in state) else state
    load_into(model.net, renamed, path, f"torchvision {net}{'16' if net == 'vgg' else ''} weights ({NETS[net].name})")
    lin_file = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    info = {"net": net, "version": "0.1", "backbone": weight_info(path, NETS[net]), "linear_layers": {"path": str(lin_file), "sha256": _sha(lin_file)}}
    return model.to(device).eval(), info


def _sha(path: Path) -> str:
    from p2ptools.imageio import sha256_file

    return sha256_file(path)


def to_lpips_input(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1] (``lpips.im2tensor``)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(as_rgb(image).transpose(2, 0, 1))).float()
    return (x / 127.5 - 1)[None]


def match_size(output: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, bool]:
    """``output`` at ``truth``'s size (resized when they differ) and whether it was resized."""
    if output.shape[:2] == truth.shape[:2]:
        return output, False
    h, w = truth.shape[:2]
    shrink = h <= output.shape[0] and w <= output.shape[1]
    return cv2.resize(output, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR), True


class LPIPSScorer:
    """Per-pair LPIPS distances of uint8 images, batched by size."""

    def __init__(self, model: nn.Module, device: str = "cpu", min_size: int = 1) -> None:
        import torch

        self.model, self.device, self.min_size = model, torch.device(device), min_size

    def __call__(self, outputs: list[np.ndarray], truths: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """(distances, number of outputs resized to their ground truth's size)."""
        import torch

        if len(outputs) != len(truths):
            raise ValueError(f"{len(outputs)} outputs but {len(truths)} ground-truth images")
        values = np.zeros(len(outputs), np.float64)
        resized = 0
        groups: dict[tuple[int, int], list[int]] = {}
        pairs = []
        for i, (out, truth) in enumerate(zip(outputs, truths, strict=True)):
            if min(truth.shape[:2]) < self.min_size:
                raise ValueError(f"LPIPS needs images of at least {self.min_size}x{self.min_size}, the ground truth of pair {i} is {truth.shape[1]}x{truth.shape[0]}")
            out, was = match_size(as_rgb(out), as_rgb(truth))
            resized += was
            pairs.append((out, as_rgb(truth)))
            groups.setdefault(truth.shape[:2], []).append(i)
        for idx in groups.values():
            a = torch.cat([to_lpips_input(pairs[i][0]) for i in idx]).to(self.device)
            b = torch.cat([to_lpips_input(pairs[i][1]) for i in idx]).to(self.device)
            with torch.inference_mode():
                values[idx] = self.model(a, b).reshape(-1).double().cpu().numpy()
        return values, resized


class LPIPSState(StreamingMetric):
    """Sum of the distances and their count (the mean), plus per-image values for the gallery."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.resized = 0
        self.per_image: dict[str, float] = {}

    def update(self, names: list[str], values: np.ndarray, resized: int = 0) -> None:
        for name, value in zip(names, values.tolist(), strict=True):
            self.per_image[name] = float(value)
        self.total += float(np.sum(values, dtype=np.float64))
        self.count += len(names)
        self.resized += resized

    def state(self) -> dict[str, np.ndarray]:
        return {"sum": np.array([self.total], np.float64), "count": np.array([self.count, self.resized], np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.total = float(state["sum"][0])
        self.count, self.resized = (int(v) for v in state["count"])

    def worst(self, k: int = 12) -> list[tuple[str, float]]:
        """The ``k`` highest distances, worst first (ties by name)."""
        return sorted(self.per_image.items(), key=lambda item: (-item[1], item[0]))[:k]

    def result(self) -> dict[str, Any]:
        return {"mean": self.total / self.count if self.count else None, "n_images": self.count, "resized_outputs": self.resized}
