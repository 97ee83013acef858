"""The pix2pixHD model plugin (entry point ``pix2pixhd``): ties options, trainer, loader and importer."""

from __future__ import annotations

from pathlib import Path

from p2ptools.plugin import LoadOptions, ModelPlugin, TrainedModel, TrainRequest
from p2ptools_pix2pixhd.options import Pix2PixHDOptions


class Pix2PixHDPlugin(ModelPlugin):
    """pix2pixHD (Wang et al. 2018): coarse-to-fine generator, multi-scale D, feature matching, VGG loss."""

    name = "pix2pixhd"
    version = "0.1.0"
    summary = "pix2pixHD (global/local G, multi-scale D, feature matching + VGG), label maps + instances, 2048x1024."
    Options = Pix2PixHDOptions

    def train(self, options: Pix2PixHDOptions, request: TrainRequest) -> Path:
        """Train (or resume) into ``request.run_dir``; see :func:`p2ptools_pix2pixhd.trainer.train`."""
        from p2ptools_pix2pixhd.trainer import train

        return train(options, request.data, request.run_dir, resume=request.resume, overwrite=request.overwrite,
                     progress=request.progress)

    def load(self, run_dir: Path, options: LoadOptions) -> TrainedModel:
        """Load a run's generator for translation."""
        from p2ptools_pix2pixhd.model import load_run

        return load_run(run_dir, options)

    def smoke_options(self) -> Pix2PixHDOptions:
        """The global generator at ngf 8 (2 downsamplings), 2 discriminators of 2 layers, RGB inputs,
        no VGG file needed; two epochs of batch 2 on the CPU."""
        return Pix2PixHDOptions(ngf=8, ndf=8, n_downsample_global=2, n_blocks_global=1, n_layers_D=2, label_nc=0, instance=False,
                                vgg_loss=False, preprocess="none", epochs=1, epochs_decay=1, batch_size=2, workers=0, device="cpu",
                                log_every=1)

    def import_checkpoint(self, checkpoint: Path, options: Pix2PixHDOptions, run_dir: Path, overwrite: bool = False) -> Path:
        """Turn the official ``latest_net_G.pth`` into a run directory (loaded with weights_only=True)."""
        from p2ptools_pix2pixhd.official_import import import_official_checkpoint

        return import_official_checkpoint(checkpoint, options, run_dir, overwrite)
