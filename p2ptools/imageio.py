"""Image decoding, encoding and atomic file writes.

Images are ``numpy`` arrays of shape (H, W, 3) RGB or (H, W) gray, dtype uint8. Decoding goes
through OpenCV; truncated JPEG and PNG files, which OpenCV would silently pad with gray, are
detected from their end markers and rejected.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from p2ptools.errors import InputFileError, OutputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

_JPEG_SOI = b"\xff\xd8"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"

#: Environment variable with the largest image, in pixels, that p2ptools decodes (0: no limit).
MAX_PIXELS_ENV = "P2PTOOLS_MAX_PIXELS"
#: Default limit: 8192x8192, 16 times a 2048x1024 Cityscapes A|B pair (4096x1024), about 200 MB decoded.
DEFAULT_MAX_PIXELS = 8192 * 8192
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


@contextlib.contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """OpenCV on one thread inside the block, the previous count restored after it.

    Fork worker processes inside it: a child forked while OpenCV's thread pool is live hangs on its
    first ``cv2.setNumThreads`` (the pool's threads do not survive ``fork``), and one thread per
    worker is what workers want anyway.
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def is_image_name(name: str) -> bool:
    """True when ``name`` ends in one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def check_complete(data: bytes, name: str) -> None:
    """Raise :class:`InputFileError` when JPEG or PNG bytes are cut short.

    OpenCV decodes a truncated JPEG with a gray bottom and only a warning, so the end markers are
    checked here: a JPEG must end with EOI (``FFD9``, trailing zero padding allowed) and a PNG with
    its ``IEND`` chunk.
    """
    if data.startswith(_JPEG_SOI):
        if not data.endswith(b"\xff\xd9") and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise InputFileError(name, "truncated JPEG (no end-of-image marker)")
    elif data.startswith(_PNG_SIG):
        if not data.endswith(_PNG_IEND):
            raise InputFileError(name, "truncated PNG (no IEND chunk)")


def max_pixels() -> int:
    """The pixel limit: ``$P2PTOOLS_MAX_PIXELS`` if set (0 = none), else :data:`DEFAULT_MAX_PIXELS`."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise InputFileError(f"${MAX_PIXELS_ENV}", f"expected a whole number of pixels, got {value!r}") from None
    return max(limit, 0)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in _JPEG_SOF and i + 9 <= n:
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from an encoded image's header without decoding it; None when unknown.

    PNG and JPEG are parsed here (IHDR, SOF marker); other formats through Pillow's lazy open,
    which reads only the header.
    """
    if data.startswith(_PNG_SIG) and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(_JPEG_SOI):
        return _jpeg_size(data)
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError:
        return (1 << 31, 1 << 31)  # far beyond any limit of ours
    except Exception:  # unknown to Pillow: OpenCV decides
        return None


def check_pixels(data: bytes, name: str) -> None:
    """Raise :class:`InputFileError` when the header of ``data`` claims more pixels than :func:`max_pixels`."""
    limit = max_pixels()
    size = header_size(data) if limit else None
    if size is not None and size[0] * size[1] > limit:
        raise InputFileError(name, f"image of {size[0]}x{size[1]} pixels is over the limit of {limit} pixels "
                                   f"(set ${MAX_PIXELS_ENV} to raise it, 0 for none)")


def decode_image(data: bytes, name: str, *, mode: str = "rgb", exif_orientation: bool = True) -> np.ndarray:
    """Decode image bytes.

    Args:
        data: encoded file contents.
        name: file name used in error messages.
        mode: ``"rgb"`` (H, W, 3; gray and alpha images converted), ``"bgr"`` (the same in
            OpenCV's order, no conversion), ``"gray"`` (H, W) or ``"unchanged"`` (whatever the
            file holds: palette PNGs give their indices).
        exif_orientation: rotate/flip by the file's EXIF orientation tag (JPEG and PNG), as
            OpenCV does by default: right for raw camera photos, which builders read. False keeps
            the stored pixel layout, as PIL (and the pix2pix reference) reads every file: aligned
            A|B pairs are read so, or a 256x512 pair tagged "rotate 90" would decode as 512x256 and
            no longer split. ``"unchanged"`` never applies it.

    Returns:
        uint8 array.

    Raises:
        InputFileError: empty, corrupt or truncated data, or an image over the pixel limit
            (:func:`max_pixels`, checked from the header before decoding).
    """
    if not data:
        raise InputFileError(name, "empty file")
    check_complete(data, name)
    check_pixels(data, name)
    buf = np.frombuffer(data, dtype=np.uint8)
    flags = {"rgb": cv2.IMREAD_COLOR, "bgr": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE, "unchanged": cv2.IMREAD_UNCHANGED}
    if mode not in flags:
        raise ValueError(f"mode must be one of {sorted(flags)}, got {mode!r}")
    flag = flags[mode] if exif_orientation or mode == "unchanged" else flags[mode] | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(buf, flag)
    except cv2.error as exc:  # e.g. OpenCV's own size limit: one line naming the file
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputFileError(name, f"not a readable image (OpenCV: {message.strip()})") from None
    if image is None:
        raise InputFileError(name, "not a readable image (corrupt or unknown format)")
    if mode == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif mode == "unchanged" and image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    if image.dtype != np.uint8:
        if mode == "unchanged":
            return image
        raise InputFileError(name, f"unsupported bit depth {image.dtype}")
    return image


def read_image(path: str | Path, *, mode: str = "rgb", exif_orientation: bool = True) -> np.ndarray:
    """Read an image file (see :func:`decode_image` for ``mode`` and ``exif_orientation``)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror})") from None
    return decode_image(data, str(path), mode=mode, exif_orientation=exif_orientation)


def encode_image(image: np.ndarray, fmt: str = "png", *, quality: int = 95, bgr: bool = False) -> bytes:
    """Encode an RGB (H, W, 3) or gray (H, W) uint8 image as ``jpg`` or ``png`` bytes.

    ``bgr=True`` says a color image is already in OpenCV's BGR order (saves a conversion). A gray
    uint16 image (an id map such as Cityscapes' instance ids) is written as a 16-bit PNG.

    Example:
        >>> len(encode_image(np.zeros((4, 4, 3), np.uint8), "png")) > 0
        True
    """
    fmt = fmt.lower().lstrip(".")
    gray16 = image.dtype == np.uint16 and image.ndim == 2 and fmt == "png"
    if not gray16 and (image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3))):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3) image (or uint16 (H, W) as png), got {image.dtype} {image.shape}")
    if image.ndim == 3 and image.shape[2] == 3 and not bgr:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt in ("jpg", "jpeg"):
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        raise ValueError(f"format must be 'jpg' or 'png', got {fmt!r}")
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {image.shape} image as {fmt}")
    return buf.tobytes()


# File mode for new files, as open() would give them (mkstemp's 0600 would hide outputs from others).
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK
_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
_LINKAT: list = []  # [libc.linkat] once found usable, [None] once found unusable


def _linkat():
    if not _LINKAT:
        func = None
        if sys.platform.startswith("linux") and hasattr(os, "O_TMPFILE"):
            try:
                func = ctypes.CDLL(None, use_errno=True).linkat
            except (OSError, AttributeError):
                func = None
        _LINKAT.append(func)
    return _LINKAT[0]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _link_unnamed(path: Path, data: bytes) -> bool:
    """Linux: write into an unnamed file (``O_TMPFILE``) of the target folder, then link it into
    place: atomic, one directory operation, and nothing is left behind if the writer is killed.
    False when unavailable here or when ``path`` exists (replacing needs a rename)."""
    linkat = _linkat()
    if linkat is None or path.exists():  # (a replaced file, e.g. a checkpoint, would be written twice)
        return False
    try:
        fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, _FILE_MODE)
    except FileNotFoundError:
        raise  # no such folder: the caller creates it and tries again
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise  # the folder cannot be written at all: reported by the caller, naming the file
        _LINKAT[0] = None  # a filesystem without O_TMPFILE
        return False
    try:
        _write_all(fd, data)
        if linkat(fd, b"", _AT_FDCWD, os.fsencode(path), _AT_EMPTY_PATH) == 0:
            return True
        code = ctypes.get_errno()
        if code != 17:  # not EEXIST (the file exists: replacing it needs a rename): no AT_EMPTY_PATH here
            _LINKAT[0] = None
        return False
    finally:
        os.close(fd)


def _write_unnamed_or_open_temporary(path: Path, data: bytes) -> tuple[int, str] | None:
    """None when ``data`` is in place already (unnamed file linked), else an open ``.tmp-`` file."""
    if _link_unnamed(path, data):
        return None
    return tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a rerun after SIGKILL) sees either the old
    file, no file, or the whole new file.

    New files are written unnamed and linked into place where Linux allows it; otherwise (and to
    replace an existing file) through a temporary file in the same folder, then a rename.
    Temporary files start with ``.tmp-`` so that listings can ignore them.
    """
    path = Path(path)
    try:
        _write_atomic(path, data)
    except OutputError:
        raise
    except OSError as exc:  # ENOSPC, EROFS, EACCES, EIO: one line naming the file, nothing partial left
        raise OutputError(path, exc) from None


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        opened = _write_unnamed_or_open_temporary(path, data)
    except FileNotFoundError:  # the folder does not exist yet (checked this way: one system call less per file)
        path.parent.mkdir(parents=True, exist_ok=True)
        opened = _write_unnamed_or_open_temporary(path, data)
    if opened is None:
        return
    fd, tmp = opened
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: str | Path, *, missing: str = "no such file", error: type[InputFileError] = InputFileError) -> Any:
    """Parse a JSON file; a missing, unreadable or invalid file raises ``error(path, ...)`` with
    ``missing`` as the problem for an absent file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(path, missing) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(path, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise error(path, f"cannot read ({exc.strerror})") from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """UTF-8 variant of :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_image(path: str | Path, image: np.ndarray, *, quality: int = 95) -> str:
    """Encode by the suffix of ``path`` (``.jpg``/``.jpeg``/``.png``), write atomically.

    Returns:
        The sha256 hex digest of the written bytes.
    """
    path = Path(path)
    data = encode_image(image, path.suffix, quality=quality)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) uint8 copy of a gray (H, W) / (H, W, 1), RGB or RGBA image.

    Alpha is dropped (composited on black would invent data; pix2pix sets simply ignore it).
    """
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"expected a gray, RGB or RGBA image, got shape {image.shape}")
