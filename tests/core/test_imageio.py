from pathlib import Path

import cv2
import numpy as np
import pytest

from p2ptools.errors import InputFileError
from p2ptools.imageio import decode_image, encode_image, read_image, to_rgb, write_bytes_atomic, write_image


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_decode_rgb_order_and_gray_conversion():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR
    rgb = decode_image(cv2.imencode(".png", bgr)[1].tobytes(), "x.png")
    assert rgb.shape == (4, 6, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 2] == 0).all()
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6)
    as_rgb = decode_image(cv2.imencode(".png", gray)[1].tobytes(), "g.png")
    assert (as_rgb[..., 0] == gray).all() and (as_rgb[..., 1] == gray).all()


def test_truncated_jpeg_and_png_are_rejected():
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    jpg = _jpeg(image)
    with pytest.raises(InputFileError, match=r"cut\.jpg: truncated JPEG"):
        decode_image(jpg[: len(jpg) // 2], "cut.jpg")
    png = cv2.imencode(".png", image)[1].tobytes()
    with pytest.raises(InputFileError, match=r"cut\.png: truncated PNG"):
        decode_image(png[:-20], "cut.png")
    with pytest.raises(InputFileError, match="not a readable image"):
        decode_image(b"\x00garbage" * 10, "junk.jpg")
    with pytest.raises(InputFileError, match="empty file"):
        decode_image(b"", "empty.png")


def test_read_missing_file(tmp_path: Path):
    with pytest.raises(InputFileError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_png_roundtrip_is_lossless_and_sha(tmp_path: Path):
    import hashlib

    image = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    digest = write_image(tmp_path / "a.png", image)
    assert (read_image(tmp_path / "a.png") == image).all()
    assert digest == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="format"):
        encode_image(image, "gif")


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path):
    class Boom(bytes):
        pass

    target = tmp_path / "out.bin"
    with pytest.raises(TypeError):
        write_bytes_atomic(target, object())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(target, b"ok")
    assert target.read_bytes() == b"ok" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_to_rgb_shapes():
    assert to_rgb(np.zeros((2, 3), np.uint8)).shape == (2, 3, 3)
    assert to_rgb(np.zeros((2, 3, 4), np.uint8)).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="shape"):
        to_rgb(np.zeros((2, 3, 2), np.uint8))


def test_atomic_writes_create_replace_and_use_normal_permissions(tmp_path: Path):
    import os
    import stat

    target = tmp_path / "sub" / "f.bin"
    write_bytes_atomic(target, b"first")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    write_bytes_atomic(target, b"second, longer")  # replacing an existing file
    assert target.read_bytes() == b"second, longer"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]
