"""Options of the pix2pixHD plugin (stored in ``config.json``; each one a command-line option).

Defaults are the official NVIDIA/pix2pixHD ``train.py`` defaults: ``global`` generator (ngf 64, 4
downsamplings, 9 blocks), local enhancer settings for ``--netG local`` (1 enhancer, 3 blocks),
2 discriminators of 3 layers, instance norm, LSGAN, feature matching and VGG losses with
lambda_feat 10, 35 label classes plus instance boundaries, Adam 2e-4 / beta1 0.5, 100 epochs plus
100 of linear decay, ``scale_width`` to 1024 with flips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from p2ptools.options import EPOCHS, SIZE, WEIGHT, WIDTH, Range
from p2ptools.training.options import PRECISIONS, TrainOptions  # noqa: F401  (public here too)

PREPROCESS = ("none", "scale_width", "crop", "scale_width_and_crop")


@dataclass(frozen=True)
class Pix2PixHDOptions(TrainOptions):
    """Every option of a pix2pixHD run: the shared training options of
    :class:`~p2ptools.training.options.TrainOptions` plus these."""

    # generator
    netG: str = field(default="global", metadata={"help": "Generator: global, or local (global + local enhancer, for 2048x1024).",
                      "flag": "--netG", "choices": ("global", "local")})
    ngf: int = field(default=64, metadata={"range": WIDTH, "help": "Generator filters in the first layer (local: of the finest enhancer; "
                                                   "its global part runs at ngf * 2**n_local_enhancers)."})
    n_downsample_global: int = field(default=4, metadata={"range": (0, 8), "help": "Downsampling layers of the global generator."})
    n_blocks_global: int = field(default=9, metadata={"range": (0, 64), "help": "Residual blocks of the global generator."})
    n_local_enhancers: int = field(default=1, metadata={"range": (1, 3), "help": "Local enhancers (--netG local)."})
    n_blocks_local: int = field(default=3, metadata={"range": (0, 64), "help": "Residual blocks of each local enhancer."})
    niter_fix_global: int = field(default=0, metadata={"range": Range(0, EPOCHS.high), "help": "Epochs in which only the outermost local enhancer trains "
                                                               "(the global part fixed; --netG local)."})
    init_from: Path | None = field(default=None, metadata={"help": "Start G from another run's generator: every tensor whose "
                                                                   "name and shape match (the official --load_pretrain: a 1024x512 "
                                                                   "global run into --netG local's global part).", "flag": "--init-from"})
    norm: str = field(default="instance", metadata={"help": "Normalization layers.", "choices": ("instance", "batch")})
    # discriminator
    ndf: int = field(default=64, metadata={"range": WIDTH, "help": "Discriminator filters in the first layer."})
    n_layers_D: int = field(default=3, metadata={"range": (1, 8), "help": "Layers of each discriminator.", "flag": "--n-layers-D"})
    num_D: int = field(default=2, metadata={"range": (1, 8), "help": "Discriminators at successively halved scales (3 for 2048x1024).",
                                            "flag": "--num-D"})
    # inputs
    label_nc: int = field(default=35, metadata={"range": (0, 1024), "help": "Label classes, one-hot encoded from label_ids/ maps (35 for Cityscapes "
                                                        "label ids); 0: the input half of each pair is an RGB image."})
    instance: bool = field(default=True, metadata={"help": "Add the instance boundary map (from instance_ids/) as an input channel."})
    input_nc: int = field(default=3, metadata={"help": "Input image channels when --label-nc is 0.", "choices": (1, 3)})
    output_nc: int = field(default=3, metadata={"help": "Output channels.", "choices": (1, 3)})
    # objective
    gan_mode: str = field(default="lsgan", metadata={"help": "GAN loss.", "choices": ("lsgan", "vanilla")})
    lambda_feat: float = field(default=10.0, metadata={"range": WEIGHT, "help": "Weight of the feature-matching and VGG losses.", "flag": "--lambda-feat"})
    ganfeat_loss: bool = field(default=True, metadata={"help": "Discriminator feature-matching loss.", "flag": "--ganfeat-loss"})
    vgg_loss: bool = field(default=True, metadata={"help": "VGG19 perceptual loss (needs --vgg-weights).", "flag": "--vgg-loss"})
    vgg_weights: Path | None = field(default=None, metadata={"help": "torchvision's VGG19 weights file (vgg19-dcbb9e9d.pth); "
                                                                     "nothing is downloaded.", "flag": "--vgg-weights"})
    # data
    direction: str = field(default="AtoB", metadata={"help": "Which half is the input (Cityscapes pairs: BtoA, the photo is A).",
                                                     "choices": ("AtoB", "BtoA")})
    preprocess: str = field(default="scale_width", metadata={"help": "Training-time resizing and cropping.", "choices": PREPROCESS})
    load_size: int = field(default=1024, metadata={"range": SIZE, "help": "Width for scale_width."})
    crop_size: int = field(default=512, metadata={"range": SIZE, "help": "Square random crop for crop modes."})
    flip: bool = field(default=True, metadata={"help": "Random horizontal flips."})
