"""Validation at each epoch end: the generator's mean L1 on the validation pairs and a sample grid.

The plugin says how a batch becomes the generator's input and target (:data:`Prepare`) and how an
input is shown in the grid (:data:`Preview`); everything else is the same for every model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from p2ptools.training.data import to_uint8
from p2ptools.training.samples import sample_grid

#: ``batch -> (generator input, target in [-1, 1])``, both on the device.
Prepare = Callable[[dict], tuple[torch.Tensor, torch.Tensor]]
#: ``(batch, i) -> uint8 (H, W[, 3]) image``: how the ``i``-th input looks in the sample grid.
Preview = Callable[[dict, int], np.ndarray]


def hwc(image: torch.Tensor) -> np.ndarray:
    """A uint8 (C, H, W) tensor -> (H, W, C) numpy, (H, W) for one channel."""
    return image.cpu().permute(1, 2, 0).squeeze(2).numpy()


@torch.no_grad()
def validation_l1(net_g: nn.Module, loader: Iterable[dict], prepare: Prepare, preview: Preview, device: torch.device,
                  amp_dtype: torch.dtype | None, keep: int) -> tuple[float, np.ndarray | None]:
    """Mean L1 (in [-1, 1] units, per image then averaged) of ``net_g`` in eval mode over ``loader``,
    and the sample grid (input, output, target) of the first ``keep`` pairs (None when ``keep`` is 0).
    The generator's train/eval mode is restored afterwards."""
    was_training = net_g.training
    net_g.eval()
    total, count = 0.0, 0
    rows: tuple[list, list, list] = ([], [], [])
    try:
        for batch in loader:
            x, target = prepare(batch)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                fake = net_g(x)
            total += (fake.float() - target).abs().mean(dim=(1, 2, 3)).sum().item()
            count += x.shape[0]
            for i in range(x.shape[0]):
                if len(rows[0]) < keep:
                    rows[0].append(preview(batch, i))
                    rows[1].append(hwc(to_uint8(fake[i])))
                    rows[2].append(hwc(batch["B"][i]))
    finally:
        net_g.train(was_training)
    return total / max(count, 1), (sample_grid(*rows) if rows[0] else None)
