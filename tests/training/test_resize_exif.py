"""Resize fidelity against PIL (the reference's resize) and EXIF orientation: pairs ignore it,
builders reading camera photos apply it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2ptools.imageio import decode_image
from p2ptools.pairs import read_pair
from p2ptools.training.data import AlignedPairs, Jitter, check_pair_headers
from p2ptools.training.resize import resize


def textured(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 4, w // 4, channels), dtype=np.uint8)
    smooth = np.kron(coarse, np.ones((4, 4, 1), np.uint8)).astype(int)
    out = np.clip(smooth + rng.integers(-40, 41, smooth.shape), 0, 255).astype(np.uint8)
    return out[:, :, 0] if channels == 1 else out


def pil_bicubic(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


@pytest.mark.parametrize("size", [(72, 72), (32, 32), (80, 40)])  # enlarge (load 286/256), shrink, mixed
@pytest.mark.parametrize("channels", [3, 1])
def test_default_resize_is_within_one_gray_level_of_pil(size, channels):
    image = textured(64, 64, channels)
    ref = pil_bicubic(image, *size)
    ours = resize(image, *size)  # default backend: torchvision
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    assert np.array_equal(resize(image, *size, "pil"), ref)
    opencv = resize(image, *size, "opencv")  # the fast option is not the reference's filter
    assert opencv.shape == ref.shape and np.abs(opencv.astype(int) - ref.astype(int)).max() > 1


def test_jitter_resizes_with_the_chosen_backend():
    a = textured(64, 64)
    val = Jitter("resize_and_crop", load_size=72, crop_size=48, train=False)  # validation: straight to 48
    out, _ = val.apply(a, a, np.random.default_rng(0))
    assert np.abs(out.astype(int) - pil_bicubic(a, 48, 48).astype(int)).max() <= 1
    fast, _ = Jitter("resize_and_crop", 72, 48, train=False, resize_backend="opencv").apply(a, a, np.random.default_rng(0))
    assert not np.array_equal(fast, out)
    with pytest.raises(ValueError, match="resize backend"):
        Jitter("resize_and_crop", resize_backend="cubic")


def with_orientation(image: np.ndarray, fmt: str, orientation: int = 6) -> bytes:
    """Encode with PIL, tagging EXIF orientation (6: "rotate 90 clockwise to display")."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", "jpg"), ("PNG", "png")])
def test_aligned_pairs_ignore_exif_orientation(tmp_path, fmt, suffix):
    pair = np.concatenate([textured(32, 32, seed=1), textured(32, 32, seed=2)], axis=1)  # 32 high, 64 wide
    path = tmp_path / "train" / f"000.{suffix}"
    path.parent.mkdir()
    path.write_bytes(with_orientation(pair, fmt))
    raw = decode_image(path.read_bytes(), str(path), exif_orientation=False)
    assert raw.shape == (32, 64, 3) and Image.open(path).size == (64, 32)  # the stored layout, as PIL reads it
    assert decode_image(path.read_bytes(), str(path)).shape == (64, 32, 3)  # OpenCV's default rotates it
    a, b = read_pair(path)
    assert a.shape == b.shape == (32, 32, 3)
    jitter = Jitter("crop", load_size=32, crop_size=32, flip=False)
    check_pair_headers([path], jitter)
    item = AlignedPairs([path], jitter)[0]
    assert "error" not in item and tuple(item["A"].shape) == (3, 32, 32)
    assert np.array_equal(item["A"].permute(1, 2, 0).numpy(), raw[:, :32])


def test_builders_reading_camera_photos_apply_exif_orientation(tmp_path, monkeypatch):
    from p2ptools_datasets.colorization import ColorizationBuilder, ColorizationOptions

    from p2ptools.buildkit import BuildOptions

    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    photo = np.zeros((24, 48, 3), np.uint8)  # stored 48 wide: left half red, right half blue
    photo[:, :24] = (255, 0, 0)
    photo[:, 24:] = (0, 0, 255)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"p{i}.jpg").write_bytes(with_orientation(photo, "JPEG"))
    manifest = ColorizationBuilder(ColorizationOptions(val_fraction=0, test_fraction=0)).build(
        [src], tmp_path / "out", BuildOptions(size=24, workers=1, format="png"), progress=False)
    _, b = read_pair(tmp_path / "out" / manifest.pairs[0].file)
    # displayed upright (rotated 90 clockwise): 24 wide, 48 high, red on top, blue below; the
    # centre crop (rows 12..36) is half red, half blue by rows, not by columns
    top, bottom = b[:8].reshape(-1, 3).mean(0), b[-8:].reshape(-1, 3).mean(0)
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


def test_translate_reads_pairs_in_their_stored_layout(tmp_path):
    from p2ptools.translate import _load_input

    class Model:
        direction, in_channels = "AtoB", 3

    pair = np.concatenate([textured(32, 32, seed=1), textured(32, 32, seed=2)], axis=1)
    path = Path(tmp_path / "p.png")
    path.write_bytes(with_orientation(pair, "PNG"))
    from p2ptools.translate import Fit

    image, target, extras = _load_input(path, Model(), True, Fit())
    assert extras == {}
    assert image.shape == target.shape == (32, 32, 3) and np.array_equal(image, pair[:, :32])
