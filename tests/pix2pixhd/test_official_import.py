"""import-checkpoint of the official latest_net_G.pth: generated official-layout files (random
weights, global and local) import, and the run computes what the source network computes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_pix2pixhd import RefGlobalGenerator, RefLocalEnhancer, randomize  # noqa: E402

from p2p_testutils import run_p2ptools  # noqa: E402
from p2ptools.errors import CheckpointError  # noqa: E402
from p2ptools.plugin import LoadOptions  # noqa: E402
from p2ptools.registry import load_run  # noqa: E402

LABEL_NC = 5


def label_inputs(seed: int, h: int = 32, w: int = 64) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Label and instance maps, and the official network input made from them independently."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(0, LABEL_NC, (h // 8, w // 8)), 8, 0), 8, 1).astype(np.uint8)
    inst = labels.astype(np.uint16) * 1000 + (np.arange(w)[None, :] >= w // 2)
    onehot = np.eye(LABEL_NC, dtype=np.float32)[labels].transpose(2, 0, 1)
    edge = np.zeros((h, w), np.float32)
    edge[:, 1:] += inst[:, 1:] != inst[:, :-1]
    edge[:, :-1] += inst[:, 1:] != inst[:, :-1]
    edge[1:, :] += inst[1:, :] != inst[:-1, :]
    edge[:-1, :] += inst[1:, :] != inst[:-1, :]
    x = np.concatenate([onehot, (edge > 0)[None].astype(np.float32)])
    return labels, inst, torch.from_numpy(x)[None]


@pytest.mark.parametrize("kind", ["global", "local"])
def test_official_file_imports_and_computes_the_same_function(tmp_path, kind):
    if kind == "global":
        ref = randomize(RefGlobalGenerator(LABEL_NC + 1, 3, ngf=4, n_downsampling=2, n_blocks=2), 0)
        flags = ["--netG", "global", "--ngf", "4", "--n-downsample-global", "2", "--n-blocks-global", "2"]
    else:
        ref = randomize(RefLocalEnhancer(LABEL_NC + 1, 3, ngf=4, n_downsample_global=2, n_blocks_global=2, n_blocks_local=1), 1)
        flags = ["--netG", "local", "--ngf", "4", "--n-downsample-global", "2", "--n-blocks-global", "2", "--n-blocks-local", "1"]
        assert {k.split(".")[0] for k in ref.state_dict()} == {"model", "model1_1", "model1_2"}
    pth = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), pth)
    result = run_p2ptools("import-checkpoint", str(pth), "--model", "pix2pixhd", "--out", str(tmp_path / "run"),
                          "--label-nc", str(LABEL_NC), *flags)
    assert result.code == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["plugin"] == "pix2pixhd" and config["generator_params"] == sum(p.numel() for p in ref.parameters())
    model = load_run(tmp_path / "run", LoadOptions())
    assert model.input_extras == ("label_ids", "instance_ids")
    labels, inst, x = label_inputs(2)
    with torch.no_grad():
        want = ((ref(x)[0].permute(1, 2, 0).numpy() + 1) / 2 * 255)
    got = model.translate([np.zeros((32, 64, 3), np.uint8)], [{"label_ids": labels, "instance_ids": inst}])[0]
    assert np.abs(got.astype(np.float64) - want).max() <= 0.5 + 1e-3  # the same function, rounded to uint8
    # and the float outputs agree to 1e-5
    from p2ptools_pix2pixhd.data import encode_input

    packed = torch.from_numpy(np.stack([labels, inst]).astype(np.int32))[None]
    with torch.no_grad():
        assert torch.allclose(model.net_g(encode_input(packed, LABEL_NC, True)), ref(x), atol=1e-5)


def test_mismatched_file_names_it_and_guesses(tmp_path):
    ref = randomize(RefGlobalGenerator(LABEL_NC + 1, 3, ngf=4, n_downsampling=2, n_blocks=2), 0)
    pth = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), pth)
    from p2ptools_pix2pixhd.official_import import import_official_checkpoint
    from p2ptools_pix2pixhd.options import Pix2PixHDOptions

    with pytest.raises(CheckpointError, match=r"latest_net_G.pth.*does not match --netG global --ngf 8.*shape mismatch.*"
                                              r"looks like --netG global --ngf 4 --n-downsample-global 2 --n-blocks-global 2 with 6 input"):
        import_official_checkpoint(pth, Pix2PixHDOptions(ngf=8, n_downsample_global=2, n_blocks_global=2, label_nc=LABEL_NC),
                                   tmp_path / "run")
    assert not (tmp_path / "run").exists()
    (tmp_path / "evil.pth").write_bytes(b"garbage, not a zip or pickle")
    with pytest.raises(CheckpointError, match="evil.pth: not a readable PyTorch weights file"):
        import_official_checkpoint(tmp_path / "evil.pth", Pix2PixHDOptions(), tmp_path / "run")
