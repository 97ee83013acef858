"""The pix2pix model plugin (entry point ``pix2pix``): ties options, trainer, loader and importer."""

from __future__ import annotations

from pathlib import Path

from p2ptools.plugin import LoadOptions, ModelPlugin, TrainedModel, TrainRequest
from p2ptools_pix2pix.options import Pix2PixOptions


class Pix2PixPlugin(ModelPlugin):
    """pix2pix (Isola et al. 2017): U-Net / ResNet generators, PatchGAN discriminators, L1 + cGAN."""

    name = "pix2pix"
    version = "0.1.0"
    summary = "pix2pix conditional GAN (U-Net/ResNet G, PatchGAN D, L1+cGAN), multi-GPU, exact resume."
    Options = Pix2PixOptions

    def train(self, options: Pix2PixOptions, request: TrainRequest) -> Path:
        """Train (or resume) into ``request.run_dir``; see :func:`p2ptools_pix2pix.trainer.train`."""
        from p2ptools_pix2pix.trainer import train

        return train(options, request.data, request.run_dir, resume=request.resume, overwrite=request.overwrite,
                     progress=request.progress)

    def load(self, run_dir: Path, options: LoadOptions) -> TrainedModel:
        """Load a run's generator for translation."""
        from p2ptools_pix2pix.model import load_pix2pix_run

        return load_pix2pix_run(run_dir, options)

    def smoke_options(self) -> Pix2PixOptions:
        """unet_32 at ngf 8 with a 16x16 PatchGAN, two epochs of batch 2 on the CPU."""
        return Pix2PixOptions(netG="unet_32", netD="patch16", ngf=8, ndf=8, load_size=36, crop_size=32, epochs=1, epochs_decay=1,
                              batch_size=2, workers=0, device="cpu", log_every=1)

    def import_checkpoint(self, checkpoint: Path, options: Pix2PixOptions, run_dir: Path, overwrite: bool = False) -> Path:
        """Turn a reference ``latest_net_G.pth`` into a run directory (loaded with weights_only=True)."""
        from p2ptools_pix2pix.reference_import import import_reference_checkpoint

        return import_reference_checkpoint(checkpoint, options, run_dir, overwrite)
