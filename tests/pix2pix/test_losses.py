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
    assert terms["G_L1_weighted"].item() == pytest.approx(100 * 0.5)
    assert loss.item() == pytest.approx(expected_gan + 50)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    only_l1, terms = generator_loss(None, parse_objective("l1"), a, b, fake, "vanilla", 10.0)
    assert only_l1.item() == pytest.approx(5.0) and terms["G_GAN"].item() == 0
    only_gan, terms = generator_loss(d, parse_objective("gan"), a, b, fake, "lsgan", 100.0)
    assert terms["G_L1_weighted"].item() == 0 and only_gan.item() == pytest.approx((2 * 0.5 - 1) ** 2)
    with pytest.raises(ValueError, match="no discriminator"):
        generator_loss(None, parse_objective("gan"), a, b, fake, "vanilla", 1.0)


def test_wgangp_critic_losses_by_hand():
    logits = torch.tensor([[-2.0, 0.0], [1.0, 3.0]])
    assert gan_loss(logits, True, "wgangp").item() == pytest.approx(-0.5)  # -mean D(real)
    assert gan_loss(logits, False, "wgangp").item() == pytest.approx(0.5)  # mean D(fake)


def test_gradient_penalty_of_a_linear_critic_is_lambda_times_squared_norm_gap():
    """D(x) = <w, x>: its gradient is w at every interpolate, so GP = 10 (|w| - 1)^2 whatever alpha."""
    from p2ptools_pix2pix.losses import gradient_penalty

    d = nn.Conv2d(2, 1, kernel_size=3, bias=False)  # a 3x3 kernel over a 3x3 input: one output, <w, x>
    with torch.no_grad():
        d.weight.copy_(torch.arange(18, dtype=torch.float32).reshape(1, 2, 3, 3) / 20)
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    norm = math.sqrt(sum((i / 20) ** 2 for i in range(18)))
    assert gradient_penalty(d, real, fake).item() == pytest.approx(10 * (norm - 1) ** 2, rel=1e-5)


def test_gradient_penalty_of_a_quadratic_critic_uses_per_sample_interpolates():
    """D(x) = sum(x^2) / 2 per sample: gradient x_hat = a real + (1 - a) fake; with fake 0, |grad| = a |real|."""
    from p2ptools_pix2pix.losses import gradient_penalty

    class Quadratic(nn.Module):
        def forward(self, x):
            return (x**2).sum(dim=(1, 2, 3)) / 2

    real = torch.randn(3, 2, 4, 4)
    torch.manual_seed(5)
    penalty = gradient_penalty(Quadratic(), real, torch.zeros_like(real))
    torch.manual_seed(5)
    alpha = torch.rand(3).tolist()  # the same draw: one per sample
    expected = 10 * sum((a * real[i].norm().item() - 1) ** 2 for i, a in enumerate(alpha)) / 3
    assert penalty.item() == pytest.approx(expected, rel=1e-5)


def test_wgangp_discriminator_loss_adds_the_penalty_and_it_trains_d():
    objective = parse_objective("l1+cgan")
    d = nn.Sequential(nn.Conv2d(6, 4, 3), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3))
    a, b, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    torch.manual_seed(1)
    loss, terms = discriminator_loss(d, objective, a, b, fake, "wgangp")
    assert set(terms) == {"D_real", "D_fake", "D_GP"}
    assert loss.item() == pytest.approx(0.5 * (terms["D_real"] + terms["D_fake"]).item() + terms["D_GP"].item(), rel=1e-6)
    from p2ptools_pix2pix.losses import gradient_penalty

    torch.manual_seed(1)
    by_hand = gradient_penalty(d, torch.cat([a, b], 1), torch.cat([a, fake], 1))  # interpolates of D's inputs
    assert terms["D_GP"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    loss.backward()  # the penalty's double backward reaches D's weights (the last bias cancels out)
    assert all(m.weight.grad.abs().sum() > 0 for m in (d[0], d[2]))
    d.zero_grad()
    torch.manual_seed(1)
    gradient_penalty(d, torch.cat([a, b], 1), torch.cat([a, fake], 1)).backward()
    assert d[0].weight.grad.abs().sum() > 0
