"""HED (holistically-nested edge detection, Xie & Tu 2015) in PyTorch, loading the BSDS caffemodel.

The network is the one pix2pix used to draw the edges of edges2shoes / edges2handbags
(``hed_pretrained_bsds.caffemodel``), layer for layer (GUIDE section 8):

- the VGG16 trunk ``conv1_1`` .. ``conv5_3`` (``conv1_1`` pads 35, the others 1; ceil-mode 2x2 max
  pooling after blocks 1-4, no pool5), from :class:`p2ptools.nets.vgg.VGG16Trunk`;
- side outputs ``score-dsn1`` .. ``score-dsn5``: 1x1 convolutions to one channel on conv1_2,
  conv2_2, conv3_3, conv4_3 and conv5_3;
- learned bias-free deconvolutions ``upsample_2/4/8/16`` (kernel/stride 4/2, 8/4, 16/8, 32/16) for
  sides 2-5;
- each side cropped to the input size at offsets 34, 35, 36, 38, 42 (Caffe's ``Crop`` layers);
- fusion: the five sides concatenated -> ``new-score-weighting`` (1x1 convolution) -> sigmoid
  (``sigmoid-fuse``).

Attribute names are the Caffe names with ``-`` replaced by ``_`` (:data:`CAFFE_NAMES` maps them), so
the state dict reads ``conv1_1.weight``, ``score_dsn1.bias``, ``upsample_2.weight``, ...

:func:`detect_edges` applies the reference preprocessing (reflect-pad 128, RGB -> BGR, subtract the
BGR mean, no scaling) and crops the padding back off, batching images of equal size.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2ptools.devices import resolve_device
from p2ptools.errors import CheckpointError, InputFileError
from p2ptools.metrics.weights import check_not_empty
from p2ptools.nets.vgg import VGG16_CONV_NAMES, VGG16Trunk

#: Caffe's BGR mean subtracted by the reference HED scripts.
BGR_MEAN: tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)
#: Reflection padding added around each image before the network (and cropped off after).
BORDER = 128
#: Crop offsets of the five side outputs (Caffe's Crop layers), dsn1 .. dsn5.
SIDE_OFFSETS: tuple[int, ...] = (34, 35, 36, 38, 42)
#: Upsampling factor of each side output (dsn1 is at full resolution).
SIDE_FACTORS: tuple[int, ...] = (1, 2, 4, 8, 16)
#: Python attribute name -> Caffe layer name, for every layer with weights.
CAFFE_NAMES: dict[str, str] = {
    **{name: name for name in VGG16_CONV_NAMES},
    **{f"score_dsn{i}": f"score-dsn{i}" for i in range(1, 6)},
    **{f"upsample_{f}": f"upsample_{f}" for f in SIDE_FACTORS[1:]},
    "new_score_weighting": "new-score-weighting",
}
SAFETENSORS_FORMAT = "p2ptools-hed"


class HED(VGG16Trunk):
    """The HED BSDS network.

    Args:
        width: channel multiplier of the VGG trunk (1.0 = the published network; smaller widths
            exist for tests and demos and load only from our safetensors files).

    ``forward`` takes an already preprocessed (N, 3, H, W) float tensor (BGR, mean subtracted) and
    returns the fused edge probability (N, 1, H, W) in [0, 1].
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__(first_pad=35, width=width)
        for i, channels in enumerate(self.block_channels(), start=1):
            setattr(self, f"score_dsn{i}", nn.Conv2d(channels, 1, 1))
        for f in SIDE_FACTORS[1:]:
            setattr(self, f"upsample_{f}", nn.ConvTranspose2d(1, 1, 2 * f, stride=f, bias=False))
        self.new_score_weighting = nn.Conv2d(5, 1, 1)

    def side_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five side scores (before sigmoid), upsampled and cropped to x's size: 5 x (N, 1, H, W)."""
        h, w = x.shape[-2:]
        blocks, _ = self.run_blocks(x, pool_last=False)
        sides = []
        for i, (feat, factor, off) in enumerate(zip(blocks, SIDE_FACTORS, SIDE_OFFSETS), start=1):
            score = getattr(self, f"score_dsn{i}")(feat)
            if factor > 1:
                score = getattr(self, f"upsample_{factor}")(score)
            if score.shape[-2] < off + h or score.shape[-1] < off + w:  # cannot happen for H, W >= 1
                raise RuntimeError(f"side output {i} of size {tuple(score.shape[-2:])} is too small to crop {h}x{w} at {off}")
            sides.append(score[..., off : off + h, off : off + w])
        return sides

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.new_score_weighting(torch.cat(self.side_outputs(x), dim=1)))

    # ------------------------------------------------------------------------------ weights

    def load_blobs(self, blobs: dict[str, list[np.ndarray]], path: str | Path) -> None:
        """Copy Caffe blobs (layer name -> [weight, bias?]) into the network, checking every shape.

        The ``upsample_*`` deconvolutions have no bias; a zero bias blob (Caffe's default
        ``bias_term`` with a frozen zero filler) is accepted and dropped.

        Raises:
            CheckpointError: a layer missing (all missing names listed), a wrong blob count (a
                nonzero deconvolution bias included), or a blob whose shape differs from the
                network's (layer and both shapes named).
        """
        from p2ptools.caffe import fit_blob

        missing = [caffe for caffe in CAFFE_NAMES.values() if caffe not in blobs]
        if missing:
            raise CheckpointError(path, f"not an HED model: missing layer(s) {', '.join(missing)}")
        state = {}
        for attr, caffe in CAFFE_NAMES.items():
            module = getattr(self, attr)
            params = {"weight": module.weight}
            if module.bias is not None:
                params["bias"] = module.bias
            got = list(blobs[caffe])
            if attr.startswith("upsample_") and len(got) == 2 and np.size(got[1]) == 1 and not np.any(got[1]):
                got = got[:1]  # a Deconvolution saved with Caffe's default (zero, frozen) bias term: no bias
            if len(got) != len(params):
                raise CheckpointError(path, f"layer {caffe!r} has {len(got)} blob(s), expected {len(params)} ({', '.join(params)})")
            for index, (key, param) in enumerate(params.items()):
                blob = fit_blob(got[index], tuple(param.shape), layer=caffe, path=path, index=index)
                state[f"{attr}.{key}"] = torch.from_numpy(np.array(blob, dtype=np.float32))
        self.load_state_dict(state)

    @classmethod
    def from_caffemodel(cls, path: str | Path) -> HED:
        """The published network from ``hed_pretrained_bsds.caffemodel`` (read without Caffe)."""
        from p2ptools.caffe import read_caffemodel

        net = cls()
        net.load_blobs(read_caffemodel(path), path)
        return net.eval()

    @classmethod
    def from_safetensors(cls, path: str | Path) -> HED:
        """A network saved by :func:`save_hed` (state-dict keys, width in the metadata)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "no such file")
        check_not_empty(path, "HED weights")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None
        try:
            width = float(meta.get("width", "1.0"))
        except ValueError:
            raise CheckpointError(path, f"bad width {meta.get('width')!r} in the metadata") from None
        net = cls(width=width)
        expected = net.state_dict()
        missing = [k for k in expected if k not in tensors]
        unexpected = [k for k in tensors if k not in expected]
        if missing or unexpected:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unexpected {', '.join(unexpected)}"] if unexpected else [])
            raise CheckpointError(path, f"not an HED state dict: {'; '.join(parts)}")
        for key, value in expected.items():
            if tuple(tensors[key].shape) != tuple(value.shape):
                raise CheckpointError(path, f"{key} has shape {tuple(tensors[key].shape)}, expected {tuple(value.shape)}")
        net.load_state_dict({k: v.float() for k, v in tensors.items()})
        return net.eval()


def load_hed(path: str | Path) -> HED:
    """Load HED from a ``.caffemodel`` or from a ``.safetensors`` file written by :func:`save_hed`."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file (expected hed_pretrained_bsds.caffemodel or a converted .safetensors)")
    check_not_empty(path, "HED weights (hed_pretrained_bsds.caffemodel or a converted .safetensors)")
    if path.suffix.lower() == ".safetensors":
        return HED.from_safetensors(path)
    if path.suffix.lower() == ".caffemodel":
        return HED.from_caffemodel(path)
    raise InputFileError(path, "unknown weights format: expected a .caffemodel or .safetensors file")


def save_hed(net: HED, path: str | Path) -> None:
    """Save ``net`` as safetensors (state-dict keys; metadata: format, width, Caffe name map), atomically."""
    from safetensors.torch import save

    from p2ptools.imageio import write_bytes_atomic

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": SAFETENSORS_FORMAT, "width": repr(net.width), "caffe_names": json.dumps(CAFFE_NAMES)}
    write_bytes_atomic(path, save(tensors, metadata=meta))


def preprocess(image: np.ndarray) -> np.ndarray:
    """The reference HED input: reflect-pad 128, RGB -> BGR, subtract :data:`BGR_MEAN`.

    Args:
        image: uint8 (H, W, 3) RGB.

    Returns:
        float32 (3, H + 256, W + 256), channels BGR.
    """
    padded = np.pad(image.astype(np.float32), ((BORDER, BORDER), (BORDER, BORDER), (0, 0)), mode="reflect")
    bgr = padded[:, :, ::-1] - np.asarray(BGR_MEAN, dtype=np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))


def _check_image(image: np.ndarray, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"images[{index}] must be a uint8 (H, W, 3) RGB array, got {getattr(image, 'dtype', type(image))} "
            f"{getattr(image, 'shape', '')}"
        )


def detect_edges(
    images: Sequence[np.ndarray], net: HED, device: str | torch.device = "cpu", batch_size: int = 8
) -> list[np.ndarray]:
    """HED edge probabilities (``sigmoid-fuse``) of RGB images, as the reference script computes them.

    Images of equal size are batched together (``batch_size`` at a time); the network runs on
    ``device`` (``"auto"`` picks CUDA when present) in full float32 (TF32 disabled).

    Args:
        images: uint8 (H, W, 3) RGB arrays, any sizes.
        net: a loaded :class:`HED`.
        device: torch device or ``"auto"``.
        batch_size: images per forward pass.

    Returns:
        One float32 (H, W) map in [0, 1] per image, in input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, image in enumerate(images):
        _check_image(image, i)
    dev = resolve_device(device) if isinstance(device, str) else device
    net = net.to(dev).eval()
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        groups[image.shape[:2]].append(i)
    results: list[np.ndarray | None] = [None] * len(images)
    no_tf32 = torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if dev.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), no_tf32:
        for (h, w), indices in groups.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = torch.from_numpy(np.stack([preprocess(images[i]) for i in chunk])).to(dev)
                prob = net(batch)[:, 0, BORDER : BORDER + h, BORDER : BORDER + w]
                for i, p in zip(chunk, prob.float().cpu().numpy()):
                    results[i] = np.ascontiguousarray(p, dtype=np.float32)
    return results  # type: ignore[return-value]
