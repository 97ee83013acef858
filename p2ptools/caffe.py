"""Read (and, for tests, write) Caffe ``.caffemodel`` weight files without Caffe, protoc or protobuf.

A caffemodel is one protobuf ``NetParameter`` message. Only the few fields that carry weights are
decoded; everything else is skipped by its wire type:

- ``NetParameter``: ``layer`` = 100 (``LayerParameter``), the old V1 ``layers`` = 2
  (``V1LayerParameter``).
- ``LayerParameter``: name 1, type 2 (string), blobs 7.
- ``V1LayerParameter``: name 4, type 5 (``LayerType`` enum, mapped to the new type strings), blobs 6.
- ``BlobProto``: num 1, channels 2, height 3, width 4 (the legacy 4-D shape), data 5 (float32,
  packed or not), shape 7 (``BlobShape.dim`` = 1, int64, packed or not), double_data 8.

The file is memory-mapped and packed float data is returned as ``np.frombuffer`` views of the map, so
a 513 MB file is "read" in milliseconds; the pages are loaded when the arrays are used (for example
when copied into a network). The views are read-only.

Shapes: a blob with a ``shape`` field gets exactly that shape. A blob with only the legacy
num/channels/height/width gets that 4-D shape as Caffe itself does, except the legacy bias form
``(1, 1, 1, n)`` which becomes ``(n,)``. :func:`fit_blob` reconciles the remaining legacy forms (an
InnerProduct weight ``(1, 1, out, in)``) with the shape a network expects.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "tiny.caffemodel"
    >>> write_caffemodel(path, [("conv", "Convolution", [np.ones((2, 1, 3, 3), np.float32), np.zeros(2, np.float32)])])
    >>> [b.shape for b in read_caffemodel(path)["conv"]]
    [(2, 1, 3, 3), (2,)]
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2ptools.errors import CheckpointError, InputFileError
from p2ptools.imageio import write_bytes_atomic

# V1LayerParameter.LayerType -> the type strings of the new format (Caffe's upgrade table).
V1_LAYER_TYPES: dict[int, str] = {
    0: "", 35: "AbsVal", 1: "Accuracy", 30: "ArgMax", 2: "BNLL", 3: "Concat", 37: "ContrastiveLoss",
    4: "Convolution", 5: "Data", 39: "Deconvolution", 6: "Dropout", 32: "DummyData",
    7: "EuclideanLoss", 25: "Eltwise", 38: "Exp", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output",
    28: "HingeLoss", 11: "Im2col", 12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
    29: "MemoryData", 16: "MultinomialLogisticLoss", 34: "MVN", 17: "Pooling", 26: "Power",
    18: "ReLU", 19: "Sigmoid", 27: "SigmoidCrossEntropyLoss", 36: "Silence", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 33: "Slice", 23: "TanH", 24: "WindowData", 31: "Threshold",
}  # fmt: skip
_V1_TYPE_IDS = {name: num for num, name in V1_LAYER_TYPES.items() if name}

# wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _ParseError(Exception):
    """Malformed protobuf at a byte offset (turned into an InputFileError naming the file)."""


@dataclass(frozen=True)
class CaffeLayer:
    """One layer of a caffemodel: its name, type string and weight blobs (float32 arrays)."""

    name: str
    type: str
    blobs: tuple[np.ndarray, ...]


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _ParseError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _ParseError(f"varint longer than 10 bytes at byte {pos}")


def _next_field(buf: memoryview, pos: int, end: int) -> tuple[int, int, object, int]:
    """Decode one field at ``pos``: (field number, wire type, value or (start, stop) span, next pos)."""
    key, pos = _varint(buf, pos, end)
    field, wire = key >> 3, key & 7
    if field == 0:
        raise _ParseError(f"field number 0 at byte {pos}")
    if wire == _VARINT:
        value, pos = _varint(buf, pos, end)
        return field, wire, value, pos
    if wire == _LEN:
        length, pos = _varint(buf, pos, end)
        if pos + length > end:
            raise _ParseError(f"field {field} of {length} bytes at byte {pos} runs past its message (ends at byte {end})")
        return field, wire, (pos, pos + length), pos + length
    if wire in (_I32, _I64):
        size = 4 if wire == _I32 else 8
        if pos + size > end:
            raise _ParseError(f"truncated fixed-size field {field} at byte {pos}")
        return field, wire, (pos, pos + size), pos + size
    # groups (3, 4) are not used by caffe.proto; 6 and 7 do not exist
    raise _ParseError(f"unsupported wire type {wire} (field {field}) at byte {pos}")


def _fields(buf: memoryview, pos: int, end: int):
    """Yield (field number, wire type, value or span, next position) for each field of a message."""
    while pos < end:
        item = _next_field(buf, pos, end)
        pos = item[3]
        yield item


def _unpacked_floats(buf: memoryview, start: int, end: int) -> int:
    """Number of consecutive unpacked ``data`` entries (tag 0x2d + 4 bytes) starting at ``start``."""
    n = (end - start) // 5
    records = np.frombuffer(buf, dtype=np.dtype([("tag", "u1"), ("value", "<f4")]), count=n, offset=start)
    bad = np.flatnonzero(records["tag"] != 0x2D)
    return int(bad[0]) if len(bad) else n


def _parse_blob(buf: memoryview, start: int, end: int) -> np.ndarray:
    legacy = {1: None, 2: None, 3: None, 4: None}
    shape: list[int] | None = None
    chunks: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    pos = start
    while pos < end:
        key, _ = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 5 and wire == _I32:  # unpacked floats: take the whole run at once
            count = _unpacked_floats(buf, pos, end)
            if count == 0:
                raise _ParseError(f"truncated float at byte {pos}")
            rec = np.frombuffer(buf, dtype=np.dtype([("tag", "u1"), ("value", "<f4")]), count=count, offset=pos)
            chunks.append(rec["value"].copy())
            pos += 5 * count
            continue
        field, wire, value, pos = _next_field(buf, pos, end)
        if field in legacy and wire == _VARINT:
            legacy[field] = value
        elif field == 5 and wire == _LEN:
            a, b = value
            if (b - a) % 4:
                raise _ParseError(f"packed float data of {b - a} bytes (not a multiple of 4) at byte {a}")
            chunks.append(np.frombuffer(buf, dtype="<f4", count=(b - a) // 4, offset=a))
        elif field == 8 and wire == _LEN:
            a, b = value
            if (b - a) % 8:
                raise _ParseError(f"packed double data of {b - a} bytes at byte {a}")
            doubles.append(np.frombuffer(buf, dtype="<f8", count=(b - a) // 8, offset=a).astype(np.float32))
        elif field == 8 and wire == _I64:
            doubles.append(np.frombuffer(buf, dtype="<f8", count=1, offset=value[0]).astype(np.float32))
        elif field == 7 and wire == _LEN:
            shape = []
            for sub, sub_wire, sub_value, _ in _fields(buf, *value):
                if sub != 1:
                    continue
                if sub_wire == _VARINT:
                    shape.append(sub_value)
                elif sub_wire == _LEN:
                    p, q = sub_value
                    while p < q:
                        dim, p = _varint(buf, p, q)
                        shape.append(dim)
    if chunks and doubles:
        raise _ParseError(f"blob at byte {start} has both float and double data")
    parts = chunks or doubles
    data = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else np.zeros(0, np.float32))
    if shape is None:
        dims = [legacy[k] for k in (1, 2, 3, 4)]
        if all(d is None for d in dims):
            shape = [data.size]
        else:
            shape = [1 if d is None else d for d in dims]
            if shape[:3] == [1, 1, 1]:
                shape = shape[3:]
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if size != data.size:
        raise _ParseError(f"blob at byte {start} has shape {tuple(shape)} ({size} values) but {data.size} values")
    return data.reshape(shape)


def _parse_layer(buf: memoryview, start: int, end: int, v1: bool) -> CaffeLayer:
    name_f, type_f, blobs_f = (4, 5, 6) if v1 else (1, 2, 7)
    name, type_name, blobs = "", "", []
    for field, wire, value, _ in _fields(buf, start, end):
        if field == name_f and wire == _LEN:
            name = _text(buf, value)
        elif field == type_f and v1 and wire == _VARINT:
            type_name = V1_LAYER_TYPES.get(value, f"V1Type{value}")
        elif field == type_f and not v1 and wire == _LEN:
            type_name = _text(buf, value)
        elif field == blobs_f and wire == _LEN:
            blobs.append(_parse_blob(buf, *value))
    return CaffeLayer(name, type_name, tuple(blobs))


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    try:
        return bytes(buf[span[0] : span[1]]).decode("utf-8")
    except UnicodeDecodeError:
        raise _ParseError(f"a layer name or type at byte {span[0]} is not UTF-8 text") from None


def read_caffemodel_layers(path: str | Path) -> list[CaffeLayer]:
    """Every layer of a caffemodel in file order (new ``layer`` and V1 ``layers`` both read).

    Raises:
        InputFileError: the file is missing, is not a caffemodel (protobuf errors, no layers), is
            truncated, or names one layer twice with weights.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size == 0:
                raise InputFileError(path, "empty file, not a caffemodel")
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a folder, expected a .caffemodel file") from None
    buf = memoryview(mm)
    layers: list[CaffeLayer] = []
    try:
        for field, wire, value, _ in _fields(buf, 0, len(buf)):
            if field in (100, 2) and wire == _LEN:
                layers.append(_parse_layer(buf, *value, v1=field == 2))
    except _ParseError as exc:
        raise InputFileError(path, f"not a readable caffemodel (protobuf NetParameter): {exc}") from None
    if not layers:
        raise InputFileError(path, "not a caffemodel: no layers found in the protobuf NetParameter")
    seen: set[str] = set()
    for layer in layers:
        if layer.blobs:
            if layer.name in seen:
                raise InputFileError(path, f"layer {layer.name!r} appears twice with weights")
            seen.add(layer.name)
    return layers


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its weight blobs as float32 arrays (read-only views of the memory-mapped file).

    Layers without blobs (ReLU, pooling, data, loss ...) are omitted. Convolution weights are
    (out, in, kh, kw) with a bias (out,); Deconvolution weights (in, out, kh, kw), which is the layout
    of ``torch.nn.ConvTranspose2d.weight``.

    Raises:
        InputFileError: see :func:`read_caffemodel_layers`.
    """
    return {layer.name: list(layer.blobs) for layer in read_caffemodel_layers(path) if layer.blobs}


def read_caffemodel_types(path: str | Path) -> dict[str, str]:
    """Layer name -> type string ("Convolution", "Deconvolution", ...) for every layer; V1 enums are
    mapped to the new names."""
    return {layer.name: layer.type for layer in read_caffemodel_layers(path)}


def fit_blob(blob: np.ndarray, shape: tuple[int, ...], *, layer: str, path: str | Path, index: int = 0) -> np.ndarray:
    """``blob`` reshaped to ``shape`` when they differ only by leading 1s (legacy 4-D shapes), else
    a :class:`CheckpointError` naming the file, the layer and both shapes."""
    shape = tuple(int(s) for s in shape)
    if tuple(blob.shape) == shape:
        return blob

    def strip(s: tuple[int, ...]) -> tuple[int, ...]:
        s = tuple(s)
        while len(s) > 1 and s[0] == 1:
            s = s[1:]
        return s

    if strip(tuple(blob.shape)) == strip(shape):
        return blob.reshape(shape)
    raise CheckpointError(path, f"layer {layer!r} blob {index} has shape {tuple(blob.shape)}, expected {shape}")


# ---------------------------------------------------------------------------------------- writing


def _enc_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _enc_field(field: int, wire: int, payload: bytes | int) -> bytes:
    key = _enc_varint(field << 3 | wire)
    if wire == _VARINT:
        return key + _enc_varint(int(payload))
    if wire == _LEN:
        return key + _enc_varint(len(payload)) + payload
    return key + payload


def _enc_blob(blob: np.ndarray, *, packed: bool, legacy_shape: bool, double: bool) -> bytes:
    blob = np.asarray(blob)
    out = bytearray()
    if legacy_shape:
        if blob.ndim > 4:
            raise ValueError(f"the legacy num/channels/height/width shape holds at most 4 dims, got {blob.shape}")
        dims = (1,) * (4 - blob.ndim) + tuple(blob.shape)
        for field, dim in zip((1, 2, 3, 4), dims):
            out += _enc_field(field, _VARINT, dim)
    if double:
        out += _enc_field(8, _LEN, blob.astype("<f8").tobytes())
    elif packed:
        out += _enc_field(5, _LEN, blob.astype("<f4").tobytes())
    else:
        key = _enc_varint(5 << 3 | _I32)
        out += b"".join(key + struct.pack("<f", v) for v in blob.astype("<f4").ravel().tolist())
    if not legacy_shape:
        dims_bytes = b"".join(_enc_varint(d) for d in blob.shape)
        if packed:
            shape_msg = _enc_field(1, _LEN, dims_bytes)
        else:
            shape_msg = b"".join(_enc_field(1, _VARINT, d) for d in blob.shape)
        out += _enc_field(7, _LEN, shape_msg)
    return bytes(out)


def write_caffemodel(
    path: str | Path,
    layers: list[tuple[str, str, list[np.ndarray]]],
    *,
    v1: bool = False,
    packed: bool = True,
    legacy_shape: bool = False,
    double: bool = False,
) -> None:
    """Write a caffemodel with the given (name, type, blobs) layers, atomically (tests and tools).

    Args:
        v1: the old ``layers`` (field 2) format with enum types instead of ``layer`` (field 100).
        packed: packed float data and shape dims, else one field per value.
        legacy_shape: num/channels/height/width (leading 1s added) instead of the ``shape`` field.
        double: values in ``double_data`` instead of ``data``.
    """
    out = bytearray(_enc_field(1, _LEN, b"p2ptools"))
    for name, type_name, blobs in layers:
        enc_blobs = [_enc_blob(b, packed=packed, legacy_shape=legacy_shape, double=double) for b in blobs]
        if v1:
            if type_name not in _V1_TYPE_IDS:
                raise ValueError(f"layer type {type_name!r} has no V1 enum value")
            msg = _enc_field(4, _LEN, name.encode()) + _enc_field(5, _VARINT, _V1_TYPE_IDS[type_name])
            msg += b"".join(_enc_field(6, _LEN, b) for b in enc_blobs)
            out += _enc_field(2, _LEN, msg)
        else:
            msg = _enc_field(1, _LEN, name.encode()) + _enc_field(2, _LEN, type_name.encode())
            msg += b"".join(_enc_field(7, _LEN, b) for b in enc_blobs)
            out += _enc_field(100, _LEN, msg)
    write_bytes_atomic(path, bytes(out))
