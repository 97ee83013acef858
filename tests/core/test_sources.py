import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from p2ptools.buildkit.sources import MultiSource, open_source, open_sources, safe_extract
from p2ptools.errors import InputFileError

FILES = {"a/x.txt": b"hello", "a/b/y.bin": bytes(range(256)), "top.txt": b"t"}


def _folder(root: Path) -> Path:
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, mode: str) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in FILES.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["folder", "zip", "tar", "tgz"])
def test_every_source_kind_reads_the_same(tmp_path: Path, kind: str, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    path = {
        "folder": lambda: _folder(tmp_path / "f"),
        "zip": lambda: _zip(tmp_path / "s.zip"),
        "tar": lambda: _tar(tmp_path / "s.tar", "w"),
        "tgz": lambda: _tar(tmp_path / "s.tar.gz", "w:gz"),
    }[kind]()
    tree = open_source(path)
    assert tree.names() == sorted(FILES)
    for name, data in FILES.items():
        assert tree.read_bytes(name) == data
    with pytest.raises(InputFileError, match="missing.txt"):
        tree.read_bytes("missing.txt")
    import pickle

    assert pickle.loads(pickle.dumps(tree)).read_bytes("top.txt") == b"t"


def test_tgz_is_extracted_once(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    archive = _tar(tmp_path / "s.tgz", "w:gz")
    first = open_source(archive).path
    assert (first / "a/x.txt").read_bytes() == b"hello"
    marker = first / "a/x.txt"
    os.utime(marker, (1, 1))
    assert open_source(archive).path == first and marker.stat().st_mtime == 1


def test_multisource_and_errors(tmp_path: Path):
    one = _zip(tmp_path / "one.zip")
    other = tmp_path / "o"
    (other / "extra").mkdir(parents=True)
    (other / "extra/z.txt").write_bytes(b"z")
    tree = open_sources([one, other])
    assert isinstance(tree, MultiSource) and tree.read_bytes("extra/z.txt") == b"z" and tree.read_bytes("a/x.txt") == b"hello"
    assert tree.display("extra/z.txt").endswith("o/extra/z.txt")
    with pytest.raises(InputFileError, match="no such file or folder"):
        open_source(tmp_path / "absent.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match="bad.zip: not a zip archive"):
        open_source(tmp_path / "bad.zip").names()
    (tmp_path / "x.rar").write_bytes(b"")
    with pytest.raises(InputFileError, match="not a folder or a supported archive"):
        open_source(tmp_path / "x.rar")


def _evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 1
        tf.addfile(ok, io.BytesIO(b"f"))
        if member.isfile():
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
        else:
            tf.addfile(member)
    return path


def test_safe_extract_refuses_escapes(tmp_path: Path):
    dotdot = tarfile.TarInfo("../evil.txt")
    with pytest.raises(InputFileError, match=r"refusing to extract '../evil.txt': path with '..'"):
        safe_extract(_evil_tar(tmp_path / "a.tar", dotdot), tmp_path / "t1")
    absolute = tarfile.TarInfo("/tmp/evil.txt")
    with pytest.raises(InputFileError, match="absolute path"):
        safe_extract(_evil_tar(tmp_path / "b.tar", absolute), tmp_path / "t2")
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
    with pytest.raises(InputFileError, match="link leaves the target"):
        safe_extract(_evil_tar(tmp_path / "c.tar", link), tmp_path / "t3")
    # nothing was written for any refused archive
    for t in ("t1", "t2", "t3"):
        assert list((tmp_path / t).iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()
    inner = tarfile.TarInfo("ok_link")
    inner.type, inner.linkname = tarfile.SYMTYPE, "fine.txt"
    assert "fine.txt" in safe_extract(_evil_tar(tmp_path / "d.tar", inner), tmp_path / "t4")
    with zipfile.ZipFile(tmp_path / "e.zip", "w") as zf:
        zf.writestr("../up.txt", b"x")
    with pytest.raises(InputFileError, match="e.zip: refusing to extract '../up.txt'"):
        safe_extract(tmp_path / "e.zip", tmp_path / "t5")


_INHERITED = {}


def test_zip_handle_is_reopened_in_a_forked_child(tmp_path: Path):
    """Forked workers inherit the tree (not pickled) and must not share the parent's file position."""
    import multiprocessing

    tree = open_source(_zip(tmp_path / "s.zip"))
    assert tree.read_bytes("top.txt") == b"t"  # the parent opens its handle
    _INHERITED["tree"], _INHERITED["parent"] = tree, id(tree._zip())
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_reads_inherited_tree, args=(queue,))
    child.start()
    result = queue.get(timeout=30)
    child.join(timeout=30)
    assert result == (True, False), "the child must read correctly with its own handle"
    _INHERITED.clear()


def _child_reads_inherited_tree(queue) -> None:
    tree = _INHERITED["tree"]
    ok = tree.read_bytes("a/b/y.bin") == bytes(range(256))
    queue.put((ok, id(tree._zip()) == _INHERITED["parent"]))
