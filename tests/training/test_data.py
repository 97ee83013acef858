"""Training data: jitter on uint8, directions, gray modes, worker-independent order, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from p2p_testutils import target_of  # noqa: E402

from p2ptools.errors import InputFileError  # noqa: E402
from p2ptools.imageio import encode_image, read_image  # noqa: E402
from p2ptools.training.data import AlignedPairs, Jitter, ResumableSampler, check_batch, check_pair_headers, make_loader, power_of_two_size, resize, scale_width_size, split_files, to_network_range, to_uint8  # noqa: E402


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["crop", "resize_and_crop"])
def test_jitter_applies_the_same_geometry_to_both_halves(mode):
    a = textured(40, 40)
    flips = 0
    for seed in range(20):
        ja, jb = Jitter(mode, load_size=44, crop_size=32).apply(a, target_of(a), np.random.default_rng(seed))
        assert ja.shape == jb.shape == (32, 32, 3) and ja.dtype == np.uint8
        if mode == "crop":  # no resampling: the crop of B is exactly f(crop of A)
            assert np.array_equal(jb, target_of(ja))
            # and it is a crop of A, possibly mirrored
            found = [(y, x) for y in range(9) for x in range(9) if np.array_equal(ja, a[y:y + 32, x:x + 32])]
            flips += not found
            if not found:
                assert any(np.array_equal(ja[:, ::-1], a[y:y + 32, x:x + 32]) for y in range(9) for x in range(9))
    if mode == "crop":
        assert 3 <= flips <= 17  # about half


def test_eval_jitter_is_deterministic_and_sees_the_whole_image():
    a = textured(40, 40)
    out = Jitter("resize_and_crop", 44, 32, train=False).apply(a, a, np.random.default_rng(1))[0]
    assert np.array_equal(out, resize(a, 32, 32))
    centre = Jitter("crop", 44, 32, train=False).apply(a, a, np.random.default_rng(2))[0]
    assert np.array_equal(centre, a[4:36, 4:36])


def test_scale_width_and_none_sizes():
    assert scale_width_size(512, 256, 286, 256) == (286, 256)  # height kept >= crop
    assert scale_width_size(200, 400, 100, 64) == (100, 200)
    assert power_of_two_size(255, 131) == (256, 132)
    out = Jitter("scale_width", 100, 64, flip=False).apply(textured(40, 20), textured(40, 20, 1), np.random.default_rng(0))[0]
    assert out.shape == (200, 100, 3)


def test_resize_antialiases_when_shrinking():
    stripes = np.zeros((8, 16), np.uint8)
    stripes[:, ::2] = 255
    small = resize(stripes, 8, 8)
    # averaged, not aliased (PIL's bicubic, the default's model, leaves its edge overshoot at the
    # border columns, where the support reaches past the image)
    assert np.abs(small[:, 2:-2].astype(int) - 128).max() <= 1
    assert np.abs(resize(stripes, 8, 8, "opencv").astype(int) - 128).max() <= 1  # area averaging
    assert np.array_equal(resize(stripes, 16, 8), stripes)
    with pytest.raises(ValueError, match="uint8"):
        resize(stripes.astype(np.float32), 4, 4)


def write_raw(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, "png"))
    return path


def test_direction_and_gray_modes(tmp_path):
    a, b = textured(32, 32, 1), textured(32, 32, 2)
    path = write_raw(tmp_path / "p.png", np.concatenate([a, b], axis=1))
    jitter = Jitter("none", flip=False)
    item = AlignedPairs([path], jitter)[0]
    assert torch.equal(item["A"], torch.from_numpy(a).permute(2, 0, 1)) and torch.equal(item["B"], torch.from_numpy(b).permute(2, 0, 1))
    swapped = AlignedPairs([path], jitter, direction="BtoA")[0]
    assert torch.equal(swapped["A"], item["B"]) and torch.equal(swapped["B"], item["A"])
    gray = AlignedPairs([path], jitter, input_nc=1)[0]
    assert gray["A"].shape == (1, 32, 32) and gray["B"].shape == (3, 32, 32)
    expected = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114  # ITU-R 601 luma
    assert np.abs(gray["A"][0].numpy() - expected).max() <= 1.0
    assert AlignedPairs([path], jitter, output_nc=1)[0]["B"].shape == (1, 32, 32)


def test_gray_input_is_converted_before_the_resize(tmp_path):
    """As the reference's transforms (Grayscale, then Resize): on a photo-like pair resized with
    PIL, the gray input equals PIL's convert("L") then resize exactly (resizing the colour image
    first and mixing the channels after differs at colour edges)."""
    from PIL import Image
    from p2ptools_datasets.synthetic import render_scene

    a = render_scene(np.random.default_rng(3), 64)[0]
    b = render_scene(np.random.default_rng(4), 64)[0]
    path = write_raw(tmp_path / "p.png", np.concatenate([a, b], axis=1))
    jitter = Jitter("resize_and_crop", load_size=40, crop_size=40, flip=False, train=False, resize_backend="pil")
    item = AlignedPairs([path], jitter, input_nc=1, output_nc=1)[0]
    for side, image in (("A", a), ("B", b)):
        expected = np.asarray(Image.fromarray(image).convert("L").resize((40, 40), Image.BICUBIC))
        assert np.array_equal(item[side][0].numpy(), expected), side


def test_value_ranges():
    x = torch.tensor([0, 127, 255], dtype=torch.uint8)
    assert torch.allclose(to_network_range(x), torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]))
    assert torch.equal(to_uint8(to_network_range(torch.arange(256, dtype=torch.uint8))), torch.arange(256, dtype=torch.uint8))


def batches(loader) -> list[torch.Tensor]:
    return [torch.cat([b["A"].flatten(), b["B"].flatten(), b["index"]]) for b in map(check_batch, loader)]


def test_batches_do_not_depend_on_workers_and_resume_mid_epoch(tiny_data):
    dataset = AlignedPairs(split_files(tiny_data, "train"), Jitter("resize_and_crop", 36, 32), seed=3)
    runs = []
    for workers in (0, 2):
        sampler = ResumableSampler(dataset, seed=3)
        loader = make_loader(dataset, batch_size=2, workers=workers, sampler=sampler, pin_memory=False)
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            epochs.append(batches(loader))
        runs.append(epochs)
    assert all(torch.equal(x, y) for e0, e1 in zip(*runs, strict=True) for x, y in zip(e0, e1, strict=True))
    assert not torch.equal(runs[0][0][0], runs[0][1][0])  # another epoch, another order / jitter
    # resuming after 2 batches of epoch 1 yields the rest of that epoch, identical
    sampler = ResumableSampler(dataset, seed=3)
    sampler.set_epoch(1)
    sampler.set_start(4)
    rest = batches(make_loader(dataset, batch_size=2, workers=0, sampler=sampler, pin_memory=False))
    assert len(rest) == 2 and all(torch.equal(x, y) for x, y in zip(rest, runs[0][1][2:], strict=True))


def test_distributed_shards_partition_the_permutation(tiny_data):
    dataset = AlignedPairs(split_files(tiny_data, "train"), Jitter("none"))
    whole = ResumableSampler(dataset, seed=5)
    shards = [ResumableSampler(dataset, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    for s in (whole, *shards):
        s.set_epoch(4)
    order = [i for _, i in whole]
    assert sorted(order) == list(range(8))
    assert [i for _, i in shards[0]] == order[0::2] and [i for _, i in shards[1]] == order[1::2]
    assert {e for e, _ in whole} == {4}


def test_bad_files_give_one_clear_error(tmp_path):
    odd = write_raw(tmp_path / "train" / "odd.png", textured(8, 9))
    truncated = tmp_path / "train" / "cut.png"
    truncated.write_bytes(encode_image(textured(8, 16), "png")[:-20])
    small = write_raw(tmp_path / "train" / "small.png", textured(8, 16))
    for path, problem in ((odd, "odd width 9"), (truncated, "truncated PNG"), (small, "smaller than crop_size 32")):
        dataset = AlignedPairs([path], Jitter("crop", 36, 32))
        loader = make_loader(dataset, batch_size=1, workers=0, sampler=None, pin_memory=False)
        with pytest.raises(InputFileError, match=problem) as info:
            batches(loader)
        assert info.value.path == str(path) and "\n" not in str(info.value)
    # the same from a worker process (errors travel as data, not as a wrapped traceback)
    loader = make_loader(AlignedPairs([odd], Jitter("crop", 36, 32)), batch_size=1, workers=1, sampler=None, pin_memory=False)
    with pytest.raises(InputFileError, match="odd width 9"):
        batches(loader)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no image pairs"):
        split_files(tmp_path, "empty")
    with pytest.raises(InputFileError, match="no such split"):
        split_files(tmp_path, "val")


def test_decoded_pairs_match_the_files(tiny_data):
    path = split_files(tiny_data, "val")[0]
    item = AlignedPairs([path], Jitter("none", flip=False))[0]
    image = read_image(path)
    assert torch.equal(item["A"], torch.from_numpy(image[:, :32]).permute(2, 0, 1))
    assert cv2.imread(str(path)) is not None


def test_workers_start_after_the_parent_used_opencvs_thread_pool(tmp_path):
    """A session that ran OpenCV on its thread pool (a notebook, this test suite) and then trains with
    worker processes: the forked workers used to hang on their first cv2.setNumThreads."""
    import subprocess
    import sys
    import textwrap

    from p2p_testutils import make_dataset

    data = make_dataset(tmp_path / "data", train=2, val=0, size=16)
    script = textwrap.dedent(f"""
        import cv2, numpy as np
        from p2ptools.training.data import AlignedPairs, Jitter, make_loader, split_files
        big = np.zeros((2000, 2000, 3), np.uint8)
        cv2.resize(big, (3000, 3000)); cv2.GaussianBlur(big, (5, 5), 1)  # OpenCV's pool is live now
        threads = cv2.getNumThreads()
        dataset = AlignedPairs(split_files({str(data)!r}, "train"), Jitter("none", train=False))
        batches = list(make_loader(dataset, batch_size=2, workers=1, sampler=None, pin_memory=False))
        assert batches[0]["A"].shape == (2, 3, 16, 16), batches[0]["A"].shape
        assert cv2.getNumThreads() == threads  # the parent's own setting is back
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_single_images_without_a_manifest_are_refused_with_the_combine_command(tmp_path):
    """A folder of single 64x64 images is not a dataset of pairs: refused before training cuts each
    into two 32-px "halves"; with a builder's manifest, halves of another aspect are fine."""
    single = write_raw(tmp_path / "photos" / "train" / "a.png", textured(64, 64))
    with pytest.raises(InputFileError, match=r"64x64 is not twice as wide as high and its halves do not look aligned.*make-dataset combine") as info:
        check_pair_headers([single], Jitter("none"))
    assert info.value.path == str(single) and "\n" not in str(info.value)
    pairs = write_raw(tmp_path / "pairs" / "train" / "p.png", textured(16, 32))  # combine_A_and_B.py's square halves
    check_pair_headers([pairs], Jitter("none"))
    kept = write_raw(tmp_path / "built" / "train" / "k.png", textured(16, 64))  # --aspect keep: halves of 32x16
    (tmp_path / "built" / "manifest.json").write_text("{}")
    check_pair_headers([kept], Jitter("none"))
    # no manifest, halves of 32x16 that show one scene (a label map and its photo): a pair
    labels = np.zeros((16, 32), np.uint8)
    labels[4:12, 6:20] = 1
    labels[2:6, 24:30] = 2
    photo = np.stack([labels * 90 + 20, labels * 40 + 60, 200 - labels * 70], axis=2).astype(np.uint8)
    aligned = write_raw(tmp_path / "hd" / "train" / "h.png", np.concatenate([photo, np.repeat(labels[..., None] * 100, 3, 2)], 1))
    check_pair_headers([aligned], Jitter("none"))


def test_halves_look_aligned_tells_pairs_from_parts_of_one_image():
    from p2ptools.training.data import halves_look_aligned

    rng = np.random.default_rng(1)
    scene = cv2.resize(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8), (64, 32), interpolation=cv2.INTER_NEAREST)
    assert halves_look_aligned(scene, 255 - scene)  # the same edges, other colours
    assert not halves_look_aligned(scene[:, :32], scene[:, 32:])  # the left and right parts of one picture
    assert halves_look_aligned(np.zeros((8, 8, 3), np.uint8), scene[:8, :8])  # no edges: cannot tell, not refused


def test_train_on_single_images_stops_before_writing(tmp_path):
    from p2p_testutils import run_p2ptools

    for split in ("train", "val"):
        for i in range(2):
            write_raw(tmp_path / "photos" / split / f"{i}.png", textured(64, 64, seed=i))
    run = tmp_path / "run"
    res = run_p2ptools("train", "--model", "pix2pix", "--data", tmp_path / "photos", "--out", run, "--netG", "unet_32",
                       "--load-size", "32", "--crop-size", "32", "--workers", "0", "--device", "cpu", "--no-progress")
    assert res.code == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "0.png: 64x64 is not twice as wide as high" in res.stderr and "p2ptools make-dataset combine" in res.stderr
    assert not run.exists()
