"""Options of the pix2pix plugin: every architecture, objective, data and training setting.

Defaults are the reference implementation's and the paper's (GUIDE.md section 3). Each field
becomes a command-line option of ``p2ptools train --model pix2pix`` with its own flag and help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from p2ptools.cpus import default_workers
from p2ptools.errors import ConfigError
from p2ptools.options import BATCH, BETA, EPOCHS, LR, SAMPLES, SEED, SIZE, WEIGHT, WIDTH, WORKERS, Range
from p2ptools.training.tracking import valid_trackers

LOSSES = ("l1", "gan", "cgan", "l1+gan", "l1+cgan")
NORMS = ("batch", "instance", "none", "syncbatch")

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
GAN_MODES = ("vanilla", "lsgan", "wgangp")
LR_POLICIES = ("linear", "step", "plateau", "cosine")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
class Pix2PixOptions:
    """Every option of a pix2pix run (stored in ``config.json``)."""

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
    workers: int = field(default_factory=lambda: default_workers(4),
                         metadata={"range": WORKERS, "bookkeeping": True, "help": "Data-loading worker processes (0 = in the main process; default: min(4, cores available))."})
    # optimisation
    epochs: int = field(default=100, metadata={"range": EPOCHS, "help": "Epochs at the initial learning rate."})
    epochs_decay: int = field(default=100, metadata={"range": Range(0, EPOCHS.high), "help": "Epochs of linear decay to zero (--lr-policy linear); the run lasts epochs + epochs-decay."})
    lr_policy: str = field(default="linear", metadata={"help": "Learning-rate policy: linear (constant, then linear decay), step (x0.1 every --lr-decay-iters epochs), plateau (x0.2 when validation L1 stalls 5 epochs), cosine (to 0 over the run).", "choices": LR_POLICIES})
    lr_decay_iters: int = field(default=50, metadata={"range": EPOCHS, "help": "Epochs between the step policy's x0.1 decays."})
    batch_size: int = field(default=1, metadata={"range": BATCH, "help": "Batch size (per process)."})
    lr: float = field(default=2e-4, metadata={"range": LR, "help": "Adam learning rate."})
    beta1: float = field(default=0.5, metadata={"range": BETA, "help": "Adam beta1."})
    beta2: float = field(default=0.999, metadata={"range": BETA, "help": "Adam beta2."})
    seed: int = field(default=0, metadata={"range": SEED, "help": "Random seed (runs are exactly reproducible on the CPU)."})
    # hardware
    device: str = field(default="auto", metadata={"bookkeeping": True, "help": "auto (cuda if available), cpu, cuda, cuda:N."})
    precision: str = field(default="auto", metadata={"help": "auto: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU.", "choices": PRECISIONS})
    channels_last: bool = field(default=True, metadata={"bookkeeping": True, "help": "channels_last memory format on GPU."})
    compile: bool = field(default=False, metadata={"bookkeeping": True, "help": "torch.compile the networks."})
    # bookkeeping
    checkpoint_every: int = field(default=0, metadata={"range": Range(0), "bookkeeping": True, "help": "Also save the full state every N steps (0: no step rule)."})
    checkpoint_minutes: float = field(default=10.0, metadata={"range": Range(0, 10**6), "bookkeeping": True, "help": "Save the full state (written in the background) when this many minutes have passed since the last save, checked after each step; 0: at every epoch end. The end of the run and SIGINT/SIGTERM always save."})
    save_epoch_freq: int = field(default=0, metadata={"range": Range(0), "bookkeeping": True, "help": "Keep the generator of every K-th epoch as checkpoints/epoch_<N>_G.safetensors (weights only; 0: none; the reference saves every 5)."})
    max_steps: int = field(default=0, metadata={"range": Range(0), "help": "Stop after this many steps in total (0: train every epoch); for smoke tests and benchmarks."})
    val_limit: int = field(default=0, metadata={"range": Range(0), "help": "Validation pairs scored per epoch for val_L1 (0: the whole val split)."})
    log: str = field(default="jsonl", metadata={"bookkeeping": True, "help": "Trackers, comma-separated: jsonl (always on), tensorboard (RUN_DIR/tensorboard), wandb (RUN_DIR/wandb; offline without credentials); rank 0 logs.", "flag": "--log", "choices": valid_trackers, "choices_help": "comma-separated jsonl, tensorboard, wandb"})
    log_every: int = field(default=20, metadata={"range": Range(1), "bookkeeping": True, "help": "Append averaged losses and images/s to log.jsonl every N steps."})
    sample_images: int = field(default=4, metadata={"range": SAMPLES, "bookkeeping": True, "help": "Validation pairs shown in each epoch's sample grid."})

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
