"""Weight initialisation, as the reference's ``--init_type`` / ``--init_gain``.

Convolutions, transposed convolutions and linear layers get their weights from:

- ``normal``: N(0, gain) (the paper's N(0, 0.02));
- ``xavier``: ``xavier_normal_`` with ``gain`` (std ``gain * sqrt(2 / (fan_in + fan_out))``);
- ``kaiming``: ``kaiming_normal_(a=0, mode="fan_in")`` (std ``sqrt(2 / fan_in)``; gain unused);
- ``orthogonal``: ``orthogonal_`` with ``gain`` (rows of the flattened weight orthogonal, norm ``gain``);

and biases 0. Batch-norm weights come from N(1, gain), their biases 0. Fans are PyTorch's:
``fan_in = weight.size(1) * kernel area`` (for a transposed convolution that is its output
channels, as in the reference, which uses the same ``torch.nn.init`` functions).

Example:
    >>> net = torch.nn.Conv2d(3, 8, 3)
    >>> init_weights(net, "orthogonal", 1.0)
    >>> w = net.weight.detach().reshape(8, -1)
    >>> bool(torch.allclose(w @ w.T, torch.eye(8), atol=1e-5))
    True
"""

from __future__ import annotations

import torch
from torch import nn

from p2ptools.errors import ConfigError

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Initialise ``net`` in place (see the module docstring); draws from the global torch RNG."""
    if init_type not in INIT_TYPES:
        raise ConfigError(f"--init-type: invalid value {init_type!r}; choose from {', '.join(INIT_TYPES)}")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                if init_type == "normal":
                    nn.init.normal_(m.weight, 0.0, gain)
                elif init_type == "xavier":
                    nn.init.xavier_normal_(m.weight, gain=gain)
                elif init_type == "kaiming":
                    nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                else:
                    nn.init.orthogonal_(m.weight, gain=gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                nn.init.normal_(m.weight, 1.0, gain)
                nn.init.zeros_(m.bias)
