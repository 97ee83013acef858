"""The DRN-D-105 scorer (registry name ``drn-d-105``): fyu/drn's ``drn-d-105_ms_cityscapes.pth``
read from a local file, and the test procedure of fyu/drn's ``segment.py``.

Weights: ``torch.load(path, weights_only=True)`` (no code from the file runs), a state dict with
DRNSeg's own keys (``base.*``, ``seg.*``, ``up.*``; see :mod:`p2ptools.nets.drn`). A checkpoint of
``segment.py train`` (``{"state_dict": ...}`` with DataParallel's ``module.`` prefix) is read too.
Every key and shape is checked; the first missing, mis-shaped or unexpected key is named.

Preprocessing (``segment.py``'s ``ToTensor`` + ``Normalize`` with the Cityscapes ``info.json``):
RGB / 255, minus :data:`MEAN`, divided by :data:`STD`.

Single-scale test (``segment.py test``): the log-softmax of the network's output, cropped to the
image size (a no-op when H and W are multiples of 8, as 1024x2048 is), argmax over the 19 classes.

Multi-scale test (``segment.py test --ms``, flip off as theirs): the image and its PIL-bicubic
resizes to ``(int(w * s), int(h * s))`` for s in :data:`MS_SCALES`; each output's log-softmax is
resized per channel back to the image size with PIL's bilinear filter (skipped at the image's
size), the six are summed in float32 in that order, argmax.

Numerics: fp32 with TF32 off by default; ``tf32`` and ``precision="bf16"`` are opt-in fast modes
(as the FCN scorer's).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.eval.scorer import fp32_mode, scoring_batches
from p2ptools.eval.scorers import ScorerOptions, SegmentationScorer, check_scorer_options
from p2ptools.labels import CITYSCAPES
from p2ptools.nets.drn import DRNSeg

#: fyu/drn's ``datasets/cityscapes/info.json``: mean and std of the training images, RGB in [0, 1].
MEAN: tuple[float, float, float] = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
STD: tuple[float, float, float] = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
#: ``segment.py``'s extra scales of the multi-scale test (the image itself comes first).
MS_SCALES: tuple[float, ...] = (0.5, 0.75, 1.25, 1.5, 1.75)
PUBLISHED_NAME = "drn-d-105_ms_cityscapes.pth"


def read_drn_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a DRNSeg weights file and how they were stored ("state dict" or
    "segment.py checkpoint"), read with ``weights_only=True`` on the CPU.

    Raises:
        InputFileError: a missing file or one ``torch.load(weights_only=True)`` cannot read.
        CheckpointError: a readable file that holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such weights file (DRN-D-105: fyu/drn's drn-d-105_ms_cityscapes.pth)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not usable weights
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, f"not a PyTorch weights file readable with weights_only=True ({first})") from None
    how = "state dict"
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data, how = data["state_dict"], "segment.py checkpoint"
    if not isinstance(data, dict) or not data:
        raise CheckpointError(path, f"holds a {type(data).__name__}, not a state dict of DRN-D-105 weights")
    if all(isinstance(k, str) and k.startswith("module.") for k in data):
        data = {k[len("module.") :]: v for k, v in data.items()}
        how += " (DataParallel 'module.' prefix removed)"
    return data, how


class DRNScorer(SegmentationScorer):
    """DRN-D-105 (fyu/drn's DRNSeg) with Cityscapes' 19 train classes and ``segment.py``'s test."""

    name = "drn-d-105"
    version = "1"
    summary = "DRN-D-105 of fyu/drn (drn-d-105_ms_cityscapes.pth), the mIoU protocol of pix2pixHD/SPADE; single- or multi-scale"

    def __init__(self, net: DRNSeg, path: Path, options: ScorerOptions, *, stored_as: str = "state dict") -> None:
        check_scorer_options(options)
        self.options, self.path, self.stored_as = options, Path(path), stored_as
        self.classes = CITYSCAPES
        self.device = torch.device(options.device)
        self.net = net.to(self.device).eval()
        self._mean = torch.tensor(MEAN, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(STD, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_weights(cls, weights: str | Path, options: ScorerOptions) -> DRNScorer:
        """Load ``weights`` (see the module docstring); nothing is downloaded.

        Raises:
            InputFileError / CheckpointError: naming the file (and the first mismatched key).
            ConfigError: a bad precision or batch size, or CUDA asked for but absent.
        """
        check_scorer_options(options)
        if torch.device(options.device).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {options.device!r} requested but CUDA is not available")
        tensors, how = read_drn_state_dict(weights)
        net = DRNSeg.from_state_dict(tensors, weights, CITYSCAPES.num_classes)
        return cls(net, Path(weights), options, stored_as=how)

    @property
    def scales(self) -> tuple[float, ...]:
        """The scales of the test: (1.0,) single-scale, (1.0, 0.5, ..., 1.75) multi-scale."""
        return (1.0, *MS_SCALES) if self.options.multi_scale else (1.0,)

    def info(self) -> dict:
        o = self.options
        return {"scorer": self.name, "weights": str(self.path), "stored_as": self.stored_as, "num_classes": self.classes.num_classes,
                "classes": self.classes.name, "mean_rgb": list(MEAN), "std_rgb": list(STD), "multi_scale": o.multi_scale,
                "scales": list(self.scales), "flip": False, "device": str(self.device), "precision": o.precision, "tf32": o.tf32}

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 ``(x / 255 - MEAN) / STD`` on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div(255)
        return (x - self._mean) / self._std

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> (N, 19, 8 ceil(H/8), 8 ceil(W/8)) scores (see :class:`DRNSeg`)."""
        return self.net(x)

    def _log_probs(self, images: np.ndarray) -> torch.Tensor:
        return torch.log_softmax(self.logits(self.preprocess(images)).float(), dim=1)

    def predict(self, images: Sequence[np.ndarray], label_size: tuple[int, int], *, batch_size: int | None = None) -> np.ndarray:
        """Class indices of each image at ``label_size`` = (H, W); images are resized to it first
        (bilinear, :func:`p2ptools.eval.scorer.resize_for_scoring`), then segmented.

        Returns:
            (N, H, W) uint8 train ids in [0, 19).
        """
        height, width = int(label_size[0]), int(label_size[1])
        batch = int(batch_size or self.options.batch_size)
        out = np.empty((len(images), height, width), np.uint8)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.options.precision == "bf16" else nullcontext()
        with torch.inference_mode(), fp32_mode(self.options.tf32), autocast:
            for start, stack in scoring_batches(images, (height, width), batch):
                if self.options.multi_scale:
                    out[start : start + len(stack)] = self._multi_scale(stack)
                else:
                    scores = self._log_probs(stack)[:, :, :height, :width]
                    out[start : start + len(stack)] = scores.argmax(1).to(torch.uint8).cpu().numpy()
        return out

    def _multi_scale(self, images: np.ndarray) -> np.ndarray:
        """``segment.py``'s ``test_ms`` on a batch of equally sized images (module docstring)."""
        n, h, w = images.shape[:3]
        total: np.ndarray | int = 0
        for scale in self.scales:
            if scale == 1.0:
                scaled = images
            else:
                size = (int(w * scale), int(h * scale))
                scaled = np.stack([np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)) for image in images])
            probs = self._log_probs(scaled).cpu().numpy()
            total = total + resize_channels(probs, (h, w))
        return np.asarray(total).argmax(axis=1).astype(np.uint8)


def resize_channels(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) float32 -> (N, C, H, W) with PIL's bilinear filter on each channel (antialiased
    when shrinking), as ``segment.py``'s ``resize_4d_tensor``; unchanged when already (H, W)."""
    height, width = int(size[0]), int(size[1])
    if scores.shape[2:] == (height, width):
        return scores
    out = np.empty((*scores.shape[:2], height, width), np.float32)
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            out[i, j] = np.asarray(Image.fromarray(scores[i, j]).resize((width, height), Image.BILINEAR))
    return out
