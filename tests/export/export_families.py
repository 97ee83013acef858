"""The generator families the export and tiling tests cover."""

#: (plugin, changes to its smoke_options()): U-Net and ResNet with batch and instance norm, pix2pixHD global and local
#: (the pix2pix ones on 64x64 crops: unet_64 is the smallest U-Net with a dropout layer)
SIZE = 64
_P2P = {"load_size": 72, "crop_size": 64}
FAMILIES = {
    "unet-batch": ("pix2pix", {**_P2P, "netG": "unet_64"}),
    "unet-instance": ("pix2pix", {**_P2P, "netG": "unet_64", "norm": "instance"}),
    "resnet-batch": ("pix2pix", {**_P2P, "netG": "resnet_6blocks"}),
    "resnet-instance": ("pix2pix", {**_P2P, "netG": "resnet_6blocks", "norm": "instance"}),
    "hd-global": ("pix2pixhd", {}),
    "hd-local": ("pix2pixhd", {"netG": "local", "n_local_enhancers": 1, "n_blocks_local": 1}),
}
