"""Distribution and perceptual metrics from local weights: FID, KID and LPIPS.

``state`` (the streaming-metric contract: update / merge / result over float64 sums),
``weights`` (local weight files: checked loading, sha256, where the public copies live),
``resize`` (the two resizing protocols, ``clean`` and ``legacy``), ``inception`` (pytorch-fid's
Inception network and the feature pass), ``fid`` (streaming statistics and the Fréchet distance),
``kid`` (features on disk and the unbiased polynomial-kernel MMD²) and ``lpips`` (the paired
perceptual distance). Nothing here downloads: every network is built without weights and filled
from a file the user names.
"""
