"""Resumable downloads and --download/--prebuilt, against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest
from p2p_testutils import HttpServer as Server
from p2p_testutils import jpeg_bytes, tar_gz
from p2ptools_datasets.facades import FacadesBuilder
from PIL import Image

from p2ptools.buildkit import safe_extract
from p2ptools.download import RemoteFile, download_file, fetch_prebuilt
from p2ptools.errors import DownloadError, InputFileError
from p2ptools.pairs import load_manifest, read_pair, verify_dataset


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_verified(server, tmp_path):
    server.files["/data/a.bin"] = PAYLOAD
    remote = RemoteFile("http://unused.invalid/data", "a.bin", len(PAYLOAD), SHA)
    path = download_file(remote, tmp_path, base_url=server.url + "/data", progress=False)
    assert path == tmp_path / "a.bin" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()
    assert server.ranges == [None]
    download_file(remote, tmp_path, base_url=server.url + "/data", progress=False)  # reused, no request
    assert len(server.ranges) == 1


def test_resume_from_part_with_range(server, tmp_path, monkeypatch):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:123_457])
    monkeypatch.setenv("P2PTOOLS_DOWNLOAD_BASE_URL", server.url)
    path = download_file(RemoteFile("http://unused.invalid", "a.bin", len(PAYLOAD), SHA), tmp_path, progress=False)
    assert server.ranges == ["bytes=123457-"]
    assert path.read_bytes() == PAYLOAD


def test_connection_lost_then_resumed(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.cut_after = 100_000
    remote = RemoteFile(server.url, "a.bin", len(PAYLOAD), SHA)
    with pytest.raises(DownloadError, match=r"/a\.bin: .*rerun to resume"):
        download_file(remote, tmp_path, progress=False)
    assert (tmp_path / "a.bin.part").stat().st_size == 100_000 and not (tmp_path / "a.bin").exists()
    assert download_file(remote, tmp_path, progress=False).read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=100000-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "a.bin.part").write_bytes(b"garbage-prefix")
    path = download_file(RemoteFile(server.url, "a.bin", None, SHA), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_sha256_and_size_mismatch_and_404(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match=r"/a\.bin -> .*a\.bin\.part: sha256 [0-9a-f]{64}, expected 0{64}"):
        download_file(RemoteFile(server.url, "a.bin", None, "0" * 64), tmp_path, progress=False)
    assert not (tmp_path / "a.bin.part").exists() and not (tmp_path / "a.bin").exists()
    with pytest.raises(DownloadError, match=f"size {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        download_file(RemoteFile(server.url, "a.bin", len(PAYLOAD) + 1), tmp_path, progress=False)
    with pytest.raises(DownloadError, match=r"/missing\.zip: HTTP 404"):
        download_file(RemoteFile(server.url, "missing.zip"), tmp_path, progress=False)


_tar, _jpg = tar_gz, jpeg_bytes


def test_extraction_refuses_dotdot_and_escaping_symlink(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(_tar([(tarfile.TarInfo("facades/train/1.jpg"), _jpg(1)), (tarfile.TarInfo("../evil"), b"x")]))
    with pytest.raises(InputFileError, match=r"refusing to extract '\.\./evil'"):
        safe_extract(evil, tmp_path / "t1")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "t1" / "facades").exists()
    link = tarfile.TarInfo("facades/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
    sym = tmp_path / "sym.tar.gz"
    sym.write_bytes(_tar([(link, None)]))
    with pytest.raises(InputFileError, match="link leaves the target"):
        safe_extract(sym, tmp_path / "t2")
    assert not (tmp_path / "t2" / "facades").exists()


def test_prebuilt_fetch_extracts_and_writes_manifest(server, tmp_path):
    members = [(tarfile.TarInfo(f"facades/{s}/{i}.jpg"), _jpg(i)) for s, n in (("train", 3), ("val", 1), ("test", 2)) for i in range(1, n + 1)]
    server.files["/facades.tar.gz"] = _tar(members)
    out = tmp_path / "facades"
    counts = fetch_prebuilt(FacadesBuilder, out, tmp_path / "dl", base_url=server.url, progress=False)
    assert counts == {"train": 3, "val": 1, "test": 2}
    assert (tmp_path / "dl" / "facades.tar.gz").exists()
    a, b = read_pair(out / "train/2.jpg")
    assert a.shape == (8, 8, 3) and abs(int(a.mean()) - 80) <= 2
    manifest = load_manifest(out)
    assert manifest.image_size == [8, 8] and manifest.pairs[0].sources == ["facades.tar.gz:facades/train/1.jpg"]
    assert verify_dataset(out).ok
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_prebuilt_refuses_an_archive_with_dotdot(server, tmp_path):
    server.files["/facades.tar.gz"] = _tar([(tarfile.TarInfo("facades/train/1.jpg"), _jpg(1)), (tarfile.TarInfo("facades/../../evil"), b"x")])
    with pytest.raises(InputFileError, match="refusing to extract"):
        fetch_prebuilt(FacadesBuilder, tmp_path / "out", tmp_path / "dl", base_url=server.url, progress=False)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _facades_zip(part: str, n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(1, n + 1):
            stem = f"{part}/cmp_{part[0] if part == 'base' else 'x'}{i:04d}"
            zf.writestr(stem + ".jpg", _jpg(i))
            lab = Image.fromarray(np.full((8, 16), 1 + i % 12, np.uint8), "P")
            lab.putpalette([v for c in range(256) for v in (c, c, 255 - c)])
            png = io.BytesIO()
            lab.save(png, "PNG")
            zf.writestr(stem + ".png", png.getvalue())
        if part == "base":
            zf.writestr("label_names.txt", "\n".join(f"{i} c{i}" for i in range(1, 13)))
    return buf.getvalue()


def test_cli_download_builds_from_the_original_archives(server, tmp_path, cli):
    server.files["/CMP_facade_DB_base.zip"] = _facades_zip("base", 4)
    server.files["/CMP_facade_DB_extended.zip"] = _facades_zip("extended", 2)
    out = tmp_path / "out"
    result = cli("make-dataset", "facades", "--download", "--download-dir", tmp_path / "dl", "--download-base-url", server.url,
                 "--out", out, "--size", "8", "--workers", "1", "--format", "png", "--no-progress")  # fmt: skip
    assert result.code == 0, result.stderr
    manifest = load_manifest(out)
    assert len(manifest.pairs) == 6 and manifest.counts == {"train": 4, "val": 1, "test": 1}
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["CMP_facade_DB_base.zip", "CMP_facade_DB_extended.zip"]
    _, b = read_pair(out / manifest.pairs[0].file)
    value = 1 + int(manifest.pairs[0].name[-1]) % 12
    assert tuple(b[0, 0]) == (value, value, 255 - value)


def test_cli_prebuilt_and_flag_conflicts(server, tmp_path, cli):
    server.files["/facades.tar.gz"] = _tar([(tarfile.TarInfo("facades/train/1.jpg"), _jpg(1))])
    result = cli("make-dataset", "facades", "--prebuilt", "--download-dir", tmp_path / "dl", "--out", tmp_path / "o",
                 env={"P2PTOOLS_DOWNLOAD_BASE_URL": server.url})  # fmt: skip
    assert result.code == 0, result.stderr
    assert (tmp_path / "o/train/1.jpg").exists() and "train 1" in result.stdout
    result = cli("make-dataset", "facades", "--prebuilt", "--download", "--out", tmp_path / "o2")
    assert result.code == 1 and "either --download" in result.stderr


def test_builder_downloads_declared_default_and_refused():
    from p2ptools.download import PIX2PIX_BASE, builder_downloads

    assert [r.filename for r in builder_downloads(FacadesBuilder, "original")] == ["CMP_facade_DB_base.zip", "CMP_facade_DB_extended.zip"]

    class Night2Day:  # a published pix2pix set whose builder declares nothing
        name = "night2day"

    assert builder_downloads(Night2Day, "prebuilt") == (RemoteFile(PIX2PIX_BASE, "night2day.tar.gz"),)
    with pytest.raises(DownloadError, match="night2day: --download is not available"):
        builder_downloads(Night2Day, "original")

    class Private:
        name = "private"
        download_help = "Ask the authors."

    with pytest.raises(DownloadError, match="private: --prebuilt is not available for this dataset. Ask the authors."):
        builder_downloads(Private, "prebuilt")
