"""Edge maps as line drawings: pix2pix's HED post-processing in Python, plus Canny and Sobel.

The edges2shoes / edges2handbags inputs of pix2pix are HED edge probabilities turned into thin black
lines on white by the reference MATLAB script ``PostprocessHED.m``. :func:`postprocess_hed` does the
same steps (GUIDE section 8):

1. resize the probability map to ``size`` x ``size`` (:func:`imresize`: MATLAB's bicubic
   ``imresize``, antialiased when shrinking);
2. edge orientation from second derivatives of the triangle-smoothed map (:func:`edge_orientation`,
   ``convTri(E, 4)`` then ``np.gradient`` for MATLAB's ``gradient``);
3. non-maximum suppression along that orientation (:func:`edge_nms`: radius 1, bilinear samples,
   suppress where ``1.01 * E`` is below a neighbour, fade the 5-pixel border: ``edgesNmsMex``);
4. threshold at ``25/255``; thin to one pixel (``skimage.morphology.thin`` = ``bwmorph(..., 'thin',
   inf)``); remove 8-connected components under 5 pixels (``bwareaopen``); invert.

All functions are pure: array in, new array out; inputs are checked first.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = [
    "canny_edges",
    "conv_tri",
    "edge_nms",
    "edge_orientation",
    "imresize",
    "postprocess_hed",
    "remove_small_components",
    "sobel_edges",
    "thin",
]

#: pix2pix's defaults (PostprocessHED.m): binarisation threshold and smallest kept component.
HED_THRESHOLD = 25.0 / 255.0
HED_MIN_COMPONENT = 5


def _check_map(image: np.ndarray, name: str = "image", min_side: int = 2) -> np.ndarray:
    """Check a 2-D real-valued map and return it as float32."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) map, got shape {image.shape}")
    if min(image.shape) < min_side:
        raise ValueError(f"{name} must be at least {min_side}x{min_side}, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise TypeError(f"{name} must be a real-valued array, got dtype {image.dtype}")
    out = image.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(out)).sum())} non-finite values (NaN or inf)")
    return out


def conv_tri(image: np.ndarray, r: float) -> np.ndarray:
    """Piotr Dollar's triangle filter (``convTri``), with symmetric (mirror) padding.

    For integer ``r >= 1`` the separable kernel is ``[1 .. r, r+1, r .. 1] / (r+1)^2``; for
    ``0 < r < 1`` it is ``[1, p, 1] / (2 + p)`` with ``p = 12 / r / (r + 2) - 2`` (a smoothing
    weaker than ``r = 1``); ``r = 0`` returns a copy.

    Args:
        image: (H, W) or (H, W, C) real array.
        r: filter radius: 0, a value in (0, 1), or an integer >= 1.

    Returns:
        float32 array of the input's shape.

    Example:
        >>> conv_tri(np.eye(5, dtype=np.float32), 1).shape
        (5, 5)
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) array, got {getattr(image, 'shape', type(image))}")
    if r < 0 or (r > 1 and float(r) != int(r)):
        raise ValueError(f"r must be 0, in (0, 1), or an integer >= 1, got {r}")
    img = image.astype(np.float32, copy=True)
    if r == 0:
        return img
    if r < 1:
        p = 12.0 / r / (r + 2.0) - 2.0
        kernel = np.array([1.0, p, 1.0]) / (2.0 + p)
        pad = 1
    else:
        pad = int(r)
        kernel = np.concatenate([np.arange(1, pad + 2), np.arange(pad, 0, -1)]) / float(pad + 1) ** 2
    kernel = kernel.astype(np.float32)
    widths = ((pad, pad), (pad, pad)) + (((0, 0),) if img.ndim == 3 else ())
    padded = np.pad(img, widths, mode="symmetric")  # MATLAB padarray(..., 'symmetric')
    # Filtering the padded array and keeping the interior is the 'valid' convolution.
    if padded.ndim == 3 and padded.shape[2] > 4:  # OpenCV filters at most 4 channels at once
        out = np.stack([cv2.sepFilter2D(padded[..., c], -1, kernel, kernel) for c in range(padded.shape[2])], axis=-1)
    else:
        out = cv2.sepFilter2D(padded, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)
        if out.ndim == 2 and img.ndim == 3:
            out = out[..., None]
    return np.ascontiguousarray(out[pad:-pad, pad:-pad])


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5 (MATLAB's and PIL's bicubic)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@functools.lru_cache(maxsize=32)
def _resize_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB imresize's bicubic contributions along one axis: for each output index, the input
    indices (0-based, mirrored at the borders) and their normalised weights, both (n_out, taps)."""
    scale = n_out / n_in
    width = 4.0
    if scale < 1:  # antialiasing: stretch the kernel when shrinking
        kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731
        width /= scale
    else:
        kernel = _cubic
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output pixel
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])  # symmetric boundary
    idx0 = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    keep = np.any(weights != 0, axis=0)  # drop all-zero tap columns
    idx0, weights = np.ascontiguousarray(idx0[:, keep]), np.ascontiguousarray(weights[:, keep])
    idx0.flags.writeable = weights.flags.writeable = False  # cached and shared
    return idx0, weights


def _resize_rows(image: np.ndarray, n_out: int) -> np.ndarray:
    idx, weights = _resize_taps(image.shape[0], n_out)
    weights = weights.astype(np.float32)
    out = weights[:, 0, None] * image[idx[:, 0]]
    for k in range(1, idx.shape[1]):  # a few taps: each a gathered, weighted block of rows
        out += weights[:, k, None] * image[idx[:, k]]
    return out


def _resize_cols(image: np.ndarray, n_out: int) -> np.ndarray:
    idx, weights = _resize_taps(image.shape[1], n_out)
    weights = weights.astype(np.float32)
    out = weights[None, :, 0] * image[:, idx[:, 0]]
    for k in range(1, idx.shape[1]):
        out += weights[None, :, k] * image[:, idx[:, k]]
    return out


def imresize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a real-valued map like MATLAB's ``imresize(E, [h w])`` (bicubic, antialiased).

    MATLAB's contributions: Keys' cubic (a = -0.5), the kernel widened by 1/scale when shrinking,
    weights normalised per output pixel, borders mirrored; rows first, then columns.

    Args:
        image: (H, W) real array.
        size: (height, width) of the result.

    Returns:
        float32 (height, width) array; values may overshoot the input range slightly, as MATLAB's.
    """
    img = _check_map(image, min_side=1)
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    if (h, w) == img.shape:
        return img.copy()
    return np.ascontiguousarray(_resize_cols(_resize_rows(img, h), w), dtype=np.float32)


def edge_orientation(image: np.ndarray) -> np.ndarray:
    """Edge orientation from second derivatives of the smoothed edge map (structured-edges rule).

    ``O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi)`` on ``convTri(E, 4)``, with the
    derivatives taken by :func:`numpy.gradient` (MATLAB's ``gradient``: central differences,
    one-sided at the borders). ``x`` runs along columns, ``y`` along rows.

    Args:
        image: (H, W) edge strength, H, W >= 2.

    Returns:
        float32 (H, W) angles in [0, pi).
    """
    e = conv_tri(_check_map(image), 4)
    oy, ox = np.gradient(e)
    oxx = np.gradient(ox, axis=1)
    oyy, oxy = np.gradient(oy)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + np.float32(1e-5))), np.pi)
    o = np.nan_to_num(o, nan=0.0)
    return np.where(o >= np.pi, 0.0, o).astype(np.float32)


def _bilinear(e: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``e`` at (x, y), coordinates clamped to [0, size - 1.001] (edgesNmsMex)."""
    h, w = e.shape
    x = np.clip(x, 0, np.float32(w - 1.001))
    y = np.clip(y, 0, np.float32(h - 1.001))
    x0, y0 = x.astype(np.intp), y.astype(np.intp)
    dx0, dy0 = x - x0, y - y0
    dx1, dy1 = 1 - dx0, 1 - dy0
    flat = e.ravel()
    i00 = y0 * w + x0
    return (flat[i00] * dx1 + flat[i00 + 1] * dx0) * dy1 + (flat[i00 + w] * dx1 + flat[i00 + w + 1] * dx0) * dy0


def edge_nms(image: np.ndarray, orientation: np.ndarray, r: int = 1, s: int = 5, m: float = 1.01) -> np.ndarray:
    """Non-maximum suppression of an edge map along its orientation (``edgesNmsMex``).

    A pixel is set to 0 where ``m * E`` is below ``E`` bilinearly sampled at distance
    ``d = -r .. r`` (``d != 0``) along the orientation; then the ``s``-pixel border is faded
    linearly to 0 (noisy estimates near the image boundary).

    Args:
        image: (H, W) edge strength E (>= 0), H, W >= 2.
        orientation: (H, W) angles in radians (see :func:`edge_orientation`).
        r: suppression radius in pixels (>= 1).
        s: border fade width in pixels (>= 0; at most half the image side).
        m: multiplier: larger keeps more edges.

    Returns:
        float32 (H, W) suppressed map.
    """
    e = _check_map(image)
    o = _check_map(orientation, "orientation")
    if o.shape != e.shape:
        raise ValueError(f"orientation shape {o.shape} differs from the edge map's {e.shape}")
    if r < 1 or s < 0:
        raise ValueError(f"r must be >= 1 and s >= 0, got r={r}, s={s}")
    return _nms(e, o, e != 0, r, s, m)


def _nms(e: np.ndarray, o: np.ndarray, candidates: np.ndarray, r: int, s: int, m: float) -> np.ndarray:
    """:func:`edge_nms` evaluated at the ``candidates`` pixels only (others are set to 0).

    The reference skips pixels whose strength is 0; :func:`postprocess_hed` also skips those
    below the threshold, whose result is discarded anyway (suppression and fading never raise E).
    """
    h, w = e.shape
    ys, xs = np.nonzero(candidates)
    values = e[ys, xs]
    angle = o[ys, xs]
    cos, sin = np.cos(angle), np.sin(angle)
    xs, ys = xs.astype(np.float32), ys.astype(np.float32)
    em = values * np.float32(m)
    suppress = np.zeros(values.shape, dtype=bool)
    for d in range(-r, r + 1):
        if d:
            suppress |= em < _bilinear(e, xs + d * cos, ys + d * sin)
    out = np.zeros((h, w), dtype=np.float32)
    out[candidates] = np.where(suppress, np.float32(0), values)
    s = min(s, w // 2, h // 2)
    if s > 0:
        fade_x = np.minimum(np.minimum(np.arange(w), np.arange(w)[::-1]) / np.float32(s), 1).astype(np.float32)
        fade_y = np.minimum(np.minimum(np.arange(h), np.arange(h)[::-1]) / np.float32(s), 1).astype(np.float32)
        out = out * fade_y[:, None] * fade_x[None, :]
    return out.astype(np.float32)


def remove_small_components(image: np.ndarray, min_size: int) -> np.ndarray:
    """Remove 8-connected foreground components of fewer than ``min_size`` pixels (``bwareaopen``).

    Args:
        image: (H, W) boolean (or 0/nonzero) mask.
        min_size: smallest kept component, in pixels.

    Returns:
        bool (H, W) mask.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        raise ValueError(f"image must be a 2-D mask, got {getattr(image, 'shape', type(image))}")
    mask = image.astype(bool)
    if min_size <= 1 or not mask.any():
        return mask.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False  # background
    return keep[labels]


def _thinning_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two sub-iterations of Guo & Hall's thinning (algorithm A1), the one
    MATLAB's ``bwmorph(BW, 'thin', Inf)`` and ``skimage.morphology.thin`` use, indexed by the
    8-neighbourhood code ``sum(x_i << (i - 1))`` with x1 = east, then counterclockwise (x2 =
    north-east, x3 = north, ... x8 = south-east)."""
    codes = np.arange(256)
    x = [None] + [(codes >> (i - 1)) & 1 for i in range(1, 9)]
    x.append(x[1])  # x9 = x1
    crossings = sum(((x[2 * i - 1] == 0) & ((x[2 * i] | x[2 * i + 1]) == 1)).astype(int) for i in range(1, 5))
    n1 = sum(x[2 * k - 1] | x[2 * k] for k in range(1, 5))
    n2 = sum(x[2 * k] | x[2 * k + 1] for k in range(1, 5))
    g12 = (crossings == 1) & (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
    g3 = ((x[2] | x[3] | (1 - x[8])) & x[1]) == 0
    g3p = ((x[6] | x[7] | (1 - x[4])) & x[5]) == 0
    return (g12 & g3).astype(np.uint8), (g12 & g3p).astype(np.uint8)


_THIN_LUTS = _thinning_luts()
# Correlation weights giving each pixel its neighbourhood code (row above: NW, N, NE).
_THIN_CODE_KERNEL = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], np.float32)


def thin(image: np.ndarray) -> np.ndarray:
    """Thin a binary mask to one-pixel-wide lines (``bwmorph(BW, 'thin', Inf)``).

    Guo & Hall's two sub-iteration parallel thinning, repeated until nothing changes; pixels
    outside the image count as background. Same result as ``skimage.morphology.thin``, faster
    (OpenCV computes the neighbourhood codes).

    Args:
        image: (H, W) boolean (or 0/nonzero) mask.

    Returns:
        bool (H, W) mask.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        raise ValueError(f"image must be a 2-D mask, got {getattr(image, 'shape', type(image))}")
    skel = (image != 0).astype(np.uint8)
    if not skel.any():
        return skel.astype(bool)
    ys, xs = np.nonzero(skel)  # work on the bounding box (plus a background margin) only
    y0, y1, x0, x1 = max(ys.min() - 1, 0), ys.max() + 2, max(xs.min() - 1, 0), xs.max() + 2
    box = np.ascontiguousarray(skel[y0:y1, x0:x1])
    count = int(box.sum())
    while True:
        for lut in _THIN_LUTS:
            code = cv2.filter2D(box, cv2.CV_32F, _THIN_CODE_KERNEL, borderType=cv2.BORDER_CONSTANT)
            box[(lut[code.astype(np.uint8)] & box).astype(bool)] = 0
        new_count = int(box.sum())
        if new_count == count:
            break
        count = new_count
    out = np.zeros(skel.shape, dtype=bool)
    out[y0:y1, x0:x1] = box.astype(bool)
    return out


def _lines_from_strength(e: np.ndarray, threshold: float, min_component: int) -> np.ndarray:
    """NMS, threshold, thin, small-component removal and inversion of a (size, size) strength map."""
    cut = max(np.finfo(np.float64).eps, threshold)
    nms = _nms(e, edge_orientation(e), e >= cut, r=1, s=5, m=1.01)
    binary = nms >= cut
    lines = remove_small_components(thin(binary), min_component)
    return np.where(lines, 0, 255).astype(np.uint8)


def postprocess_hed(
    edge_prob: np.ndarray,
    size: int = 256,
    threshold: float = HED_THRESHOLD,
    min_component: int = HED_MIN_COMPONENT,
) -> np.ndarray:
    """Turn an HED edge probability map into pix2pix's line drawing (``PostprocessHED.m``).

    Args:
        edge_prob: float32 (H, W) edge probability in [0, 1] (H, W >= 2), at any resolution.
        size: side of the square result.
        threshold: binarisation threshold on the suppressed map (pix2pix: 25/255).
        min_component: 8-connected edge pieces of fewer pixels are removed (pix2pix: 5).

    Returns:
        uint8 (size, size): black (0) one-pixel-wide edges on white (255).

    Example:
        >>> prob = np.zeros((64, 64), np.float32); prob[:, 30:34] = 0.9
        >>> lines = postprocess_hed(prob, size=64)
        >>> sorted(np.unique(lines).tolist())
        [0, 255]
    """
    e = _check_map(edge_prob, "edge_prob")
    lo, hi = float(e.min()), float(e.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"edge_prob must hold probabilities in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    return _lines_from_strength(imresize(e, (size, size)), threshold, min_component)


def _gray_at(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB/gray image -> float32 gray in [0, 1] resized to (size, size)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(
            f"image must be a uint8 (H, W) or (H, W, 3) array, got {getattr(image, 'dtype', type(image))} "
            f"{getattr(image, 'shape', '')}"
        )
    if image.ndim == 3 and image.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (RGB), got shape {image.shape}")
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    h, w = gray.shape
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return cv2.resize(gray, (size, size), interpolation=interp).astype(np.float32) / 255.0


def canny_edges(image: np.ndarray, size: int = 256, low: float = 50, high: float = 150, sigma: float = 1.0) -> np.ndarray:
    """Canny edges at the output size, as black lines on white (no weights needed).

    The image is converted to gray, resized to ``size``, smoothed with a Gaussian of ``sigma`` and
    passed to OpenCV's Canny with hysteresis thresholds ``low`` / ``high`` (on 0-255 gradients,
    L2 norm).

    Args:
        image: uint8 (H, W, 3) RGB or (H, W) gray.
        size: side of the square result.

    Returns:
        uint8 (size, size): black (0) edges on white (255).
    """
    gray = np.clip(np.rint(_gray_at(image, size) * 255), 0, 255).astype(np.uint8)
    if sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), sigma)
    edges = cv2.Canny(gray, low, high, L2gradient=True)
    return np.where(edges > 0, 0, 255).astype(np.uint8)


def sobel_edges(
    image: np.ndarray, size: int = 256, threshold: float = HED_THRESHOLD, min_component: int = HED_MIN_COMPONENT
) -> np.ndarray:
    """Sobel gradient magnitude turned into thin lines by the HED post-processing chain.

    The gray image at the output size (values in [0, 1]) is smoothed (``convTri(., 1)``), its 3x3
    Sobel magnitude divided by its largest possible value (``4 * sqrt(2)``) serves as edge strength,
    then non-maximum suppression, thresholding, thinning and small-component removal run as in
    :func:`postprocess_hed`. A step of contrast ``c`` in [0, 1] gives a strength of about ``0.71 c``.

    Args:
        image: uint8 (H, W, 3) RGB or (H, W) gray.
        size: side of the square result.

    Returns:
        uint8 (size, size): black (0) edges on white (255).
    """
    gray = conv_tri(_gray_at(image, size), 1)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    strength = np.sqrt(gx * gx + gy * gy) / np.float32(4 * np.sqrt(2))
    return _lines_from_strength(strength.astype(np.float32), threshold, min_component)
