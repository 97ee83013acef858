"""Objectives and GAN losses against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools_pix2pix.losses import Objective, discriminator_loss, gan_loss, generator_loss, parse_objective


@pytest.mark.parametrize(("loss", "expected", "channels"), [
    ("l1", Objective(l1=True, gan=False, conditional=False), None),
    ("gan", Objective(l1=False, gan=True, conditional=False), 3),
    ("cgan", Objective(l1=False, gan=True, conditional=True), 4),
    ("l1+gan", Objective(l1=True, gan=True, conditional=False), 3),
    ("l1+cgan", Objective(l1=True, gan=True, conditional=True), 4),
])
def test_objectives(loss, expected, channels):
    objective = parse_objective(loss)
    assert objective == expected
    assert objective.discriminator_channels(1, 3) == channels  # e.g. colorization: gray in, RGB out


def test_unknown_objective_and_gan_mode():
    with pytest.raises(ConfigError, match="--loss: invalid value 'l2'"):
        parse_objective("l2")
    with pytest.raises(ConfigError, match="--gan-mode"):
        gan_loss(torch.zeros(1), True, "wgan")


def test_gan_losses_by_hand():
    logits = torch.tensor([[-2.0, 0.0], [1.0, 3.0]])
    sig = [1 / (1 + math.exp(-v)) for v in (-2.0, 0.0, 1.0, 3.0)]
    assert gan_loss(logits, True, "vanilla").item() == pytest.approx(sum(-math.log(s) for s in sig) / 4)
    assert gan_loss(logits, False, "vanilla").item() == pytest.approx(sum(-math.log(1 - s) for s in sig) / 4)
    assert gan_loss(logits, True, "lsgan").item() == pytest.approx(((-3) ** 2 + 1 + 0 + 4) / 4)
    assert gan_loss(logits, False, "lsgan").item() == pytest.approx((4 + 0 + 1 + 9) / 4)
    assert gan_loss(logits.half(), True, "vanilla").dtype == torch.float32


class Recorder(nn.Module):
    """A fixed 'discriminator': mean of its input per image, as a (N, 1, 1, 1) logit; records inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return self.scale * x.mean(dim=(1, 2, 3), keepdim=True)


def test_discriminator_loss_is_halved_and_sees_the_right_channels():
    a, b = torch.full((2, 1, 4, 4), 0.5), torch.full((2, 3, 4, 4), -0.25)
    fake = torch.full((2, 3, 4, 4), 0.1, requires_grad=True)
    d = Recorder()
    loss, terms = discriminator_loss(d, parse_objective("l1+cgan"), a, b, fake, "vanilla")
    assert [t.shape[1] for t in d.seen] == [4, 4]  # cat(input, output)
    fake_logit = 2 * (0.5 + 3 * 0.1) / 4
    real_logit = 2 * (0.5 - 3 * 0.25) / 4
    expected_fake = -math.log(1 - 1 / (1 + math.exp(-fake_logit)))
    expected_real = -math.log(1 / (1 + math.exp(-real_logit)))
    assert loss.item() == pytest.approx(0.5 * (expected_fake + expected_real))
    assert terms["D_fake"].item() == pytest.approx(expected_fake) and terms["D_real"].item() == pytest.approx(expected_real)
    loss.backward()
    assert fake.grad is None  # the fake is detached for D's update
    d.seen.clear()
    discriminator_loss(d, parse_objective("gan"), a, b, fake, "vanilla")
    assert [t.shape[1] for t in d.seen] == [3, 3]  # unconditional: the output alone


def test_generator_loss_non_saturating_plus_weighted_l1():
    a, b = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    fake = torch.full((1, 3, 2, 2), 0.5, requires_grad=True)
    d = Recorder()
    loss, terms = generator_loss(d, parse_objective("l1+cgan"), a, b, fake, "vanilla", 100.0)
    logit = 2 * (3 * 0.5) / 6
    expected_gan = -math.log(1 / (1 + math.exp(-logit)))  # G labels its fakes as real
    assert terms["G_GAN"].item() == pytest.approx(expected_gan)
    assert terms["G_L1"].item() == pytest.approx(100 * 0.5)
    assert loss.item() == pytest.approx(expected_gan + 50)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    only_l1, terms = generator_loss(None, parse_objective("l1"), a, b, fake, "vanilla", 10.0)
    assert only_l1.item() == pytest.approx(5.0) and terms["G_GAN"].item() == 0
    only_gan, terms = generator_loss(d, parse_objective("gan"), a, b, fake, "lsgan", 100.0)
    assert terms["G_L1"].item() == 0 and only_gan.item() == pytest.approx((2 * 0.5 - 1) ** 2)
    with pytest.raises(ValueError, match="no discriminator"):
        generator_loss(None, parse_objective("gan"), a, b, fake, "vanilla", 1.0)
