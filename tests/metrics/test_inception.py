"""The FID Inception: built without downloads, loaded from a local file, features equal to
pytorch-fid's own network on the same weights under both resize protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.metrics.inception import FeatureExtractor, load_inception
from p2ptools.metrics.resize import clean_resize


@pytest.fixture(scope="module")
def reference(inception_file):
    """pytorch-fid's InceptionV3 with its weight download replaced by our local file."""
    import pytorch_fid.inception as pfi

    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: torch.load(inception_file, weights_only=True)
    try:
        legacy = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
        sized = pfi.InceptionV3([3], resize_input=False, normalize_input=True).eval()
    finally:
        pfi.load_state_dict_from_url = original
    return legacy, sized


@pytest.fixture(scope="module")
def inception(inception_file):
    return load_inception(inception_file)


def test_legacy_features_equal_pytorch_fid(inception, reference, images, tmp_path):
    from p2ptools.imageio import write_image
    from p2ptools.metrics.inception import features_of_files

    net, info = inception
    batch = images(2)
    paths = [tmp_path / f"{i}.png" for i in range(2)]
    for path, image in zip(paths, batch, strict=True):
        write_image(path, image)
    ours = features_of_files(paths, FeatureExtractor(net, "legacy"), batch_size=1)  # decoded in threads, two batches
    with torch.no_grad():  # pytorch-fid's pipeline: ToTensor, then the network resizes
        x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float().div(255) for im in batch])
        theirs = reference[0](x)[0].squeeze(3).squeeze(2).numpy()
    assert ours.shape == (2, 2048) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1e-5
    assert ours.std() > 1e-3  # not a degenerate network
    assert len(info["sha256"]) == 64 and info["matches_published"] is False


def test_clean_features_equal_pytorch_fid_on_clean_fid_resize(inception, reference, images):
    net, _ = inception
    batch = images(1, size=(64, 80), seed=1)
    ours = FeatureExtractor(net, "clean")(batch)
    from PIL import Image

    def cleanfid_resize(image):  # clean-fid's make_resizer("PIL", False, "bicubic", (299, 299))
        planes = [np.asarray(Image.fromarray(image[:, :, c].astype(np.float32), mode="F").resize((299, 299), resample=Image.BICUBIC)).clip(0, 255) for c in range(3)]
        return np.stack(planes, axis=2).astype(np.float32)

    with torch.no_grad():
        x = torch.stack([torch.from_numpy(cleanfid_resize(im)).permute(2, 0, 1) / 255 for im in batch])
        theirs = reference[1](x)[0].flatten(1).numpy()
    assert np.abs(ours - theirs).max() <= 1e-5
    legacy = FeatureExtractor(net, "legacy")(batch)
    assert np.abs(ours - legacy).max() > 1e-3  # the protocols differ, and it shows


def test_clean_resize_is_antialiased_bicubic_on_floats():
    flat = np.full((600, 600, 3), 100, np.uint8)
    assert np.allclose(clean_resize(flat), 100.0)
    stripes = np.zeros((598, 598), np.uint8)
    stripes[:, ::2] = 255  # a 1-pixel grating: antialiasing averages it, point sampling does not
    out = clean_resize(stripes)
    assert out.shape == (299, 299, 3) and out.dtype == np.float32
    assert np.abs(out[10:-10, 10:-10] - 127.5).max() < 2
    assert not np.allclose(out, np.round(out))  # floats, not requantised


@pytest.mark.parametrize("protocol", ["clean", "legacy"])
def test_gray_images_are_rgb_replicas(images, protocol):
    from p2ptools.metrics.resize import to_unit_batch

    gray = images(1)[0][:, :, 0]
    a, b = to_unit_batch([gray], protocol), to_unit_batch([np.repeat(gray[:, :, None], 3, axis=2)], protocol)
    a, b = (torch.cat(a), torch.cat(b)) if protocol == "legacy" else (a, b)
    assert a.shape[1] == 3 and torch.equal(a, b)


def test_weight_file_errors(tmp_path, inception_file):
    with pytest.raises(ConfigError, match="--inception-weights pt_inception-2015-12-05-6726825d.pth.*github.com/mseitzer"):
        load_inception(None)
    with pytest.raises(InputFileError, match="no such weights file"):
        load_inception(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pth: not a torch weights file"):
        load_inception(tmp_path / "junk.pth")
    state = torch.load(inception_file, weights_only=True)
    state["fc.weight"] = state["fc.weight"][:1000]  # torchvision's 1000-class Inception
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(CheckpointError, match=r"tv.pth: not pytorch-fid Inception weights.*fc.weight \(1000, 2048\)"):
        load_inception(tmp_path / "tv.pth")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="missing key"):
        load_inception(tmp_path / "other.pth")
