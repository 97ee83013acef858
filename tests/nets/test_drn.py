"""DRN-D-105 (p2ptools.nets.drn) against fyu/drn's own DRNSeg (tests/nets/reference_drn.py, BSD-3):
the published state-dict layout, logits to 1e-5 on random weights, and the weights loader."""

from __future__ import annotations

import importlib.util
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from p2ptools.errors import CheckpointError, InputFileError
from p2ptools.eval.drn_scorer import DRNScorer, read_drn_state_dict
from p2ptools.eval.scorers import ScorerOptions
from p2ptools.nets.drn import DRNSeg, bilinear_up_weight, drn_expected_shapes

_spec = importlib.util.spec_from_file_location("_reference_drn", Path(__file__).with_name("reference_drn.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def random_reference(seed: int = 0) -> torch.nn.Module:
    """fyu/drn's DRNSeg('drn_d_105', 19) with its own conv init and random batch-norm statistics
    and affine parameters (the init leaves them at identity, which would hide a swapped BN)."""
    torch.manual_seed(seed)
    ref = reference.DRNSeg("drn_d_105", 19, pretrained=False)
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        ref.seg.bias.normal_(0, 0.1)
    return ref.eval()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The reference module and a .pth of its state dict, as drn-d-105_ms_cityscapes.pth is stored."""
    ref = random_reference()
    path = tmp_path_factory.mktemp("drn") / "drn-d-105_ms_cityscapes.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def test_layout_is_the_published_one(published):
    ref, _ = published
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    ours = drn_expected_shapes(19)
    assert list(ours.items()) == list(theirs.items())  # same keys, shapes and order
    assert len(ours) == 651 and ours["up.weight"] == (19, 1, 16, 16) and ours["seg.weight"] == (19, 512, 1, 1)
    assert sum(int(np.prod(s)) for k, s in ours.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == sum(
        p.numel() for p in ref.parameters())
    up = torch.nn.ConvTranspose2d(19, 19, 16, stride=8, padding=4, groups=19, bias=False)
    reference.fill_up_weights(up)
    assert torch.equal(bilinear_up_weight(19), up.weight.data)


@pytest.mark.parametrize("size", [(16, 24), (13, 21)])
def test_logits_equal_the_reference(published, size):
    ref, path = published
    net = DRNSeg(19).eval()
    tensors, how = read_drn_state_dict(path)
    assert how == "state dict"
    net.load_checked(tensors, path)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the reference's LogSoftmax() without dim
        ref_log_probs, ref_seg = ref(x)  # DRNSeg.forward: (log_softmax(up(seg)), seg)
        ref_logits = ref.up(ref_seg)
        ours = net(x)
    assert ours.shape == ref_logits.shape == (1, 19, -(-size[0] // 8) * 8, -(-size[1] // 8) * 8)
    assert ref_logits.abs().max() > 1 and ref_logits.std() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(ours, ref_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.log_softmax(ours, 1), ref_log_probs, atol=1e-5, rtol=0)


def test_scorer_reads_a_segment_py_checkpoint(published, tmp_path):
    ref, _ = published
    path = tmp_path / "checkpoint.pth.tar"  # segment.py train: DataParallel keys inside "state_dict"
    torch.save({"epoch": 3, "arch": "drn_d_105", "best_prec1": 0.5, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    scorer = DRNScorer.from_weights(path, ScorerOptions())
    assert scorer.stored_as.startswith("segment.py checkpoint")
    assert torch.equal(scorer.net.seg.weight, ref.seg.weight)


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(InputFileError) as info:
        DRNScorer.from_weights(path, ScorerOptions())
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def _layout(**changes) -> dict[str, torch.Tensor]:
    """Tensors of the published shapes as broadcast views of one zero (tiny files), with changes."""
    state = {k: torch.zeros(()).expand(shape) for k, shape in drn_expected_shapes(19).items()}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def test_mismatched_weights_name_the_file_and_the_first_bad_key(tmp_path):
    torch.save(_layout(), tmp_path / "ok.pth")
    DRNScorer.from_weights(tmp_path / "ok.pth", ScorerOptions())  # the layout alone loads
    torch.save(_layout(**{"base.5.3.conv2.weight": None}), tmp_path / "missing.pth")
    with pytest.raises(CheckpointError):
        DRNScorer.from_weights(tmp_path / "missing.pth", ScorerOptions())
    _refused(tmp_path / "missing.pth", "missing key 'base.5.3.conv2.weight'")
    torch.save(_layout(**{"seg.weight": torch.zeros(20, 512, 1, 1), "seg.bias": torch.zeros(20)}), tmp_path / "classes20.pth")
    _refused(tmp_path / "classes20.pth", "'seg.weight'", "(20, 512, 1, 1)", "(19, 512, 1, 1)")
    torch.save(_layout(extra=torch.zeros(1)), tmp_path / "extra.pth")
    _refused(tmp_path / "extra.pth", "unexpected key 'extra'")
    torch.save(_layout(**{"up.weight": [1.0]}), tmp_path / "list.pth")
    _refused(tmp_path / "list.pth", "'up.weight' holds a list")


def test_unreadable_or_unsafe_files_are_refused(tmp_path):
    _refused(tmp_path / "absent.pth", "no such weights file")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    _refused(tmp_path / "garbage.pth", "weights_only=True")
    with open(tmp_path / "object.pth", "wb") as fh:  # a pickle that would run code: never unpickled
        pickle.dump(Path("x"), fh, protocol=2)
    _refused(tmp_path / "object.pth", "weights_only=True")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    _refused(tmp_path / "tensor.pth", "not a state dict")
