"""Learning-rate policies, as the reference's ``--lr_policy``, stepped once per epoch.

- ``linear``: the learning rate for ``epochs`` epochs, then linear decay towards 0 over
  ``epochs_decay`` epochs (:func:`lr_lambda`, the paper's schedule);
- ``step``: multiplied by 0.1 every ``decay_iters`` epochs (``StepLR``);
- ``plateau``: multiplied by 0.2 when the validation L1 has not improved by 1% (relative) for 5
  epochs (``ReduceLROnPlateau(mode="min", factor=0.2, threshold=0.01, patience=5)``);
- ``cosine``: cosine annealing from the learning rate to 0 over the whole run, ``epochs +
  epochs_decay`` epochs (the reference anneals over its first ``n_epochs`` only).

Every policy is a ``torch.optim.lr_scheduler`` object, so its ``state_dict`` goes into the
checkpoint and a resumed run continues the same schedule.

Example:
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = make_scheduler("step", opt, epochs=4, epochs_decay=0, decay_iters=2)
    >>> for _ in range(4):
    ...     step_scheduler(sched, metric=None)
    >>> round(opt.param_groups[0]["lr"], 6)
    0.01
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, ReduceLROnPlateau, StepLR

from p2ptools.errors import ConfigError
from p2ptools.training.options import LR_POLICIES


def lr_lambda(epochs: int, epochs_decay: int):
    """The reference's rule: factor 1 for ``epochs`` epochs, then linear decay towards 0."""
    def rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)
    return rule


def make_scheduler(policy: str, optimizer: torch.optim.Optimizer, *, epochs: int, epochs_decay: int,
                   decay_iters: int = 50):
    """The scheduler of ``policy`` for ``optimizer`` (see the module docstring).

    Args:
        policy: one of :data:`LR_POLICIES`.
        epochs, epochs_decay: the run's ``--epochs`` and ``--epochs-decay``.
        decay_iters: ``--lr-decay-iters``, the period of ``step`` in epochs (>= 1).
    """
    if policy == "linear":
        return LambdaLR(optimizer, lr_lambda(epochs, epochs_decay))
    if policy == "step":
        if decay_iters < 1:
            raise ConfigError(f"--lr-decay-iters must be at least 1, got {decay_iters}")
        return StepLR(optimizer, step_size=decay_iters, gamma=0.1)
    if policy == "plateau":
        return ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    if policy == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, epochs + epochs_decay), eta_min=0)
    raise ConfigError(f"--lr-policy: invalid value {policy!r}; choose from {', '.join(LR_POLICIES)}")


def needs_metric(scheduler) -> bool:
    """Whether :func:`step_scheduler` needs the validation metric (``plateau``)."""
    return isinstance(scheduler, ReduceLROnPlateau)


def step_scheduler(scheduler, metric: float | None) -> None:
    """Advance ``scheduler`` by one epoch; ``plateau`` needs ``metric`` (the epoch's validation L1)."""
    if needs_metric(scheduler):
        if metric is None:
            raise ValueError("the plateau policy needs the validation metric")
        scheduler.step(metric)
    else:
        scheduler.step()
