"""pix2pixHD objectives: multi-scale GAN loss, discriminator feature matching, VGG19 perceptual loss.

As in the official code:

- GAN loss summed over the ``num_D`` scales on each scale's last output: ``lsgan`` (default) is the
  squared error to 1 (real) / 0 (fake); ``vanilla`` the cross-entropy (here on logits, which is the
  official Sigmoid + BCELoss computed stably). The discriminator's loss is halved.
- Feature matching: ``sum_i sum_j (1 / num_D) * (4 / (n_layers_D + 1)) * L1(D_i^j(fake), D_i^j(real).detach())
  * lambda_feat`` over every intermediate feature map ``j`` (the final prediction excluded).
- VGG19 loss: ``sum_k w_k * L1(V_k(fake), V_k(real).detach()) * lambda_feat`` on relu1_1, relu2_1,
  relu3_1, relu4_1, relu5_1 with ``w = 1/32, 1/16, 1/8, 1/4, 1``; images enter VGG in [-1, 1]
  without ImageNet normalisation, as the official code feeds them. The VGG19 weights come from the
  user's torchvision file (``vgg19-dcbb9e9d.pth``, loaded with ``weights_only=True``); nothing is
  downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from p2ptools.errors import CheckpointError, ConfigError
from p2ptools.metrics.weights import check_not_empty

GAN_MODES = ("lsgan", "vanilla")
#: Weights of relu1_1 .. relu5_1 in the VGG loss.
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
#: torchvision ``vgg19().features`` slices ending at relu1_1 .. relu5_1.
VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
#: VGG19's configuration "E" up to conv5_1 (channels, or "M" for max pooling).
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)

Predictions = Sequence[Sequence[torch.Tensor]]


def gan_loss(predictions: Predictions, target_is_real: bool, mode: str) -> torch.Tensor:
    """GAN loss summed over the scales of a :class:`MultiscaleDiscriminator` output (last entry of each)."""
    if mode not in GAN_MODES:
        raise ConfigError(f"--gan-mode: invalid value {mode!r}; choose from {', '.join(GAN_MODES)}")
    total = None
    for features in predictions:
        logits = features[-1].float()
        target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
        term = F.mse_loss(logits, target) if mode == "lsgan" else F.binary_cross_entropy_with_logits(logits, target)
        total = term if total is None else total + term
    assert total is not None, "no discriminator outputs"
    return total


def feature_matching_loss(fake: Predictions, real: Predictions, lambda_feat: float) -> torch.Tensor:
    """L1 between the fake's and the detached real's intermediate features, weighted as the module says.

    ``n_layers_D`` is read from the outputs: each scale returns ``n_layers_D + 2`` maps.
    """
    num_d = len(fake)
    total = torch.zeros((), device=fake[0][0].device)
    for f_scale, r_scale in zip(fake, real, strict=True):
        n_layers = len(f_scale) - 2
        weight = (1.0 / num_d) * (4.0 / (n_layers + 1)) * lambda_feat
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + weight * F.l1_loss(f.float(), r.detach().float())
    return total


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features[:30]`` (indices kept, so ``features.<i>`` keys load) as five slices."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for item in _VGG19_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                c_in = int(item)
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1_1 .. relu5_1 of ``x`` (N, 3, H, W)."""
        out = []
        for start, stop in VGG_SLICES:
            for i in range(start, stop):
                x = self.features[i](x)
            out.append(x)
        return out


def load_vgg19(path: str | Path) -> VGG19Features:
    """VGG19 features from a torchvision state-dict file (``torch.load(weights_only=True)``).

    Keys ``features.<i>.{weight,bias}`` for the convolutions up to conv5_1 are used; the rest of the
    file (the other convolutions, the classifier) is ignored. A missing, unreadable or mismatched file
    is a :class:`CheckpointError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such VGG19 weights file (pass torchvision's vgg19-dcbb9e9d.pth with --vgg-weights, "
                                    "or train with --no-vgg-loss; a resumed run whose file moved: "
                                    "p2ptools train --resume RUN_DIR --vgg-weights NEW_PATH)")
    check_not_empty(path, "VGG19 weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights-only refusals all mean: not a plain state dict
        raise CheckpointError(path, f"not a torchvision state-dict file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"expected a state dict, got {type(state).__name__}")
    net = VGG19Features()
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(path, f"not a torchvision vgg19 state dict: {len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        raise CheckpointError(path, f"not vgg19 weights: shape mismatch {'; '.join(shapes[:3])}")
    net.load_state_dict({k: state[k].float() for k in expected})
    return net.eval()


def vgg_loss(vgg: VGG19Features, fake: torch.Tensor, real: torch.Tensor, lambda_feat: float) -> torch.Tensor:
    """``lambda_feat * sum_k w_k * L1(V_k(fake), V_k(real).detach())``."""
    f_feats = vgg(fake.float())
    with torch.no_grad():
        r_feats = vgg(real.float())
    total = torch.zeros((), device=fake.device)
    for w, f, r in zip(VGG_WEIGHTS, f_feats, r_feats, strict=True):
        total = total + w * F.l1_loss(f, r)
    return total * lambda_feat


def discriminator_loss(pred_fake: Predictions, pred_real: Predictions, mode: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Half the sum of the fake-as-fake and real-as-real GAN losses; returns (loss, detached terms)."""
    d_fake, d_real = gan_loss(pred_fake, False, mode), gan_loss(pred_real, True, mode)
    return 0.5 * (d_fake + d_real), {"D_fake": d_fake.detach(), "D_real": d_real.detach()}
