"""pytorch-fid's Inception network (the FID standard) built without weights and filled from the
user's local ``pt_inception-2015-12-05-6726825d.pth``, and the feature pass over uint8 images.

The architecture is pytorch-fid's ``fid_inception_v3``: torchvision's Inception v3 with 1008
classes and no auxiliary head, its Mixed_5b-d, 6b-e, 7b and 7c blocks replaced by pytorch-fid's
``FIDInceptionA``/``C``/``E_1``/``E_2`` (TensorFlow's pooling quirks). We use pytorch-fid's own
block classes, so the network is theirs; only the download is left out. Features are the 2048
outputs of the final average pooling (pytorch-fid's block 3), in float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2ptools.metrics.fid import FEATURE_DIM
from p2ptools.metrics.resize import check_protocol, legacy_resize, to_unit_batch
from p2ptools.metrics.weights import (
    INCEPTION,
    load_into,
    load_state_dict,
    require_file,
    weight_info,
)


def fid_inception_v3() -> nn.Module:
    """pytorch-fid's FID Inception v3 with random weights (no download)."""
    import torchvision
    from pytorch_fid.inception import (
        FIDInceptionA,
        FIDInceptionC,
        FIDInceptionE_1,
        FIDInceptionE_2,
    )

    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


class InceptionPool3(nn.Module):
    """Input (N, 3, 299, 299) in [0, 1] -> (N, 2048) pool features, pytorch-fid's blocks 0-3."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        i = inception
        self.layers = nn.Sequential(
            i.Conv2d_1a_3x3, i.Conv2d_2a_3x3, i.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            i.Conv2d_3b_1x1, i.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            i.Mixed_5b, i.Mixed_5c, i.Mixed_5d, i.Mixed_6a, i.Mixed_6b, i.Mixed_6c, i.Mixed_6d, i.Mixed_6e,
            i.Mixed_7a, i.Mixed_7b, i.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )  # fmt: skip

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return self.layers(2 * unit - 1).flatten(1)


def load_inception(path: str | Path | None) -> tuple[nn.Module, dict[str, object]]:
    """The FID Inception from a local weights file, and what a report records of it.

    Raises:
        ConfigError: no path given (the message names the file and its public address).
        InputFileError / CheckpointError: a missing, unreadable or differently shaped file.
    """
    path = require_file(path, INCEPTION, "--fid and --kid need")
    net = fid_inception_v3()
    load_into(net, load_state_dict(path), path, "pytorch-fid Inception weights (pt_inception-2015-12-05)")
    return net, weight_info(path, INCEPTION)


class FeatureExtractor:
    """uint8 RGB images -> (N, 2048) float32 Inception features under a resize protocol.

    Args:
        inception: a network from :func:`load_inception`.
        protocol: ``clean`` or ``legacy`` (see :mod:`p2ptools.metrics.resize`).
        device: torch device.
    """

    dim = FEATURE_DIM

    def __init__(self, inception: nn.Module, protocol: str = "clean", device: str = "cpu") -> None:
        self.protocol = check_protocol(protocol)
        self.device = torch.device(device)
        # channels_last: oneDNN's (and cuDNN's) fast layout, about 1.4x on CPU; features within 1e-5 of NCHW
        self.net = InceptionPool3(inception).to(self.device).eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, FEATURE_DIM), np.float32)
        unit = to_unit_batch(images, self.protocol)
        if isinstance(unit, list):  # legacy: each image resized at its own size, then one batch
            batch = torch.cat([legacy_resize(u.to(self.device)) for u in unit])
        else:
            batch = unit.to(self.device)
        return self.net(batch.contiguous(memory_format=torch.channels_last)).float().cpu().numpy()


def features_of_files(paths: list[Path], extractor: FeatureExtractor, batch_size: int = 50, threads: int = 2) -> np.ndarray:
    """(N, 2048) features of image files, decoding the next batch in threads while the network runs."""
    from concurrent.futures import ThreadPoolExecutor

    from p2ptools.imageio import read_image

    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    out = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for images in pool.map(lambda chunk: [read_image(p) for p in chunk], chunks):
            out.append(extractor(images))
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)
