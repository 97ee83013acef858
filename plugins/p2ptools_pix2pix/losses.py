"""The pix2pix objectives (the paper's Table 1 rows) and the GAN losses.

``--loss`` picks the terms: ``l1`` (no discriminator at all), ``gan`` (D judges the output alone),
``cgan`` (D judges the input and output concatenated on channels), ``l1+gan`` and ``l1+cgan`` (the
paper's full objective, ``G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G)``).

GAN losses as in the reference: ``vanilla`` is the cross-entropy on logits (BCEWithLogits, targets
1 for real and 0 for fake), ``lsgan`` the squared error to the same targets, ``wgangp`` the
Wasserstein critic loss (``-mean D(real)`` and ``mean D(fake)``) with the gradient penalty
``10 * mean((|grad D(x_hat)|_2 - 1)^2)`` on random interpolates ``x_hat`` between D's real and fake
inputs (:func:`gradient_penalty`, the reference's ``cal_gradient_penalty`` of type "mixed"). The discriminator's
loss is halved ("slows down the rate at which D learns relative to G"), and the generator uses the
non-saturating loss (it maximises log D(x, G(x)) by labelling its fakes as real).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from p2ptools.errors import ConfigError

LOSSES = ("l1", "gan", "cgan", "l1+gan", "l1+cgan")
GAN_MODES = ("vanilla", "lsgan", "wgangp")
#: Weight of the WGAN-GP gradient penalty (Gulrajani et al.; the reference's ``lambda_gp``).
LAMBDA_GP = 10.0


@dataclass(frozen=True)
class Objective:
    """Which terms an objective has. ``conditional``: D sees ``cat(input, output)``."""

    l1: bool
    gan: bool
    conditional: bool

    def discriminator_channels(self, input_nc: int, output_nc: int) -> int | None:
        """Input channels of the discriminator, or None when the objective has no discriminator."""
        if not self.gan:
            return None
        return input_nc + output_nc if self.conditional else output_nc


def parse_objective(loss: str) -> Objective:
    """``"l1+cgan"`` -> ``Objective(l1=True, gan=True, conditional=True)``; unknown names raise ConfigError."""
    if loss not in LOSSES:
        raise ConfigError(f"--loss: invalid value {loss!r}; choose from {', '.join(LOSSES)}")
    terms = set(loss.split("+"))
    return Objective(l1="l1" in terms, gan=bool(terms & {"gan", "cgan"}), conditional="cgan" in terms)


def gan_loss(logits: torch.Tensor, target_is_real: bool, mode: str) -> torch.Tensor:
    """Mean GAN loss of discriminator ``logits`` (any shape) against an all-real or all-fake target.

    Computed in float32 even under autocast (the logits are upcast).
    """
    if mode not in GAN_MODES:
        raise ConfigError(f"--gan-mode: invalid value {mode!r}; choose from {', '.join(GAN_MODES)}")
    logits = logits.float()
    if mode == "wgangp":
        return -logits.mean() if target_is_real else logits.mean()
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(logits, target)


def gradient_penalty(net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float = LAMBDA_GP) -> torch.Tensor:
    """WGAN-GP penalty ``lambda_gp * mean_i (|grad_x D(x_i)|_2 - 1)^2`` at ``x_i = a_i real_i + (1 - a_i) fake_i``.

    ``real`` and ``fake`` are D's inputs (N, C, H, W) (``fake`` detached by the caller); ``a_i``
    is uniform in [0, 1), one per sample, from the global torch RNG. The gradient is taken per
    sample over all its input values, in float32, with a graph (the penalty is backpropagated).
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=torch.float32)
    x_hat = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
    out = net_d(x_hat).float()
    (grad,) = torch.autograd.grad(out, x_hat, grad_outputs=torch.ones_like(out), create_graph=True)
    norms = (grad.reshape(grad.shape[0], -1) + 1e-16).norm(2, dim=1)
    return lambda_gp * ((norms - 1.0) ** 2).mean()


def discriminator_input(objective: Objective, real_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
    """What D sees: ``cat(input, output)`` on channels when conditional, else the output alone."""
    return torch.cat([real_a, image_b], dim=1) if objective.conditional else image_b


def discriminator_loss(
    net_d: nn.Module, objective: Objective, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor, mode: str,
    net_d_plain: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's loss ``0.5 * (L(D(fake), 0) + L(D(real), 1))``, plus the gradient penalty for
    ``wgangp``; ``fake_b`` is detached here.

    ``net_d_plain`` (default ``net_d``) is the unwrapped D the penalty's double backward runs
    through (DistributedDataParallel does not support it; the penalty's parameter gradients
    still reach DDP's all-reduce in the one backward). Returns the loss and the detached terms
    ``{"D_real", "D_fake"}`` (and ``"D_GP"`` for wgangp) for logging.
    """
    fake_in = discriminator_input(objective, real_a, fake_b.detach())
    real_in = discriminator_input(objective, real_a, real_b)
    loss_fake = gan_loss(net_d(fake_in), False, mode)
    loss_real = gan_loss(net_d(real_in), True, mode)
    loss = 0.5 * (loss_fake + loss_real)
    terms = {"D_real": loss_real.detach(), "D_fake": loss_fake.detach()}
    if mode == "wgangp":
        with torch.autocast(real_in.device.type, enabled=False):
            penalty = gradient_penalty(net_d_plain if net_d_plain is not None else net_d, real_in, fake_in)
        loss = loss + penalty
        terms["D_GP"] = penalty.detach()
    return loss, terms


def generator_loss(
    net_d: nn.Module | None,
    objective: Objective,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    fake_b: torch.Tensor,
    mode: str,
    lambda_l1: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's loss: non-saturating ``L(D(fake), 1)`` (if the objective has a GAN term) plus
    ``lambda_l1 * |fake - real|_1`` (if it has an L1 term).

    Returns the loss and the detached terms ``{"G_GAN", "G_L1_weighted"}``: ``G_L1_weighted`` is
    ``lambda_l1`` times the mean absolute error (the term in the loss, which the reference logs as
    ``G_L1``), named so that it is not read beside the unweighted ``val_L1`` as the same measure;
    absent terms are reported as 0.
    """
    zero = fake_b.new_zeros((), dtype=torch.float32)
    loss_gan, loss_l1 = zero, zero
    if objective.gan:
        if net_d is None:
            raise ValueError("the objective has a GAN term but no discriminator was given")
        loss_gan = gan_loss(net_d(discriminator_input(objective, real_a, fake_b)), True, mode)
    if objective.l1:
        loss_l1 = F.l1_loss(fake_b.float(), real_b.float()) * lambda_l1
    return loss_gan + loss_l1, {"G_GAN": loss_gan.detach(), "G_L1_weighted": loss_l1.detach()}
