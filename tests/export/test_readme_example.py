"""Issue 28: the README's onnxruntime example is the contract: run it as written on an exported
tiny run and get translate's output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from p2ptools import registry
from p2ptools.export.writer import export_model
from p2ptools.imageio import read_image, write_image
from p2ptools.plugin import LoadOptions

pytest.importorskip("onnxruntime")
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- export-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README has no export example"
    return match.group(1)


def test_example_is_short():
    assert len(readme_example().strip().splitlines()) <= 20


@pytest.mark.parametrize("family", ["unet-batch", "hd-global"])
def test_readme_example_translates_like_translate(family, family_run, tmp_path, monkeypatch):
    run = family_run(family)
    model = registry.load_run(run, LoadOptions(eval_mode=True))
    export_model(model, run, tmp_path / "model.onnx")
    photo = np.random.default_rng(1).integers(0, 256, (70, 140, 3), dtype=np.uint8)  # not a multiple: the example crops
    write_image(tmp_path / "photo.png", photo)
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    out = read_image(tmp_path / "out.png")
    unit = model.size_multiple
    h, w = 70 // unit * unit, 140 // unit * unit
    want = model.translate([photo[:h, :w]])[0]
    assert out.shape == want.shape and np.abs(out.astype(int) - want).max() <= 1
