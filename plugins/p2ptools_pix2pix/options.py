"""Options of the pix2pix plugin: every architecture, objective, data and training setting.

Defaults are the reference implementation's and the paper's (GUIDE.md section 3). Each field
becomes a command-line option of ``p2ptools train --model pix2pix`` with its own flag and help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from p2ptools.errors import ConfigError
from p2ptools.options import SIZE, WEIGHT, WIDTH, Range
from p2ptools.training.options import LR_POLICIES, PRECISIONS, TrainOptions  # noqa: F401  (public here too)

LOSSES = ("l1", "gan", "cgan", "l1+gan", "l1+cgan")
NORMS = ("batch", "instance", "none", "syncbatch")

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
GAN_MODES = ("vanilla", "lsgan", "wgangp")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def valid_netG(name: str) -> bool:
    """``unet_<N>`` / ``encoder_decoder_<N>`` (N a power of two >= 32), ``resnet_9blocks``, ``resnet_6blocks``."""
    if name in ("resnet_9blocks", "resnet_6blocks"):
        return True
    m = re.fullmatch(r"(unet|encoder_decoder)_(\d+)", name)
    return bool(m) and int(m.group(2)) >= 32 and int(m.group(2)) & (int(m.group(2)) - 1) == 0


def valid_netD(name: str) -> bool:
    """``pixel``, ``patch16``, ``patch70``, ``patch286`` or ``n_layers:<K>`` (K >= 1)."""
    if name in ("pixel", "patch16", "patch70", "patch286"):
        return True
    m = re.fullmatch(r"n_layers:(\d+)", name)
    return bool(m) and int(m.group(1)) >= 1


CROP_MODES = ("resize_and_crop", "crop", "scale_width_and_crop")


def size_multiple(netG: str) -> int:
    """What the sides of a ``netG`` input must be divisible by: ``2 ** N`` for ``unet_<2**N>`` and
    ``encoder_decoder_<2**N>`` (N stride-2 down-samplings), 4 for the ResNets."""
    kind, _, n = netG.rpartition("_")
    return 4 if netG.startswith("resnet") else int(n) if kind in ("unet", "encoder_decoder") and n.isdigit() else 1


def _divisibility_hint(netG: str, crop_size: int, multiple: int) -> str:
    """``use --netG unet_64`` when a smaller generator of the same kind fits the crop, else the
    nearest crop sizes the generator takes."""
    kind = netG.rpartition("_")[0]
    fitting = [n for n in (2**k for k in range(13)) if n >= 32 and n <= crop_size and crop_size % n == 0]
    if kind in ("unet", "encoder_decoder") and fitting:
        return f"; use --netG {kind}_{fitting[-1]} for {crop_size}x{crop_size} crops"
    sizes = [c for c in (crop_size // multiple * multiple, (crop_size // multiple + 1) * multiple) if c > 0]
    return f"; use --crop-size {' or '.join(map(str, sizes))}"


@dataclass(frozen=True)
class Pix2PixOptions(TrainOptions):
    """Every option of a pix2pix run (stored in ``config.json``): the shared training options of
    :class:`~p2ptools.training.options.TrainOptions` plus these."""

    # architecture
    netG: str = field(default="unet_256", metadata={"help": "Generator.", "flag": "--netG", "choices": valid_netG,
                      "choices_help": "unet_<N>, encoder_decoder_<N> (N power of 2 >= 32), resnet_9blocks, resnet_6blocks"})
    netD: str = field(default="patch70", metadata={"help": "Discriminator (receptive field).", "flag": "--netD", "choices": valid_netD,
                      "choices_help": "pixel, patch16, patch70, patch286, n_layers:<K>"})
    ngf: int = field(default=64, metadata={"range": WIDTH, "help": "Generator filters in the first layer."})
    ndf: int = field(default=64, metadata={"range": WIDTH, "help": "Discriminator filters in the first layer."})
    norm: str = field(default="batch", metadata={"help": "Normalization layers (none: convolutions keep their biases, unlike the reference's; imports add zero biases).", "choices": NORMS})
    dropout: bool = field(default=True, metadata={"help": "Dropout 0.5 in the generator (the paper's noise)."})
    input_nc: int = field(default=3, metadata={"help": "Input channels (1 = grayscale, e.g. colorization).", "choices": (1, 3)})
    output_nc: int = field(default=3, metadata={"help": "Output channels.", "choices": (1, 3)})
    # objective
    loss: str = field(default="l1+cgan", metadata={"help": "Objective (the paper's Table 1 rows).", "choices": LOSSES})
    lambda_l1: float = field(default=100.0, metadata={"range": WEIGHT, "help": "Weight of the L1 term.", "flag": "--lambda-l1"})
    gan_mode: str = field(default="vanilla", metadata={"help": "GAN loss: vanilla (cross-entropy), lsgan (least squares), wgangp (Wasserstein with gradient penalty, lambda 10).", "choices": GAN_MODES})
    init_type: str = field(default="normal", metadata={"help": "Weight initialisation of G and D.", "choices": INIT_TYPES})
    init_gain: float = field(default=0.02, metadata={"range": Range(0, 10, low_open=True), "help": "Std (normal) or gain (xavier, orthogonal) of the initialisation."})
    # data
    direction: str = field(default="AtoB", metadata={"help": "Which half is the input.", "choices": ("AtoB", "BtoA")})
    preprocess: str = field(default="resize_and_crop", metadata={"help": "Training-time jitter.", "choices": PREPROCESS})
    resize_backend: str = field(default="torchvision", metadata={"help": "Training-time resize: torchvision (antialiased bicubic; measured on photos: at most 2 gray levels from the reference's PIL, 99.9% of values within 1), pil (PIL itself, exact), opencv (fastest; at most 28 levels off at 256->286, 19 at 1024->286, 18 on 256x512 halves, 36 at 256->128; benchmarks/resize_fidelity.py).", "choices": ("torchvision", "pil", "opencv")})
    load_size: int = field(default=286, metadata={"range": SIZE, "help": "Resize to this before cropping."})
    crop_size: int = field(default=256, metadata={"range": SIZE, "help": "Random crop size (network input size)."})
    flip: bool = field(default=True, metadata={"help": "Random horizontal flips."})
    serial_batches: bool = field(default=False, metadata={"help": "Take training pairs in file order every epoch (no shuffling)."})
    max_dataset_size: int = field(default=0, metadata={"range": Range(0), "help": "Train on the first N pairs (file order) only (0: all)."})

    def check_combination(self) -> None:
        """Rules between options (run by :func:`p2ptools.options.check_options` before anything is
        written). Raises :class:`ConfigError`."""
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            raise ConfigError(f"--crop-size {self.crop_size} is larger than --load-size {self.load_size}: crops are taken from "
                              f"images resized to --load-size (use --load-size {self.crop_size} or more)")
        multiple = size_multiple(self.netG)
        if self.preprocess in CROP_MODES and self.crop_size % multiple:
            raise ConfigError(f"--crop-size {self.crop_size}: --netG {self.netG} needs sizes divisible by {multiple}"
                              + _divisibility_hint(self.netG, self.crop_size, multiple))
