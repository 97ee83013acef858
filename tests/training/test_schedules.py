"""Learning-rate policies against closed forms, plateau by hand, resumable through JSON; weight init statistics."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.training.schedules import make_scheduler, step_scheduler
from p2ptools.training.weights_init import init_weights


def lrs(policy: str, n: int, metrics=None, **kw) -> list[float]:
    """The lr after each of ``n`` epoch steps."""
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_scheduler(policy, opt, **kw)
    out = []
    for e in range(n):
        opt.step()  # (no gradients: nothing moves) the order torch expects
        step_scheduler(sched, metrics[e] if metrics else None)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_linear_is_constant_then_linear_decay():
    # after k epoch steps: 1 - max(0, k + 1 - 3) / (2 + 1)
    assert lrs("linear", 5, epochs=3, epochs_decay=2) == pytest.approx([1, 1, 1 - 1 / 3, 1 - 2 / 3, 0])


def test_step_multiplies_by_a_tenth_every_decay_iters():
    assert lrs("step", 7, epochs=7, epochs_decay=0, decay_iters=3) == pytest.approx([0.1 ** ((e + 1) // 3) for e in range(7)])
    with pytest.raises(ConfigError, match="--lr-decay-iters"):
        lrs("step", 1, epochs=1, epochs_decay=0, decay_iters=0)


def test_cosine_reaches_zero_at_the_end_of_the_run():
    expected = [0.5 * (1 + math.cos(math.pi * (e + 1) / 6)) for e in range(6)]  # epochs + epochs_decay = 6
    assert lrs("cosine", 6, epochs=4, epochs_decay=2) == pytest.approx(expected, abs=1e-12)


def test_plateau_cuts_by_five_after_six_epochs_without_a_one_percent_gain():
    # improves until epoch 2 (best 0.5); 0.499 is not 1% better; bad epochs 3..8 -> cut after the 6th
    metrics = [1.0, 0.8, 0.5, 0.499, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    got = lrs("plateau", 10, metrics, epochs=10, epochs_decay=0)
    assert got == pytest.approx([1] * 8 + [0.2] * 2)
    with pytest.raises(ValueError, match="validation metric"):
        lrs("plateau", 1, epochs=1, epochs_decay=0)


@pytest.mark.parametrize("policy", ["linear", "step", "plateau", "cosine"])
def test_a_schedule_resumed_from_its_json_state_continues_the_same(policy):
    kw = {"epochs": 4, "epochs_decay": 4, "decay_iters": 2}
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    whole = lrs(policy, 12, metrics, **kw)
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_scheduler(policy, opt, **kw)
    for e in range(5):
        opt.step()
        step_scheduler(sched, metrics[e])
    state = json.loads(json.dumps(sched.state_dict()))  # as the checkpoint stores it
    opt2 = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    resumed = make_scheduler(policy, opt2, **kw)
    resumed.load_state_dict(state)
    rest = []
    for e in range(5, 12):
        opt2.step()
        step_scheduler(resumed, metrics[e])
        rest.append(opt2.param_groups[0]["lr"])
    assert rest == pytest.approx(whole[5:])


def test_unknown_policy_is_refused():
    with pytest.raises(ConfigError, match="--lr-policy: invalid value 'exp'"):
        lrs("exp", 1, epochs=1, epochs_decay=0)


# ----------------------------------------------------------------------------------------------
# init

def big_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(64, 128, 4), nn.BatchNorm2d(128), nn.ConvTranspose2d(128, 32, 4))


@pytest.mark.parametrize(("init_type", "gain", "std_of"), [
    ("normal", 0.02, lambda fan_in, fan_out, gain: gain),
    ("xavier", 0.5, lambda fan_in, fan_out, gain: gain * math.sqrt(2.0 / (fan_in + fan_out))),
    ("kaiming", 0.02, lambda fan_in, fan_out, gain: math.sqrt(2.0 / fan_in)),  # gain unused, as the reference
])
def test_init_weight_statistics(init_type, gain, std_of):
    torch.manual_seed(0)
    net = big_net()
    init_weights(net, init_type, gain)
    conv, bn, up = net
    # fans as torch.nn.init computes them: weight.size(1) * k * k in, size(0) * k * k out
    for layer, fan_in, fan_out in ((conv, 64 * 16, 128 * 16), (up, 32 * 16, 128 * 16)):
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 0.05 * std_of(fan_in, fan_out, gain)
        assert w.std().item() == pytest.approx(std_of(fan_in, fan_out, gain), rel=0.03)
        assert torch.count_nonzero(layer.bias) == 0
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=4 * gain / math.sqrt(128)) and bn.weight.std().item() == pytest.approx(gain, rel=0.2)
    assert torch.count_nonzero(bn.bias) == 0


def test_orthogonal_init_has_orthogonal_rows_of_norm_gain():
    torch.manual_seed(0)
    net = big_net()
    init_weights(net, "orthogonal", 0.7)
    w = net[0].weight.detach().reshape(128, -1)  # 128 rows of 1024: orthogonal rows
    assert torch.allclose(w @ w.T, 0.49 * torch.eye(128), atol=1e-4)
    with pytest.raises(ConfigError, match="--init-type"):
        init_weights(net, "uniform")
