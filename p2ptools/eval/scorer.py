"""The FCN-8s scorer: weights, class table and preprocessing of the paper's "FCN score" protocol.

:func:`load_scorer` accepts

(a) a ``.safetensors`` written by ``p2ptools fcn convert`` (Cityscapes class table, 20 channels),
(b) the ``.caffemodel`` itself, converted once and cached in the user cache folder
    (``$P2PTOOLS_CACHE`` or the platform's, :func:`conversion_cache_path`; never beside the caffemodel,
    whose folder may be read-only), re-converted when the caffemodel's size or modification time changes,
(c) a checkpoint folder or its ``fcn8s.safetensors`` written by ``p2ptools fcn train`` (its own class
    table, width and mean).

Every weights file we write is self-describing: its safetensors metadata holds ``format`` =
``p2ptools-fcn8s/1`` and ``config`` = JSON with ``num_classes``, ``width``, ``classes`` (a
:class:`~p2ptools.labels.ClassTable` dict), ``mean_bgr`` and ``source``.

Protocol (GUIDE.md section 4), done by :meth:`Scorer.predict`: each uint8 RGB image is resized to the
label size with ``cv2.resize`` bilinear (``INTER_LINEAR``: half-pixel centres, i.e. ``align_corners=False``,
rounded back to uint8 -- as ``scipy.misc.imresize``'s bilinear upsampling in pix2pix's
``evaluate.py``; when both sides shrink, ``INTER_AREA`` averages like PIL's antialiased filter), then
float32, RGB -> BGR, the mean subtracted (Cityscapes: B, G, R = 72.78044, 83.21195, 73.45286), no
scaling, and the argmax over the score channels. A prediction ``>= classes.num_classes`` (the
Cityscapes model's 20th channel) means "no class".

Numerics: fp32 with TF32 off by default (reference grade); ``tf32=True`` lets cuDNN/cuBLAS use TF32
and ``precision="bf16"`` runs under bf16 autocast -- opt-in fast modes. Flags are set only while
:meth:`Scorer.predict` runs and restored afterwards.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from p2ptools.caffe import read_caffemodel
from p2ptools.cache import cache_root, file_key
from p2ptools.errors import CheckpointError, ConfigError, InputFileError, OutputError
from p2ptools.eval.scorers import ScorerOptions, SegmentationScorer
from p2ptools.labels import CITYSCAPES, ClassTable
from p2ptools.metrics.weights import check_not_empty
from p2ptools.nets.fcn8s import FCN8s, caffe_blobs_to_state_dict, check_state_dict, expected_shapes, infer_config, require_layers

FORMAT = "p2ptools-fcn8s/1"
#: The Cityscapes model's training mean, B, G, R.
CITYSCAPES_MEAN_BGR: tuple[float, float, float] = (72.78044, 83.21195, 73.45286)
#: File name of the weights inside a ``fcn train`` checkpoint folder.
CHECKPOINT_NAME = "fcn8s.safetensors"
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class ScorerConfig:
    """What a weights file says about itself."""

    num_classes: int
    width: float
    classes: ClassTable
    mean_bgr: tuple[float, float, float]
    source: dict
    train_size: int | None = None

    def to_metadata(self) -> dict[str, str]:
        config = {"num_classes": self.num_classes, "width": self.width, "classes": self.classes.to_dict(), "mean_bgr": list(self.mean_bgr), "source": self.source, "train_size": self.train_size}
        return {"format": FORMAT, "config": json.dumps(config)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None, path: Path) -> ScorerConfig:
        if not metadata or metadata.get("format") != FORMAT:
            found = (metadata or {}).get("format")
            raise CheckpointError(path, f"not FCN-8s scorer weights written by p2ptools (metadata format {found!r}, expected {FORMAT!r}); convert a caffemodel with 'p2ptools fcn convert'")
        try:
            c = json.loads(metadata["config"])
            return cls(int(c["num_classes"]), float(c["width"]), ClassTable.from_dict(c["classes"]), tuple(float(v) for v in c["mean_bgr"]), dict(c.get("source") or {}), c.get("train_size"))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"malformed FCN-8s metadata ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------- preprocessing


def resize_for_scoring(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (H, W, 3) uint8 RGB at ``size`` = (H, W), bilinear (see module doc)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"label size must be positive, got {size}")
    if image.shape[:2] == (height, width):
        return image
    shrink = height <= image.shape[0] and width <= image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)



def scoring_batches(images: Sequence[np.ndarray], size: tuple[int, int], batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, stack)`` for each ``batch`` of ``images`` resized to ``size`` = (H, W) by
    :func:`resize_for_scoring` and stacked; a bad image raises ValueError naming its index."""
    for start in range(0, len(images), batch):
        chunk = []
        for i, image in enumerate(images[start : start + batch], start):
            try:
                chunk.append(resize_for_scoring(image, size))
            except ValueError as exc:
                raise ValueError(f"image {i}: {exc}") from None
        yield start, np.stack(chunk)


def to_network_input(images: np.ndarray, mean_bgr: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 BGR minus ``mean_bgr`` ((1, 3, 1, 1), on the
    target device), no scaling. The uint8 batch is moved first (4x less traffic than float32)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(mean_bgr.device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).flip(1).float()  # RGB -> BGR; the NHWC memory is channels_last
    return x - mean_bgr


@contextmanager
def fp32_mode(tf32: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 in cuDNN convolutions and cuBLAS matmuls inside the block."""
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):  # torch >= 2.9 API
        old = (cudnn_conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
        mode = "tf32" if tf32 else "ieee"
        cudnn_conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = mode, mode
        try:
            yield
        finally:
            cudnn_conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = old
    else:  # older torch: the legacy flags
        old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


class Scorer(SegmentationScorer):
    """An FCN-8s network with its class table, mean and numerics (the registry's ``fcn8s`` scorer).

    Attributes:
        net: the :class:`FCN8s` (eval mode, on ``device``).
        classes: the class table predictions index into.
        config: the :class:`ScorerConfig` read from the weights.
        path: the weights file.
    """

    name = "fcn8s"
    version = "1"
    summary = "FCN-8s of pix2pix's FCN score (Cityscapes caffemodel, its conversion, or a 'p2ptools fcn train' checkpoint)"

    def __init__(self, net: FCN8s, config: ScorerConfig, path: Path, *, device: str = "cpu", precision: str = "fp32", tf32: bool = False, batch_size: int = 1) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.config, self.path = config, Path(path)
        self.precision, self.tf32, self.batch_size = precision, bool(tf32), int(batch_size)
        self.net = net.to(self.device).eval()
        if self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self._mean = torch.tensor(config.mean_bgr, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @property
    def classes(self) -> ClassTable:
        return self.config.classes

    @property
    def num_classes(self) -> int:
        """Score channels of the network (may exceed ``classes.num_classes``: "no class" channels)."""
        return self.config.num_classes

    @property
    def mean_bgr(self) -> tuple[float, float, float]:
        """The mean subtracted from the BGR input."""
        return self.config.mean_bgr

    def info(self) -> dict:
        """JSON-able description for reports: weights file, network, classes and numerics."""
        return {
            "weights": str(self.path), "num_classes": self.num_classes, "width": self.config.width,
            "classes": self.classes.name, "mean_bgr": list(self.mean_bgr), "device": str(self.device),
            "precision": self.precision, "tf32": self.tf32, "source": self.config.source,
        }  # fmt: skip

    @classmethod
    def from_weights(cls, weights: str | Path, options: ScorerOptions) -> Scorer:
        """The scorer contract's loader: :func:`load_scorer` (FCN-8s has no multi-scale test)."""
        if options.multi_scale:
            raise ConfigError("the fcn8s scorer has no multi-scale test (pix2pix's FCN score is single-scale)")
        return load_scorer(weights, device=options.device, precision=options.precision, tf32=options.tf32, batch_size=options.batch_size)

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 BGR minus the mean, on the device."""
        return to_network_input(images, self._mean)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """The scorer contract's preprocessing: :meth:`to_input`."""
        return self.to_input(images)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) network input -> (N, num_classes, H, W) scores."""
        return self.net(x)

    def predict(self, images: Sequence[np.ndarray], label_size: tuple[int, int], *, batch_size: int | None = None) -> np.ndarray:
        """Class indices of each image at ``label_size``.

        Args:
            images: uint8 RGB arrays (h, w, 3), any sizes.
            label_size: (H, W) of the ground-truth labels; images are resized to it.
            batch_size: images per forward pass (default: the scorer's).

        Returns:
            (N, H, W) uint8 argmax indices; values ``>= classes.num_classes`` are "no class".
        """
        height, width = int(label_size[0]), int(label_size[1])
        batch = int(batch_size or self.batch_size)
        out = np.empty((len(images), height, width), np.uint8)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with torch.inference_mode(), fp32_mode(self.tf32), autocast:
            for start, stack in scoring_batches(images, (height, width), batch):
                scores = self.net(self.to_input(stack))
                out[start : start + len(stack)] = scores.argmax(1).to(torch.uint8).cpu().numpy()
        return out


# ------------------------------------------------------------------------------- weights files


def save_fcn_weights(path: str | Path, tensors: dict[str, np.ndarray | torch.Tensor], config: ScorerConfig) -> None:
    """Write FCN-8s weights + metadata as safetensors atomically (temporary name, then rename)."""
    from safetensors.numpy import save_file

    path = Path(path)
    arrays = {k: (v.detach().cpu().contiguous().numpy() if isinstance(v, torch.Tensor) else np.ascontiguousarray(v, np.float32)) for k, v in tensors.items()}
    check_state_dict(arrays, expected_shapes(config.num_classes, config.width), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata=config.to_metadata())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if type(exc).__name__ == "SafetensorError" or isinstance(exc, OSError):  # a full disk, a read-only folder
            raise OutputError(path, exc if isinstance(exc, OSError) else f"cannot write ({exc})") from None
        raise


def _source_info(path: Path) -> dict:
    stat = path.stat()
    return {"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def caffemodel_config(caffemodel: Path, blobs: dict) -> ScorerConfig:
    """The config of a Cityscapes caffemodel: width and channels from its shapes, Cityscapes classes."""
    require_layers(blobs, caffemodel)
    num_classes, width = infer_config({name: b[0].shape for name, b in blobs.items() if b}, caffemodel)
    if num_classes < CITYSCAPES.num_classes:
        raise CheckpointError(caffemodel, f"layer 'score_fr' has {num_classes} output channels, fewer than the {CITYSCAPES.num_classes} Cityscapes classes")
    return ScorerConfig(num_classes, width, CITYSCAPES, CITYSCAPES_MEAN_BGR, _source_info(caffemodel))


def convert_caffemodel(caffemodel: str | Path, out: str | Path) -> ScorerConfig:
    """Convert a Cityscapes FCN-8s caffemodel to self-describing safetensors (every layer checked).

    Raises:
        InputFileError / CheckpointError: not a caffemodel, or not FCN-8s (the first missing or
            mismatching layer and both shapes named).
    """
    caffemodel = Path(caffemodel)
    blobs = read_caffemodel(caffemodel)
    config = caffemodel_config(caffemodel, blobs)
    tensors = caffe_blobs_to_state_dict(blobs, config.num_classes, config.width, caffemodel)
    save_fcn_weights(out, tensors, config)
    return config


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= path.stat().st_size - 8


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    check_not_empty(path, "FCN-8s weights")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputFileError(path, f"unreadable safetensors file ({exc})") from None


def conversion_cache_path(caffemodel: Path) -> Path:
    """Where a caffemodel's conversion is cached: the user cache folder (:mod:`p2ptools.cache`),
    keyed by the caffemodel's path, size and mtime; never beside the caffemodel."""
    return cache_root() / "fcn" / f"{caffemodel.stem}-{file_key(caffemodel)}.safetensors"


def _cached_conversion(caffemodel: Path) -> tuple[dict, ScorerConfig, Path]:
    cache = conversion_cache_path(caffemodel)
    if cache.is_file():
        try:  # a stale, foreign or corrupt cache is simply converted again
            tensors, metadata = _read_safetensors(cache)
            config = ScorerConfig.from_metadata(metadata, cache)
        except InputFileError:  # CheckpointError included
            config = None
        if config is not None and config.source == _source_info(caffemodel):
            return tensors, config, cache
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        config = convert_caffemodel(caffemodel, cache)
    except (OSError, OutputError):  # no writable cache: convert in memory every time
        blobs = read_caffemodel(caffemodel)
        config = caffemodel_config(caffemodel, blobs)
        return caffe_blobs_to_state_dict(blobs, config.num_classes, config.width, caffemodel), config, caffemodel
    tensors, _ = _read_safetensors(cache)
    return tensors, config, cache


def load_scorer(weights: str | Path, *, device: str = "cpu", precision: str = "fp32", tf32: bool = False, batch_size: int = 1) -> Scorer:
    """Load an FCN-8s scorer from converted safetensors, a caffemodel (cached), or a ``fcn train``
    checkpoint folder (see the module docstring).

    Raises:
        InputFileError: a missing or unreadable file.
        CheckpointError: weights of another network, naming the file and the first bad layer.
        ConfigError: a bad precision or an unavailable device.
    """
    path = Path(weights)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).is_file():
            raise InputFileError(path, f"no {CHECKPOINT_NAME} in this folder (expected a 'p2ptools fcn train' checkpoint)")
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise InputFileError(path, "no such weights file")
    check_not_empty(path, "an FCN-8s safetensors file" if Path(path).suffix == ".safetensors"
                    else "FCN-8s weights (a .safetensors, a 'p2ptools fcn train' checkpoint or the .caffemodel)")
    if path.suffix.lower() == ".safetensors" and not _is_safetensors(path):
        raise InputFileError(path, "not a safetensors file (no valid safetensors header); expected FCN-8s weights "
                                   "written by 'p2ptools fcn convert' or 'p2ptools fcn train'")
    if _is_safetensors(path):
        tensors, metadata = _read_safetensors(path)
        if not metadata or metadata.get("format") != FORMAT:
            # name the first mismatching layer when the tensors are another network's
            num_classes, width = infer_config({k: tuple(t.shape) for k, t in tensors.items()}, path)
            check_state_dict(tensors, expected_shapes(num_classes, width), path)
        config = ScorerConfig.from_metadata(metadata, path)
        source = path
    else:
        tensors, config, source = _cached_conversion(path)
    net = FCN8s(config.num_classes, config.width)
    net.load_checked(tensors, source)
    return Scorer(net, config, source, device=device, precision=precision, tf32=tf32, batch_size=batch_size)
