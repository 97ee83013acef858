"""The pix2pixHD model plugin (entry point ``pix2pixhd`` in group ``p2ptools.models``).

Registered like any third-party plugin: it uses only the core's public contract
(:mod:`p2ptools.plugin`) and the shared trainer machinery (:mod:`p2ptools.training`). Its own
modules are the networks, losses, label-map inputs, options, trainer loop, loader and importer of
the official NVIDIA/pix2pixHD ``latest_net_G.pth``.
"""
__version__ = "0.1.0"
