"""The two resizing protocols of the FID/KID feature pass, named and recorded in every report.

``clean`` (the default) is clean-fid's: each channel of the uint8 image as a float32 PIL image
(mode ``F``), ``Image.resize`` to 299x299 with ``BICUBIC`` (PIL antialiases when shrinking), values
clipped to [0, 255] and never rounded back to uint8. ``legacy`` is pytorch-fid's: the image as
``ToTensor`` makes it (uint8 / 255) resized inside the network with
``F.interpolate(..., mode="bilinear", align_corners=False)``, which aliases when shrinking (the
reason clean-fid exists), but is what most published FIDs used.

Either way the network then sees ``2 * x - 1`` of ``x`` in [0, 1] (pytorch-fid's normalisation).
Gray images are repeated to three channels first, as ``PIL.Image.convert("RGB")`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the protocol names are needed without it
    import torch

PROTOCOLS = ("clean", "legacy")
INCEPTION_SIZE = 299

PROTOCOL_TEXT = {
    "clean": "clean: PIL bicubic with antialiasing on float32 channels to 299x299, clipped to [0, 255], not quantised (clean-fid); then pytorch-fid's Inception on 2*x/255 - 1",
    "legacy": "legacy: uint8/255 resized in the network by F.interpolate bilinear, align_corners=False, to 299x299 (pytorch-fid); then pytorch-fid's Inception on 2*x - 1",
}


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS`, else ``ValueError`` naming the choices."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown resize protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return protocol


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1|3|4) uint8 -> (H, W, 3) uint8 (gray repeated, alpha dropped)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, C) image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] in (3, 4):
        return image[:, :, :3]
    raise ValueError(f"expected 1, 3 or 4 channels, got {image.shape[2]}")


def clean_resize(image: np.ndarray, size: int = INCEPTION_SIZE) -> np.ndarray:
    """clean-fid's resize: (H, W, 3) uint8 -> (size, size, 3) float32 in [0, 255].

    Example:
        >>> clean_resize(np.full((8, 8, 3), 7, np.uint8), 4)[0, 0].tolist()
        [7.0, 7.0, 7.0]
    """
    from PIL import Image

    image = as_rgb(image)
    channels = []
    for c in range(3):
        plane = Image.fromarray(image[:, :, c].astype(np.float32))  # mode "F"
        channels.append(np.asarray(plane.resize((size, size), resample=Image.BICUBIC)).clip(0, 255))
    return np.stack(channels, axis=2).astype(np.float32)


def to_unit_batch(images: list[np.ndarray], protocol: str) -> torch.Tensor | list[torch.Tensor]:
    """The network input before normalisation, values in [0, 1].

    ``clean``: one (N, 3, 299, 299) float32 tensor, resized here. ``legacy``: a list of (1, 3, H, W)
    tensors at their own sizes (the network resizes them, see :func:`legacy_resize`).
    """
    import torch

    check_protocol(protocol)
    if protocol == "clean":
        batch = np.stack([clean_resize(image) for image in images]).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(batch)).div(255)
    return [torch.from_numpy(np.ascontiguousarray(as_rgb(image).transpose(2, 0, 1)))[None].float().div(255) for image in images]


def legacy_resize(batch: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's in-network resize: bilinear, ``align_corners=False``, to 299x299."""
    import torch.nn.functional as F

    return F.interpolate(batch, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
