"""The drn-d-105 scorer against fyu/drn's segment.py test procedures (single-scale ``test`` and
multi-scale ``test_ms``), run with the reference module and code of tests/nets/reference_drn.py."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p2ptools.eval.drn_scorer import DRNScorer
from p2ptools.eval.scorer_registry import load_scorer_plugin
from p2ptools.eval.scorers import ScorerOptions

_spec = importlib.util.spec_from_file_location("_reference_drn_for_scorer", Path(__file__).resolve().parents[1] / "nets" / "reference_drn.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)
#: fyu/drn's datasets/cityscapes/info.json
INFO = {"std": [0.1829540508368939, 0.18656561047509476, 0.18447508988480435], "mean": [0.29010095242892997, 0.32808144844279574, 0.28696394422942517]}
SCALES = [0.5, 0.75, 1.25, 1.5, 1.75]  # segment.py test_seg


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """fyu/drn's DRNSeg with random weights, saved as drn-d-105_ms_cityscapes.pth is stored."""
    torch.manual_seed(3)
    ref = reference.DRNSeg("drn_d_105", 19, pretrained=False)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
                m.running_var.uniform_(0.5, 1.5)
    ref.eval()
    path = tmp_path_factory.mktemp("drn") / "drn-d-105_ms_cityscapes.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


class TinySeg(torch.nn.Module):
    """DRNSeg's geometry at a fraction of its cost (the 105 layers are tested in tests/nets):
    three stride-2 convolutions (output ceil(H / 8)), a 1x1 score layer and DRNSeg's ``up``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.base = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Conv2d(c, 16, 3, stride=2, padding=1), torch.nn.ReLU()) for c in (3, 16, 16)])
        self.seg = torch.nn.Conv2d(16, 19, 1)
        with torch.no_grad():
            self.seg.weight.normal_(0, 3)  # class scores that vary across the image
            self.seg.bias.zero_()
        self.up = torch.nn.ConvTranspose2d(19, 19, 16, stride=8, padding=4, groups=19, bias=False)
        reference.fill_up_weights(self.up)

    def forward(self, x):
        return self.up(self.seg(self.base(x)))


class AsReference(torch.nn.Module):
    """A logits network with the reference DRNSeg's forward: (log-softmax over classes, scores)."""

    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.log_softmax(self.net(x), 1), None


def _to_input(pil: Image.Image) -> torch.Tensor:
    """segment.py's transforms: ToTensor (bytes -> CHW / 255) then Normalize(info.json)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage, as the reference uses it
        t = torch.ByteTensor(torch.ByteStorage.from_buffer(pil.tobytes())).view(pil.size[1], pil.size[0], 3)
    t = t.transpose(0, 1).transpose(0, 2).contiguous().float().div(255)
    for c, m, s in zip(t, torch.FloatTensor(INFO["mean"]), torch.FloatTensor(INFO["std"]), strict=True):
        c.sub_(m).div_(s)
    return t[None]


def reference_predictions(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(single-scale, multi-scale) predictions of segment.py's test() and test_ms() for one image."""
    pil = Image.fromarray(image)
    w, h = pil.size
    with torch.no_grad():
        images = [_to_input(pil)] + [_to_input(pil.resize((int(w * s), int(h * s)), Image.BICUBIC)) for s in SCALES]  # SegListMS
        outputs = [model(x)[0].data for x in images]
    single = torch.max(outputs[0], 1)[1].numpy()[0]  # test(): the first output is the image's own
    final = sum([reference.resize_4d_tensor(out, w, h) for out in outputs])  # test_ms
    return single, final.argmax(axis=1)[0]


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)  # smooth content plus fine noise
    coarse = np.asarray(Image.fromarray(base).resize((40, 32), Image.BICUBIC)).astype(np.int16)
    return np.clip(coarse + rng.integers(-20, 21, coarse.shape), 0, 255).astype(np.uint8)


def test_predictions_equal_segment_py(image, tmp_path):
    net = TinySeg().eval()
    expected_single, expected_multi = reference_predictions(AsReference(net), image)
    assert len(np.unique(expected_single)) > 2  # the comparison is not about a constant map
    assert (expected_single != expected_multi).any()  # the two tests differ on this image
    for multi_scale, expected in ((False, expected_single), (True, expected_multi)):
        scorer = DRNScorer(net, tmp_path / "w.pth", ScorerOptions(multi_scale=multi_scale))
        assert scorer.scales == ((1.0, 0.5, 0.75, 1.25, 1.5, 1.75) if multi_scale else (1.0,))
        ours = scorer.predict([image], (32, 40))
        assert ours.shape == (1, 32, 40) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours[0], expected)


def test_the_real_network_through_the_registry_equals_segment_py(weights, image):
    ref, path = weights
    scorer = load_scorer_plugin("drn-d-105", path, ScorerOptions())
    assert isinstance(scorer, DRNScorer)
    small = image[:16, :24]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = torch.max(ref(_to_input(Image.fromarray(small)))[0], 1)[1].numpy()[0]  # segment.py test()
    np.testing.assert_array_equal(scorer.predict([small], (16, 24))[0], expected)


def test_images_are_resized_bilinearly_to_the_segmented_size(image):
    import cv2

    scorer = DRNScorer(TinySeg().eval(), Path("w.pth"), ScorerOptions(batch_size=2))
    small = cv2.resize(image, (20, 16), interpolation=cv2.INTER_AREA)
    upsampled = cv2.resize(small, (40, 32), interpolation=cv2.INTER_LINEAR)
    pred = scorer.predict([small, upsampled], (32, 40))
    np.testing.assert_array_equal(pred[0], pred[1])
