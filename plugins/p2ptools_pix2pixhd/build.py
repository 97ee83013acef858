"""What a pix2pixHD run's options build: its generator and discriminator, and the sizes they take.

Shared by the trainer and by :mod:`p2ptools_pix2pixhd.model` (translating a run imports no
training code).
"""

from __future__ import annotations

from torch import nn

from p2ptools_pix2pixhd.data import input_channels
from p2ptools_pix2pixhd.networks import define_D, define_G
from p2ptools_pix2pixhd.options import Pix2PixHDOptions

PLUGIN_NAME = "pix2pixhd"


def build_generator(options: Pix2PixHDOptions) -> nn.Module:
    """The generator the options describe (initialised N(0, 0.02))."""
    return define_G(options.netG, input_channels(options.label_nc, options.input_nc, options.instance), options.output_nc,
                    ngf=options.ngf, n_downsample_global=options.n_downsample_global, n_blocks_global=options.n_blocks_global,
                    n_local_enhancers=options.n_local_enhancers, n_blocks_local=options.n_blocks_local, norm=options.norm)


def build_discriminator(options: Pix2PixHDOptions) -> nn.Module:
    """The multi-scale discriminator on ``cat(input, image)``."""
    channels = input_channels(options.label_nc, options.input_nc, options.instance) + options.output_nc
    return define_D(channels, ndf=options.ndf, n_layers=options.n_layers_D, num_D=options.num_D, norm=options.norm)


def architecture_flags(options: Pix2PixHDOptions) -> str:
    """The options that decide the generator's weights, as command-line flags."""
    flags = (f"--netG {options.netG} --ngf {options.ngf} --n-downsample-global {options.n_downsample_global} "
             f"--n-blocks-global {options.n_blocks_global} --label-nc {options.label_nc} "
             f"{'--instance' if options.instance else '--no-instance'} --norm {options.norm}")
    if options.netG == "local":
        flags += f" --n-local-enhancers {options.n_local_enhancers} --n-blocks-local {options.n_blocks_local}"
    return flags


def size_multiple(options: Pix2PixHDOptions) -> int:
    """Heights and widths the generator takes are multiples of this."""
    return 2 ** (options.n_downsample_global + (options.n_local_enhancers if options.netG == "local" else 0))
