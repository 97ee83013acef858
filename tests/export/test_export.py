"""Issue 28: export every generator family to ONNX (and TorchScript) with a parity check; the ONNX
backend translates as PyTorch does, at the training size and at another size."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from export_families import FAMILIES

from p2ptools import registry
from p2ptools.export import writer
from p2ptools.export.backend import OnnxModel
from p2ptools.export.writer import export_model
from p2ptools.imageio import read_image, write_image
from p2ptools.plugin import LoadOptions

ort = pytest.importorskip("onnxruntime")


def _images(shape, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("eval_mode", [False, True], ids=["default", "eval"])
def test_onnx_export_matches_pytorch_at_two_sizes(family, eval_mode, family_run, tmp_path):
    run = family_run(family)
    model = registry.load_run(run, LoadOptions(eval_mode=eval_mode))
    result = export_model(model, run, tmp_path / "g.onnx")
    assert result.max_abs_diff <= writer.TOLERANCE and (tmp_path / "g.onnx").is_file()
    assert result.checked[0] == "2 validation image(s) 64x64"  # the run's own inputs, the training size
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]  # no temporary file left
    # the file alone: its metadata and a plain session with dynamic batch, height and width
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["eval_mode"] == ("true" if eval_mode or FAMILIES[family][0] == "pix2pixhd" else "false")
    assert float(meta["parity_max_abs_diff"]) == pytest.approx(result.max_abs_diff, rel=1e-2, abs=1e-12)
    assert int(meta["size_multiple"]) == model.size_multiple
    # the backend gives translate's outputs (seeded dropout masks included) at 64x64 and 64x128, batch 3
    onnx_model = OnnxModel(model, tmp_path / "g.onnx", run)
    for shape in ((64, 64, 3), (64, 128, 3)):
        images = _images(shape, 3)
        want, got = model.translate(images), onnx_model.translate(images)
        for w, g in zip(want, got, strict=True):
            assert g.shape == w.shape and np.abs(g.astype(int) - w).max() <= 1
            assert np.mean(g != w) < 0.01  # a level off only where float rounding meets a .5 boundary


def test_default_export_reproduces_the_seeded_dropout_noise(family_run, tmp_path):
    # the U-Net's default test-time semantics: dropout on, masks seeded by the image; masks of ones
    # (dropout off) give another output, so the backend's agreement above is the masks' doing
    run = family_run("unet-batch")
    model = registry.load_run(run, LoadOptions())
    export_model(model, run, tmp_path / "g.onnx")
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names[0] == "input" and names[1:] and all(n.startswith("dropout_") for n in names[1:])
    images = _images((64, 64, 3), 1)
    feeds = model.graph().feeds(images, [{}])
    noisy = sess.run(None, feeds)[0]
    ones = sess.run(None, {k: (v if k == "input" else np.ones_like(v)) for k, v in feeds.items()})[0]
    assert np.abs(noisy - ones).max() > 0.01
    assert np.abs(((noisy + 1) / 2 * 255).round() - model.translate(images)[0].transpose(2, 0, 1)).max() <= 1


def test_torchscript_export(family_run, tmp_path):
    import torch

    run = family_run("resnet-batch")
    model = registry.load_run(run, LoadOptions(eval_mode=True))
    result = export_model(model, run, tmp_path / "g.pt", fmt="torchscript")
    assert result.max_abs_diff <= writer.TOLERANCE
    extra = {"p2ptools.json": ""}
    loaded = torch.jit.load(str(tmp_path / "g.pt"), _extra_files=extra)
    assert json.loads(extra["p2ptools.json"])["netG"] == "resnet_6blocks"
    x = torch.rand(2, 3, 64, 128) * 2 - 1
    with torch.inference_mode():
        assert torch.allclose(loaded(x), model.graph().module(x), atol=1e-5)


def test_parity_failure_keeps_no_file_and_prints_the_figure(family_run, tmp_path, cli, monkeypatch):
    run = family_run("unet-instance")
    real = writer._torch_outputs
    monkeypatch.setattr(writer, "_torch_outputs", lambda graph, feeds: real(graph, feeds) + 0.002)
    res = cli("export", run, "--out", tmp_path / "g.onnx")
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "parity check failed: max |onnx - PyTorch| = 0.002 > tolerance 0.0001" in res.stderr and "file not kept" in res.stderr
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(writer, "_torch_outputs", real)
    res = cli("export", run, "--out", tmp_path / "g.onnx")
    assert res.code == 0 and "parity: max |onnx - PyTorch| = " in res.stdout and (tmp_path / "g.onnx").is_file()
    res = cli("export", run, "--out", tmp_path / "g.onnx")
    assert res.code == 1 and "exists; use --overwrite" in res.stderr


def test_without_the_extra_the_error_is_one_line(family_run, tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    run = family_run("unet-instance")
    for args in (("export", run, "--out", tmp_path / "g.onnx"),
                 ("translate", run, "--input", tmp_path, "--output", tmp_path / "o", "--backend", "onnx", "--onnx", tmp_path / "g.onnx")):
        res = cli(*args)
        assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1 and "pip install 'p2ptools[export]'" in res.stderr
    assert not (tmp_path / "g.onnx").exists()


def test_translate_backend_onnx_folder(family_run, export_data, tmp_path, cli):
    run = family_run("unet-batch")
    assert cli("export", run, "--out", tmp_path / "g.onnx").code == 0
    photos = tmp_path / "photos"
    for i, image in enumerate(_images((64, 128, 3), 3, seed=5)):
        write_image(photos / f"p{i}.png", image)
    assert cli("translate", run, "--input", photos, "--output", tmp_path / "torch", "--no-progress").code == 0
    res = cli("translate", run, "--input", photos, "--output", tmp_path / "onnx", "--no-progress", "--backend", "onnx",
              "--onnx", tmp_path / "g.onnx", "--batch-size", "2")
    assert res.code == 0, res.stderr
    for i in range(3):
        a, b = read_image(tmp_path / "torch" / f"p{i}.png"), read_image(tmp_path / "onnx" / f"p{i}.png")
        assert np.abs(a.astype(int) - b).max() <= 1
    info = json.loads((tmp_path / "onnx" / "translate.json").read_text())
    assert info["backend"]["name"] == "onnx" and "CPUExecutionProvider" in info["backend"]["providers"]
    # a file of the other test-time semantics is refused, naming it
    res = cli("translate", run, "--input", photos, "--output", tmp_path / "o2", "--no-progress", "--backend", "onnx",
              "--onnx", tmp_path / "g.onnx", "--eval-mode")
    assert res.code == 1 and "exported with eval_mode false" in res.stderr and not (tmp_path / "o2").exists()
