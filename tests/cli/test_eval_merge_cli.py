"""``p2ptools eval merge``: the merged report equals the unsharded one, samples and pages included,
and every part is untrusted input: each tampered part (edited count, NaN, a path outside --out,
truncated / reshaped / pickled / wrongly typed arrays, missing or unknown keys, shards twice,
missing or of another N) is one line naming the part's file and the field, exit code 1, and no
--out. The Inception network and LPIPS are cheap stand-ins (their own tests: tests/metrics)."""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from p2ptools.imageio import read_image

_spec = importlib.util.spec_from_file_location("_p2p_fidelity_helpers_merge", Path(__file__).resolve().parents[1] / "eval" / "test_fidelity.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
TinyExtractor, make_set, mean_difference = _helpers.TinyExtractor, _helpers.make_set, _helpers.mean_difference

N_IMAGES, SAMPLES = 6, 4
WEIGHT = {"path": "w", "sha256": "1" * 64, "published_name": "pt_inception-2015-12-05-6726825d.pth", "matches_published": False}
LPIPS_INFO = {"net": "alex", "version": "0.1", "backbone": {**WEIGHT, "published_name": "alexnet-owt-7be5be79.pth"}, "linear_layers": {"path": "lin", "sha256": "2" * 64}}


def _stand_ins(mp: pytest.MonkeyPatch) -> None:
    from p2ptools.metrics import inception, lpips

    mp.setattr(inception, "load_inception", lambda path: (None, {**WEIGHT, "path": str(path)}))
    mp.setattr(inception, "FeatureExtractor", lambda net, protocol, device: TinyExtractor())
    mp.setattr(lpips, "load_lpips", lambda net, path, device: (None, LPIPS_INFO))
    mp.setattr(lpips, "LPIPSScorer", lambda model, device, min_size: mean_difference)


def _main(*args) -> int:
    from p2ptools.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """An unsharded report of 6 results, their shards 0/2 and 1/2, and a shard 1/3 (read-only)."""
    root = tmp_path_factory.mktemp("merge")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("P2PTOOLS_CACHE", str(root / "cache"))
        _stand_ins(mp)
        res = make_set(root / "res", n=N_IMAGES, size=(16, 16))
        (root / "w.pth").write_bytes(b"stand-in")
        args = ["--results", res, "--color", "--fid", "--kid", "--lpips", "--inception-weights", root / "w.pth", "--lpips-backbone-weights", root / "w.pth",
                "--kid-subsets", "3", "--kid-subset-size", "3", "--samples", SAMPLES, "--no-progress"]
        assert _main("eval", *args, "--out", root / "single") == 0
        for shard in ("0/2", "1/2", "1/3"):
            assert _main("eval", *args, "--shard", shard, "--out", root / f"part{shard.replace('/', 'of')}") == 0
    return root


@pytest.fixture
def parts(made, tmp_path):
    """Fresh copies of the two shards (tampered with by each test), and where to merge them."""
    p0, p1 = tmp_path / "parts" / "p0", tmp_path / "parts" / "p1"
    shutil.copytree(made / "part0of2", p0)
    shutil.copytree(made / "part1of2", p1)
    return p0, p1, tmp_path / "deep" / "er" / "merged"


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12)
    return type(a) is type(b) and a == b


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_merged_report_equals_the_unsharded_one_samples_and_pages_included(cli, made, parts, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(made / "cache"))
    p0, p1, out = parts
    r = cli("eval", "merge", p1, p0, "--out", out)
    assert r.code == 0, r.stderr
    single, merged = _files(made / "single"), _files(out)
    # the one documented difference: KID's feature files are named after the shares that wrote them
    assert [k for k in single if k.startswith("features/")] == ["features/results.rank0-of-1.npy", "features/truth.rank0-of-1.npy"]
    assert [k for k in merged if k.startswith("features/")] == [f"features/{w}.shard{i}-of-2.npy" for w in ("results", "truth") for i in (0, 1)]
    assert [k for k in single if not k.startswith("features/")] == [k for k in merged if not k.startswith("features/")]
    assert len([k for k in single if k.startswith("samples/") and k.endswith("_output.png")]) == SAMPLES
    for name in single:
        if name.startswith(("samples/", "worst/")):  # the sample and worst-LPIPS images, pixel for pixel
            np.testing.assert_array_equal(read_image(merged[name]), read_image(single[name]), err_msg=name)
    for name in ("report.html", "report.md", "lpips_per_image.csv"):  # the pages as a person reads them
        assert merged[name].read_text() == single[name].read_text(), name
    a, b = json.loads(single["report.json"].read_text()), json.loads(merged["report.json"].read_text())
    assert a["kid"].pop("features") == {"results": ["results.rank0-of-1.npy"], "truth": ["truth.rank0-of-1.npy"]}
    assert b["kid"].pop("features") == {w: [f"{w}.shard0-of-2.npy", f"{w}.shard1-of-2.npy"] for w in ("results", "truth")}
    assert b["fid"].pop("value") == pytest.approx(a["fid"].pop("value"), rel=1e-6)  # float sums in another order
    assert _close(b, a), (b, a)  # the rest: equal, floats to 1e-12 (LPIPS and image-metric sums added in another order)
    sample_names = [line.split("<td>")[1].split("</td>")[0] for line in merged["report.html"].read_text().split("id='samples'")[1].split("</table>")[0].splitlines() if line.startswith("<tr><td>")]
    assert sample_names == [f"img{i}" for i in range(SAMPLES)]  # from both shards, in the results' order


# --------------------------------------------------------------------------- hostile parts


def _edit_json(part: Path, edit) -> None:
    meta = json.loads((part / "partial.json").read_text())
    edit(meta)
    (part / "partial.json").write_text(json.dumps(meta))


def _edit_state(part: Path, edit) -> None:
    with np.load(part / "state.npz") as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    np.savez(part / "state.npz", **arrays)


def _feature(part: Path, what: str = "results") -> Path:
    return next((part / "features").glob(f"{what}.*.npy"))


def _nan_features(part: Path) -> None:
    feats = np.load(_feature(part))
    feats[1, 3] = np.nan
    np.save(_feature(part), feats)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])


def _reshape_features(part: Path) -> None:
    feats = np.load(_feature(part))
    np.save(_feature(part), feats.reshape(feats.shape[0] * 2, -1))


class _Payload:
    """Unpickling this writes a file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle ran"))


def _pickled_features(part: Path) -> None:
    array = np.empty(3, object)
    array[:] = [_Payload(part.parent / "PWNED"), 1, 2]
    with open(_feature(part), "wb") as fh:
        np.lib.format.write_array(fh, array, allow_pickle=True)


def _pickled_state(part: Path) -> None:
    with zipfile.ZipFile(part / "state.npz", "a") as z, z.open("evil.npy", "w") as fh:
        array = np.empty(1, object)
        array[0] = _Payload(part.parent / "PWNED")
        np.lib.format.write_array(fh, array, allow_pickle=True)


def _link_out(path: Path) -> None:
    """Replace a part's file by a link to a copy of it outside the part."""
    outside = path.parents[2] / "outside.png"
    shutil.copyfile(path, outside)
    path.unlink()
    path.symlink_to(outside)


def _traversal(part: Path) -> None:
    """A feature name that leaves the part (to a copy of its file, so that it exists) and --out."""
    shutil.copyfile(_feature(part), part.parent.parent / "x.npy")
    _edit_json(part, lambda meta: meta["objects"]["parts"]["results"][0].__setitem__(0, "../../../x.npy"))


def _set(path: str, value):
    def edit(meta: dict) -> None:
        *keys, last = path.split(".")
        node = meta
        for key in keys:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return edit


def _drop(path: str):
    def edit(meta: dict) -> None:
        *keys, last = path.split(".")
        node = meta
        for key in keys:
            node = node[key]
        del node[last]

    return edit


CASES = {
    # name: (tamper with part 0, the file named in the message, the field named in it)
    "edited count": (lambda p: _edit_state(p, lambda a: a.__setitem__("n", np.array([1002], np.int64))), "state.npz", "n"),
    "edited count in the json": (lambda p: _edit_json(p, lambda m: m["objects"]["sizes"]["results"].__setitem__("16x16", 1002)), "partial.json", "objects.sizes.results"),
    "NaN features": (_nan_features, "features/results.shard0-of-2.npy", "NaN"),
    "NaN in the state": (lambda p: _edit_state(p, lambda a: a["fid_out.sum"].__setitem__(0, np.nan)), "state.npz", "fid_out.sum"),
    "path traversal in a feature name": (_traversal, "partial.json", "objects.parts.results[0][0]"),
    "path traversal in a sample name": (lambda p: _edit_json(p, _set("samples.0.output", "../../../../secret.png")), "partial.json", "samples[0].output"),
    "absolute sample name": (lambda p: _edit_json(p, _set("samples.0.output", "/etc/passwd")), "partial.json", "samples[0].output"),
    "truncated features": (lambda p: _truncate(_feature(p)), "features/results.shard0-of-2.npy", "truncated"),
    "truncated state": (lambda p: _truncate(p / "state.npz"), "state.npz", "zip"),
    "deeply nested json": (lambda p: (p / "partial.json").write_text("[" * 100_000 + "]" * 100_000), "partial.json", "nested too deeply"),
    "json of another shape": (lambda p: (p / "partial.json").write_text("[1, 2]"), "partial.json", "(top level)"),
    "truncated json": (lambda p: _truncate(p / "partial.json"), "partial.json", "JSON"),
    "reshaped features": (_reshape_features, "features/results.shard0-of-2.npy", "shape"),
    "reshaped state": (lambda p: _edit_state(p, lambda a: a.__setitem__("fid_out.outer", a["fid_out.outer"].reshape(-1))), "state.npz", "fid_out.outer"),
    "object-array features": (_pickled_features, "features/results.shard0-of-2.npy", "object"),
    "object array in the state": (_pickled_state, "state.npz", "evil"),
    "wrong dtype in the state": (lambda p: _edit_state(p, lambda a: a.__setitem__("n", a["n"].astype(np.float64))), "state.npz", "n"),
    "wrong dtype of the features": (lambda p: np.save(_feature(p), np.load(_feature(p)).astype(np.float64)), "features/results.shard0-of-2.npy", "float64"),
    "wrong type in the json": (lambda p: _edit_json(p, _set("context.fidelity.kid_subsets", "3")), "partial.json", "context.fidelity.kid_subsets"),
    "wrong shard type": (lambda p: _edit_json(p, _set("shard", "0/2")), "partial.json", "shard"),
    "missing key in the json": (lambda p: _edit_json(p, _drop("context.bins")), "partial.json", "context.bins"),
    "missing key in the state": (lambda p: _edit_state(p, lambda a: a.pop("lpips.sum")), "state.npz", "lpips.sum"),
    "unknown key in the json": (lambda p: _edit_json(p, _set("context.extra", 1)), "partial.json", "context.extra"),
    "unknown key at the top": (lambda p: _edit_json(p, _set("run_this", "rm -rf /")), "partial.json", "run_this"),
    "unknown key in the state": (lambda p: _edit_state(p, lambda a: a.__setitem__("extra", np.zeros(1))), "state.npz", "extra"),
    "feature file missing": (lambda p: _feature(p).unlink(), "features/results.shard0-of-2.npy", "missing"),
    "sample image missing": (lambda p: (p / "images" / "sample000_output.png").unlink(), "images/sample000_output.png", "samples[0].output"),
    "sample image linked out of the part": (lambda p: _link_out(p / "images" / "sample000_output.png"), "images/sample000_output.png", "samples[0].output"),
    "sample of another position": (lambda p: _edit_json(p, _set("samples.1.position", 3)), "partial.json", "samples"),
    "edited gallery value": (lambda p: _edit_json(p, _set("gallery.0.value", 0.5)), "partial.json", "gallery"),
    "feature name of another shard": (lambda p: _edit_json(p, lambda m: m["objects"]["parts"]["results"][0].__setitem__(0, "results.shard1-of-2.npy")), "partial.json", "objects.parts.results[0][0]"),
    "older format": (lambda p: _edit_json(p, _set("format", "p2ptools-eval-partial/1")), "partial.json", "format"),
    "other settings": (lambda p: _edit_json(p, _set("context.fidelity.kid_seed", 7)), "partial.json", "context.fidelity.kid_seed"),
}


def _check_refused(r, part: Path, file: str, field: str, out: Path) -> None:
    assert r.code == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "internal error" not in r.stderr and str(part / file) in r.stderr and field in r.stderr, r.stderr
    assert not out.exists() and not [p for p in out.parent.parent.rglob("*") if p.name not in ("er",)], "something was written"
    assert not (part.parent / "PWNED").exists(), "a pickle ran"


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_part_is_one_line_and_no_report(cli, parts, case):
    p0, p1, out = parts
    tamper, file, field = CASES[case]
    tamper(p0)
    out.parent.mkdir(parents=True)
    r = cli("eval", "merge", p0, p1, "--out", out)
    _check_refused(r, p0, file, field, out)
    assert not (out.parent.parent / "x.npy").exists() and not (out.parent / "x.npy").exists()


def test_shards_twice_missing_or_of_another_count(cli, made, parts):
    p0, p1, out = parts
    out.parent.mkdir(parents=True)
    twin = p0.parent / "p0-copy"
    shutil.copytree(p0, twin)
    r = cli("eval", "merge", p0, twin, p1, "--out", out)
    _check_refused(r, twin, "partial.json", "shard", out)
    assert "0/2" in r.stderr and str(p0) in r.stderr  # both holders of the shard are named
    r = cli("eval", "merge", p0, "--out", out)
    _check_refused(r, p0, "", "shard", out)
    assert "1/2 is missing" in r.stderr
    r = cli("eval", "merge", p0, made / "part1of3", "--out", out)
    _check_refused(r, made / "part1of3", "partial.json", "shard", out)
    assert "of 3" in r.stderr and "of 2" in r.stderr
