"""The caffemodel reader/writer: both formats, packed and unpacked data, legacy shapes, bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from p2ptools.caffe import fit_blob, read_caffemodel, read_caffemodel_layers, read_caffemodel_types, write_caffemodel
from p2ptools.errors import CheckpointError, InputFileError


def _layers(rng):
    return [
        ("data", "Data", []),
        ("conv1", "Convolution", [rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]),
        ("relu1", "ReLU", []),
        ("up", "Deconvolution", [rng.standard_normal((4, 2, 4, 4)).astype(np.float32)]),
        ("score", "Convolution", [rng.standard_normal((1, 4, 1, 1)).astype(np.float32), np.array([0.5], np.float32)]),
        ("ip", "InnerProduct", [rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]),
    ]


@pytest.mark.parametrize("v1", [False, True])
@pytest.mark.parametrize("packed", [True, False])
def test_round_trip(tmp_path, v1, packed):
    rng = np.random.default_rng(0)
    layers = _layers(rng)
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, layers, v1=v1, packed=packed)
    blobs = read_caffemodel(path)
    assert list(blobs) == ["conv1", "up", "score", "ip"]  # blob-less layers omitted, file order kept
    for name, _, expected in layers:
        if not expected:
            continue
        assert len(blobs[name]) == len(expected)
        for got, want in zip(blobs[name], expected):
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    types = read_caffemodel_types(path)
    assert types == {"data": "Data", "conv1": "Convolution", "relu1": "ReLU", "up": "Deconvolution", "score": "Convolution", "ip": "InnerProduct"}


def test_v1_enum_values_on_disk(tmp_path):
    # hand-built V1 message: layers (2) { name (4) "d", type (5) = 39 (DECONVOLUTION) }
    msg = b"\x22\x01d" + b"\x28\x27"
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(b"\x12" + bytes([len(msg)]) + msg)
    assert read_caffemodel_types(path) == {"d": "Deconvolution"}


def test_packed_float_bytes_on_disk(tmp_path):
    # hand-built new-format message with a packed float blob and a packed shape (2,)
    blob = b"\x2a\x08" + struct.pack("<2f", 1.5, -2.0) + b"\x3a\x03\x0a\x01\x02"
    layer = b"\x0a\x01w" + b"\x12\x0bConvolution" + b"\x3a" + bytes([len(blob)]) + blob
    path = tmp_path / "hand.caffemodel"
    path.write_bytes(b"\xa2\x06" + bytes([len(layer)]) + layer)  # field 100, wire 2 -> key 0x322 = a2 06
    (w,) = read_caffemodel(path)["w"]
    np.testing.assert_array_equal(w, [1.5, -2.0])


def test_legacy_shape(tmp_path):
    rng = np.random.default_rng(1)
    layers = _layers(rng)
    path = tmp_path / "legacy.caffemodel"
    write_caffemodel(path, layers, legacy_shape=True)
    blobs = read_caffemodel(path)
    assert blobs["conv1"][0].shape == (4, 3, 3, 3)
    assert blobs["conv1"][1].shape == (4,)  # legacy bias (1, 1, 1, n) -> (n,)
    assert blobs["score"][0].shape == (1, 4, 1, 1)  # a 4-D weight with one output keeps its 4 dims
    assert blobs["score"][1].shape == (1,)
    assert blobs["ip"][0].shape == (1, 1, 5, 7)  # Caffe's legacy InnerProduct form ...
    ip = fit_blob(blobs["ip"][0], (5, 7), layer="ip", path=path)  # ... reconciled by fit_blob
    np.testing.assert_array_equal(ip, layers[5][2][0])
    with pytest.raises(CheckpointError, match=r"'ip'.*\(1, 1, 5, 7\).*\(7, 5\)"):
        fit_blob(blobs["ip"][0], (7, 5), layer="ip", path=path)


def test_double_data(tmp_path):
    w = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    path = tmp_path / "double.caffemodel"
    write_caffemodel(path, [("x", "InnerProduct", [w])], double=True)
    (got,) = read_caffemodel(path)["x"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, w.astype(np.float32))


def test_zero_copy_views(tmp_path):
    w = np.ones((3, 3), np.float32)
    path = tmp_path / "z.caffemodel"
    write_caffemodel(path, [("x", "InnerProduct", [w])])
    (got,) = read_caffemodel(path)["x"]
    assert not got.flags.writeable and not got.flags.owndata  # a view of the map, not a copy


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty file"),
        (b"name: 'FCN'\nlayer { name: 'conv1_1' }\n", "not a readable caffemodel"),  # a prototxt
        (b"\x08\x01\x10\x02", "no layers found"),  # valid protobuf, no layers
        (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "caffemodel"),
    ],
)
def test_garbage_file_error(tmp_path, content, problem):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=problem) as info:
        read_caffemodel(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("packed", [True, False])
def test_truncated_file_error(tmp_path, packed):
    rng = np.random.default_rng(2)
    path = tmp_path / "full.caffemodel"
    write_caffemodel(path, _layers(rng), packed=packed)
    data = path.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    for size in (len(data) - 1, len(data) - 3, len(data) // 2, 7):
        cut.write_bytes(data[:size])
        with pytest.raises(InputFileError, match="not a readable caffemodel") as info:
            read_caffemodel(cut)
        assert str(cut) in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_caffemodel(tmp_path / "nope.caffemodel")
    with pytest.raises(InputFileError, match="folder"):
        read_caffemodel(tmp_path)


def test_duplicate_layer_with_weights(tmp_path):
    w = [np.zeros((2, 2), np.float32)]
    path = tmp_path / "dup.caffemodel"
    write_caffemodel(path, [("a", "InnerProduct", w), ("a", "InnerProduct", w)])
    with pytest.raises(InputFileError, match="'a' appears twice"):
        read_caffemodel(path)


def test_layers_list_keeps_everything(tmp_path):
    path = tmp_path / "l.caffemodel"
    write_caffemodel(path, [("relu", "ReLU", []), ("fc", "InnerProduct", [np.ones((2, 2), np.float32)])], v1=True)
    layers = read_caffemodel_layers(path)
    assert [(layer.name, layer.type, len(layer.blobs)) for layer in layers] == [("relu", "ReLU", 0), ("fc", "InnerProduct", 1)]


def test_partial_unpacked_float_inside_a_valid_message(tmp_path):
    blob = b"\x2d" + struct.pack("<f", 1.0) + b"\x2d\x00\x00"  # one float, then a cut-off one
    layer = b"\x0a\x01w" + b"\x3a" + bytes([len(blob)]) + blob
    path = tmp_path / "partial.caffemodel"
    path.write_bytes(b"\xa2\x06" + bytes([len(layer)]) + layer)
    with pytest.raises(InputFileError, match="truncated float"):
        read_caffemodel(path)
