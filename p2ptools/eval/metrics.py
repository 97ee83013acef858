"""Image metrics of results against their ground-truth photos: L1, PSNR, SSIM (scikit-image).

Conventions (stated in every report):

- images are uint8 RGB compared on the 0..255 scale (``data_range=255``);
- L1 = mean absolute difference over pixels and channels, in 0..255 units, pooled over all pixels;
- PSNR = ``skimage.metrics.peak_signal_noise_ratio(gt, result, data_range=255)`` per image, averaged
  over the images that differ from their ground truth (an identical image has infinite PSNR: it is
  counted in ``psnr_identical`` instead of turning the whole mean into infinity; ``psnr`` is
  ``null`` only when every image is identical);
- SSIM = ``skimage.metrics.structural_similarity`` per image with ``channel_axis=2``,
  ``gaussian_weights=True``, ``sigma=1.5``, ``use_sample_covariance=False``, ``data_range=255``
  (the Wang et al. 2004 settings), averaged over images. Images must be at least 11x11 (the
  Gaussian window's size).
"""

from __future__ import annotations

import math

import numpy as np

SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
PROTOCOL = (
    "uint8 RGB on the 0..255 scale; L1 = mean |result - gt| over all pixels and channels (0..255 units); "
    "PSNR = skimage peak_signal_noise_ratio, data_range 255, mean over images that differ from their gt "
    "(identical ones counted in psnr_identical); "
    "SSIM = skimage structural_similarity, Gaussian window sigma 1.5, use_sample_covariance=False, "
    "data_range 255, channel_axis=2, mean over images"
)
MIN_SIZE = 11


def _check_pair(image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    for what, a in (("image", image), ("reference", reference)):
        if a.dtype != np.uint8 or a.ndim not in (2, 3):
            raise ValueError(f"{what} must be a uint8 (H, W) or (H, W, 3) image, got {a.dtype} {a.shape}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if reference.ndim == 2:
        reference = np.repeat(reference[:, :, None], 3, axis=2)
    if image.shape != reference.shape:
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but the reference is {reference.shape[1]}x{reference.shape[0]}")
    if min(image.shape[:2]) < MIN_SIZE:
        raise ValueError(f"images of {image.shape[1]}x{image.shape[0]} are smaller than SSIM's {MIN_SIZE}x{MIN_SIZE} window")
    return image, reference


def image_metrics(image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """L1 (0..255 units), PSNR (dB) and SSIM of one image against its reference, same shape.

    Example:
        >>> a = np.zeros((16, 16, 3), np.uint8); b = a + 10
        >>> image_metrics(a, b)["l1"]
        10.0
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    image, reference = _check_pair(image, reference)
    l1 = float(np.abs(image.astype(np.int16) - reference.astype(np.int16)).mean())
    if np.array_equal(image, reference):
        psnr = math.inf
    else:
        psnr = float(peak_signal_noise_ratio(reference, image, data_range=255))
    ssim = float(structural_similarity(reference, image, channel_axis=2, **SSIM_SETTINGS))
    return {"l1": l1, "psnr": psnr, "ssim": ssim}


class MetricsAccumulator:
    """Streaming means of :func:`image_metrics` (L1 pooled over pixels, PSNR/SSIM over images)."""

    def __init__(self) -> None:
        self.sums = np.zeros(5, np.float64)  # l1 * pixels, psnr (finite ones), ssim, pixels, images with finite psnr
        self.images = 0

    def update(self, image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        m = image_metrics(image, reference)
        pixels = image.shape[0] * image.shape[1]
        finite = math.isfinite(m["psnr"])
        self.sums += (m["l1"] * pixels, m["psnr"] if finite else 0.0, m["ssim"], pixels, float(finite))
        self.images += 1
        return m

    def as_array(self) -> np.ndarray:
        """Sums and count in one float64 vector (for summing across processes)."""
        return np.append(self.sums, self.images)

    def load_array(self, values: np.ndarray) -> None:
        self.sums = np.asarray(values[:5], np.float64).copy()
        self.images = int(values[5])

    def result(self) -> dict[str, float | None]:
        """``{"l1", "psnr", "psnr_identical", "ssim", "n_images", "protocol"}``; ``psnr`` is the mean over
        images that differ from their reference, None when none does."""
        if not self.images:
            return {"l1": None, "psnr": None, "psnr_identical": 0, "ssim": None, "n_images": 0, "protocol": PROTOCOL}
        l1_sum, psnr_sum, ssim_sum, pixels, finite = self.sums
        return {
            "l1": float(l1_sum / pixels),
            "psnr": float(psnr_sum / finite) if finite else None,
            "psnr_identical": int(self.images - finite),
            "ssim": float(ssim_sum / self.images),
            "n_images": self.images,
            "protocol": PROTOCOL,
        }
