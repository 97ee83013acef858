"""The HED post-processing chain and the weight-free edge detectors, against hand-made cases and
direct (slow, loop-based) computations written here."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.morphology import remove_small_objects
from skimage.morphology import thin as skimage_thin

from p2ptools.edges.postprocess import canny_edges, conv_tri, edge_nms, edge_orientation, imresize, postprocess_hed, remove_small_components, sobel_edges, thin


def blurred_line(shape, p0, p1, sigma=2.0, peak=0.9):
    """An edge probability map: a line from p0 to p1 (x, y) blurred by a Gaussian, scaled to ``peak``."""
    img = np.zeros(shape, np.float32)
    cv2.line(img, p0, p1, 1.0, 1)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    return (img / img.max() * peak).astype(np.float32)


# ------------------------------------------------------------------------------------- convTri


def direct_conv_tri(image: np.ndarray, r: float) -> np.ndarray:
    """convTri by definition: mirror-pad by index, then a 2-D sum with the outer-product kernel."""
    if r < 1:
        p = 12 / r / (r + 2) - 2
        k1, rad = np.array([1, p, 1]) / (2 + p), 1
    else:
        rad = int(r)
        k1 = np.array(list(range(1, rad + 2)) + list(range(rad, 0, -1)), float) / (rad + 1) ** 2
    kernel = np.outer(k1, k1)
    h, w = image.shape

    def mirror(i, n):  # MATLAB 'symmetric': ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...
        while i < 0 or i >= n:
            i = -i - 1 if i < 0 else 2 * n - 1 - i
        return i

    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            acc = 0.0
            for dy in range(-rad, rad + 1):
                for dx in range(-rad, rad + 1):
                    acc += kernel[dy + rad, dx + rad] * image[mirror(y + dy, h), mirror(x + dx, w)]
            out[y, x] = acc
    return out


@pytest.mark.parametrize("r", [1, 2, 4, 0.5])
def test_conv_tri_matches_direct_convolution(r):
    image = np.random.default_rng(3).random((9, 12)).astype(np.float32)
    np.testing.assert_allclose(conv_tri(image, r), direct_conv_tri(image, r), atol=1e-5)


def test_conv_tri_edge_cases():
    image = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(conv_tri(image, 0), image)
    for c in range(3):  # channels filtered independently
        np.testing.assert_allclose(conv_tri(image, 2)[..., c], direct_conv_tri(image[..., c], 2), atol=1e-5)
    const = np.full((7, 7), 0.3, np.float32)
    np.testing.assert_allclose(conv_tri(const, 4), const, atol=1e-6)  # kernel sums to 1, padding mirrors
    with pytest.raises(ValueError, match="integer"):
        conv_tri(const, 1.5)


# ------------------------------------------------------------------------------------- imresize


def test_imresize_matches_pil_bicubic_in_the_interior():
    """PIL's bicubic has MATLAB's kernel (a = -0.5) and antialiasing; only its border rule differs."""
    image = np.random.default_rng(1).random((40, 34)).astype(np.float32)
    for size in [(77, 64), (20, 17)]:
        ours = imresize(image, size)
        pil = np.asarray(Image.fromarray(image, mode="F").resize(size[::-1], Image.BICUBIC))
        assert ours.shape == size
        np.testing.assert_allclose(ours[6:-6, 6:-6], pil[6:-6, 6:-6], atol=1e-4)
    np.testing.assert_allclose(imresize(np.full((5, 9), 0.25), (13, 4)), 0.25, atol=1e-6)
    np.testing.assert_array_equal(imresize(image, image.shape), image)


# ---------------------------------------------------------------------------------- orientation


def test_orientation_is_the_normal_of_the_ridge():
    y, x = np.mgrid[0:40, 0:40].astype(np.float32)
    ridge = lambda t: np.exp(-(t**2) / 8).astype(np.float32)  # noqa: E731
    assert abs(edge_orientation(ridge(x - 20))[20, 20]) < 1e-3  # vertical line: normal along x
    assert edge_orientation(ridge((x + y - 40) / np.sqrt(2)))[20, 20] == pytest.approx(np.pi / 4, abs=1e-2)
    assert edge_orientation(ridge((x - y) / np.sqrt(2)))[20, 20] == pytest.approx(3 * np.pi / 4, abs=1e-2)
    o = edge_orientation(np.random.default_rng(0).random((16, 16)))
    assert o.dtype == np.float32 and o.min() >= 0 and o.max() < np.pi


# ------------------------------------------------------------------------------------------ NMS


def direct_nms(e: np.ndarray, o: np.ndarray, r: int, s: int, m: float) -> np.ndarray:
    """edgesNmsMex written out pixel by pixel."""
    h, w = e.shape

    def interp(x, y):
        x = min(max(x, 0.0), w - 1.001)
        y = min(max(y, 0.0), h - 1.001)
        x0, y0 = int(x), int(y)
        dx0, dy0 = x - x0, y - y0
        return (e[y0, x0] * (1 - dx0) * (1 - dy0) + e[y0, x0 + 1] * dx0 * (1 - dy0)
                + e[y0 + 1, x0] * (1 - dx0) * dy0 + e[y0 + 1, x0 + 1] * dx0 * dy0)  # fmt: skip

    out = e.astype(np.float64).copy()
    for y in range(h):
        for x in range(w):
            if e[y, x] == 0:
                continue
            for d in range(-r, r + 1):
                if d and e[y, x] * m < interp(x + d * math.cos(o[y, x]), y + d * math.sin(o[y, x])):
                    out[y, x] = 0
                    break
    s = min(s, w // 2, h // 2)
    for x in range(s):
        out[:, x] *= x / s
        out[:, w - 1 - x] *= x / s
    for y in range(s):
        out[y, :] *= y / s
        out[h - 1 - y, :] *= y / s
    return out


def test_nms_matches_the_direct_loop():
    rng = np.random.default_rng(7)
    e = rng.random((14, 11)).astype(np.float32)
    e[rng.random(e.shape) < 0.2] = 0
    o = (rng.random(e.shape) * np.pi).astype(np.float32)
    for r, s, m in [(1, 5, 1.01), (2, 3, 1.0), (1, 0, 1.2)]:
        np.testing.assert_allclose(edge_nms(e, o, r=r, s=s, m=m), direct_nms(e, o, r, s, m), atol=1e-5)


def test_nms_keeps_the_ridge_crest_and_fades_the_border():
    profile = np.array([0, 0.2, 0.5, 1.0, 0.5, 0.2, 0], np.float32)
    e = np.tile(np.pad(profile, (8, 8)), (20, 1))  # a vertical ridge at column 11
    out = edge_nms(e, edge_orientation(e))
    assert (np.nonzero(out[10])[0] == [11]).all()
    const = np.full((12, 12), 0.5, np.float32)
    faded = edge_nms(const, np.zeros_like(const), s=5)
    ramp = np.minimum(np.minimum(np.arange(12), np.arange(12)[::-1]) / 5, 1)
    np.testing.assert_allclose(faded, 0.5 * np.outer(ramp, ramp), atol=1e-6)


# ------------------------------------------------------------------------------ post-processing


def test_a_blurred_line_thins_to_one_pixel():
    for p0, p1 in [((32, 4), (32, 59)), ((6, 8), (57, 52)), ((4, 30), (60, 30))]:
        lines = postprocess_hed(blurred_line((64, 64), p0, p1), size=64)
        black = lines == 0
        assert black.sum() > 30
        mostly_horizontal = abs(p1[0] - p0[0]) >= abs(p1[1] - p0[1])
        counts = black[:, 12:52].sum(axis=0) if mostly_horizontal else black[12:52].sum(axis=1)
        assert (counts == 1).all(), counts  # exactly one pixel across the line (along its major axis)
        ys, xs = np.nonzero(black)
        dist = np.abs((p1[1] - p0[1]) * xs - (p1[0] - p0[0]) * ys + p1[0] * p0[1] - p1[1] * p0[0]) / np.hypot(p1[0] - p0[0], p1[1] - p0[1])
        assert dist.max() <= 1.0  # on the line's crest


def test_isolated_specks_vanish_and_lines_stay():
    prob = blurred_line((64, 64), (10, 50), (54, 50))
    for x, y in [(12, 12), (30, 20), (50, 30)]:
        speck = np.zeros((64, 64), np.float32)
        speck[y, x] = 1
        speck = cv2.GaussianBlur(speck, (0, 0), 1.0)
        prob = np.maximum(prob, speck / speck.max() * 0.8)
    lines = postprocess_hed(prob, size=64)
    assert (lines[:40] == 255).all()  # no speck left
    assert (lines[45:56] == 0).sum() >= 30  # the line is kept


def test_output_is_black_edges_on_white_at_the_requested_size():
    prob = blurred_line((40, 40), (5, 20), (35, 20), sigma=1.5)
    lines = postprocess_hed(prob, size=96)
    assert lines.shape == (96, 96) and lines.dtype == np.uint8
    assert set(np.unique(lines)) == {0, 255} and (lines == 255).mean() > 0.9
    assert (postprocess_hed(np.zeros((16, 16), np.float32), size=32) == 255).all()
    weak = blurred_line((64, 64), (32, 4), (32, 59), peak=0.08)  # under 25/255 everywhere
    assert (postprocess_hed(weak, size=64) == 255).all()
    assert (postprocess_hed(weak, size=64, threshold=0.05) == 0).any()


def test_postprocess_checks_its_input():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        postprocess_hed(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        postprocess_hed(np.full((8, 8), 255, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        postprocess_hed(np.full((8, 8), np.nan, np.float32))


def test_thin_equals_skimage_thin():
    """Our OpenCV-driven Guo-Hall thinning against scikit-image's (bwmorph 'thin' Inf)."""
    rng = np.random.default_rng(4)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if trial % 2:
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # thick blobs
        np.testing.assert_array_equal(thin(mask), skimage_thin(mask), err_msg=f"trial {trial}")
    assert not thin(np.zeros((5, 5), bool)).any()


def test_small_components_are_8_connected_like_bwareaopen():
    diag = np.eye(6, dtype=bool)[:5, :5]  # 5 diagonal pixels: one 8-connected piece
    assert remove_small_components(diag, 5).sum() == 5
    assert remove_small_components(diag, 6).sum() == 0
    mask = np.random.default_rng(2).random((40, 40)) < 0.25
    for size in (2, 5, 9):
        expected = remove_small_objects(mask, max_size=size - 1, connectivity=2)
        np.testing.assert_array_equal(remove_small_components(mask, size), expected)


# ------------------------------------------------------------------------------ canny / sobel


def test_canny_and_sobel_draw_the_square_outline():
    photo = np.full((50, 50, 3), 230, np.uint8)
    photo[12:38, 12:38] = (40, 60, 200)
    for fn in (canny_edges, sobel_edges):
        lines = fn(photo, 64)
        assert lines.shape == (64, 64) and lines.dtype == np.uint8 and set(np.unique(lines)) == {0, 255}
        ys, xs = np.nonzero(lines == 0)
        side = 64 * 12 / 50, 64 * 38 / 50
        near = np.minimum(np.minimum(np.abs(xs - side[0]), np.abs(xs - side[1])), np.minimum(np.abs(ys - side[0]), np.abs(ys - side[1])))
        assert len(xs) > 60 and near.max() <= 2.5, fn.__name__
    flat = np.full((30, 30, 3), 128, np.uint8)
    assert (canny_edges(flat, 32) == 255).all() and (sobel_edges(flat, 32) == 255).all()
    with pytest.raises(ValueError, match="uint8"):
        canny_edges(photo.astype(np.float32), 64)
