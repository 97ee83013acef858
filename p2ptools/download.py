"""Resumable downloads of public dataset archives, and the ``make-dataset --download/--prebuilt`` hook.

A builder declares what can be fetched for it in a class attribute::

    downloads: ClassVar[dict[str, tuple[RemoteFile, ...]]] = {
        "original": (RemoteFile(base, "CMP_facade_DB_base.zip"), ...),   # built with --download
        "prebuilt": (RemoteFile(PIX2PIX_BASE, "facades.tar.gz"),),      # extracted with --prebuilt
    }

and, where the data needs a login, ``download_help: ClassVar[str]`` with the way to get it.

Downloads go to a cache folder (``--download-dir``, default ``~/.cache/p2ptools/downloads``)
through ``<file>.part``: an interrupted download resumes from the part's size with an HTTP
``Range`` request (a server that ignores ``Range`` restarts it from zero). A finished file is
checked against its size and sha256 where they are known; a mismatch is a :class:`DownloadError`
naming the URL and the file, and the bad part is removed. ``P2PTOOLS_DOWNLOAD_BASE_URL`` (or
``--download-base-url``) replaces every base URL, e.g. for a local mirror or tests on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from p2ptools.cache import cache_root
from p2ptools.errors import DownloadError, InputFileError
from p2ptools.imageio import is_image_name, sha256_file
from p2ptools.progress import make_progress

#: The server of the published pix2pix datasets (``<name>.tar.gz``).
PIX2PIX_BASE = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
#: The datasets published there; builders of these names get ``--prebuilt`` without declaring it.
PIX2PIX_PUBLISHED = ("facades", "maps", "edges2shoes", "edges2handbags", "night2day")
BASE_URL_ENV = "P2PTOOLS_DOWNLOAD_BASE_URL"
CHUNK = 1 << 16


def default_download_dir() -> Path:
    """``<user cache>/p2ptools/downloads`` (``$P2PTOOLS_CACHE/downloads`` if set; see :mod:`p2ptools.cache`)."""
    return cache_root() / "downloads"


@dataclass(frozen=True)
class RemoteFile:
    """A downloadable file: ``<base>/<filename>``, with its size and sha256 when known."""

    base: str
    filename: str
    size: int | None = None
    sha256: str | None = None

    def url(self, base_override: str | None = None) -> str:
        """The URL, with ``base_override`` (or ``$P2PTOOLS_DOWNLOAD_BASE_URL``) replacing the base."""
        base = base_override or os.environ.get(BASE_URL_ENV) or self.base
        return base.rstrip("/") + "/" + self.filename


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "p2ptools"})
    if start > 0:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) URLs only, checked)


def download_file(
    remote: RemoteFile,
    dest_dir: str | Path,
    *,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``remote`` into ``dest_dir`` (resuming a ``.part`` left by an interruption).

    Args:
        remote: what to fetch.
        dest_dir: cache folder; the file lands at ``dest_dir / remote.filename``.
        base_url: replaces ``remote.base`` (see :meth:`RemoteFile.url`).
        progress: draw a progress bar.
        timeout: seconds without data before giving up.

    Returns:
        The path of the complete, verified file. An existing file that matches is reused.

    Raises:
        DownloadError: HTTP or network failure, or a size / sha256 mismatch (the message names the
            URL and the file).
    """
    url = remote.url(base_url)
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: only http:// and https:// URLs are supported")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    part = dest_dir / (remote.filename + ".part")
    if final.exists():
        _verify(final, remote, url, remove=False)
        return final
    start = part.stat().st_size if part.exists() else 0
    if remote.size is not None and start > remote.size:
        part.unlink()
        start = 0
    if remote.size is None or start < remote.size:
        _fetch(url, part, start, remote, progress, timeout)
    _verify(part, remote, url, remove=True)
    os.replace(part, final)
    return final


def _fetch(url: str, part: Path, start: int, remote: RemoteFile, progress: bool, timeout: float) -> None:
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start > 0:  # the part already holds everything the server has
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot connect ({getattr(exc, 'reason', exc)})") from None
    with response:
        status = getattr(response, "status", 200)
        if start > 0 and status != 206:
            start = 0  # the server ignored Range: start over
        elif start > 0:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise DownloadError(f"{url}: asked for bytes from {start}, the server sent {content_range!r}; delete {part} and rerun")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else remote.size
        with open(part, "ab" if start > 0 else "wb") as fh, make_progress(progress) as bar:
            task = bar.add_task(f"download {remote.filename}", total=total, completed=start)
            try:
                while block := response.read(CHUNK):
                    fh.write(block)
                    bar.advance(task, len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"{url}: connection lost after {fh.tell()} bytes ({exc}); rerun to resume") from None
    got = part.stat().st_size
    if length is not None and got != total:
        raise DownloadError(f"{url}: connection closed at {got} of {total} bytes; rerun to resume")


def _verify(path: Path, remote: RemoteFile, url: str, *, remove: bool) -> None:
    size = path.stat().st_size
    problem = None
    if remote.size is not None and size != remote.size:
        problem = f"size {size} bytes, expected {remote.size}"
    elif remote.sha256 is not None:
        digest = sha256_file(path)
        if digest != remote.sha256.lower():
            problem = f"sha256 {digest}, expected {remote.sha256.lower()}"
    if problem is not None:
        if remove:
            path.unlink(missing_ok=True)
        raise DownloadError(f"{url} -> {path}: {problem}" + ("; the download was removed, rerun to fetch it again" if remove else "; delete it and rerun"))


def builder_downloads(builder_cls: type, kind: str) -> tuple[RemoteFile, ...]:
    """The files a builder declares for ``kind`` (``"original"`` or ``"prebuilt"``).

    Raises:
        DownloadError: the builder declares none; the message carries the builder's
            ``download_help`` (how to get the data by hand) when it has one.
    """
    files = tuple(getattr(builder_cls, "downloads", {}).get(kind, ()))
    if files:
        return files
    name = getattr(builder_cls, "name", builder_cls.__name__)
    if kind == "prebuilt" and name in PIX2PIX_PUBLISHED:
        return (RemoteFile(PIX2PIX_BASE, f"{name}.tar.gz"),)
    what = "--download" if kind == "original" else "--prebuilt"
    help_text = getattr(builder_cls, "download_help", "")
    available = sorted(getattr(builder_cls, "downloads", {}))
    hint = f" (it has: {', '.join('--download' if k == 'original' else '--' + k for k in available)})" if available else ""
    raise DownloadError(f"{name}: {what} is not available for this dataset{hint}. {help_text}".strip())


def download_sources(builder_cls: type, dest_dir: str | Path, *, base_url: str | None = None, progress: bool = True) -> list[Path]:
    """Fetch a builder's original archives (``--download``) and return them as ``--source`` paths."""
    return [download_file(r, dest_dir, base_url=base_url, progress=progress) for r in builder_downloads(builder_cls, "original")]


def fetch_prebuilt(
    builder_cls: type,
    out: str | Path,
    dest_dir: str | Path,
    *,
    base_url: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Download the published pix2pix archive of a dataset and extract it safely into ``out``.

    The archive's single top folder (``facades/``) is dropped, so ``out`` gets ``train/``, ``val/``
    (and ``test/``) directly, plus a ``manifest.json`` listing every pair with its sha256 and the
    archive as its source. Extraction refuses absolute paths, ``..`` and links leaving the target.

    Returns:
        Pair counts per split.
    """
    from p2ptools.buildkit.sources import safe_extract
    from p2ptools.locks import output_lock
    from p2ptools.outputs import OWNER_NAME, claim, discard, refuse_foreign, refuse_overlap, refuse_unknown_entries, staging_path, swap_in
    from p2ptools.pairs import DATASET

    out = Path(out)
    refuse_overlap(out, [dest_dir], "--out")
    with output_lock(out):
        # every check before anything is touched: a foreign folder is refused even with --overwrite,
        # a dataset of ours is replaced only with it, and only once the new one is complete
        state = refuse_foreign(out, DATASET, "--out")
        if state == "ours" and not overwrite:
            raise DownloadError(f"{out}: holds a dataset already; use --overwrite to replace it (the old one stays until "
                                "the new one is complete) or another --out")
        if state == "ours":
            from p2ptools.pairs import SPLITS, load_manifest

            listed = {rec.file for rec in load_manifest(out).pairs}
            refuse_unknown_entries(out, lambda name: name in (*SPLITS, "manifest.json", OWNER_NAME), "--out", listed=listed, within=SPLITS)
        (remote,) = builder_downloads(builder_cls, "prebuilt")
        archive = download_file(remote, dest_dir, base_url=base_url, progress=progress)
        staging = staging_path(out)
        discard(staging)
        staging.mkdir(parents=True)
        try:
            extracted = staging / ".extracted"
            safe_extract(archive, extracted)
            entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
            root = entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted
            if not any((root / s).is_dir() for s in ("train", "val", "test")):
                raise InputFileError(archive, "not a pix2pix dataset archive (no train/ val/ test/ folders)")
            top = root.name + "/" if root != extracted else ""
            dataset = staging / "dataset"
            os.replace(root, dataset)
            counts = _write_prebuilt_manifest(dataset, builder_cls, remote, archive, top)
            claim(dataset, DATASET)
            swap_in(dataset, out)
        finally:
            discard(staging)
    return counts


def _write_prebuilt_manifest(out: Path, builder_cls: type, remote: RemoteFile, archive: Path, top: str) -> dict[str, int]:
    import cv2

    from p2ptools.pairs import SPLITS, Manifest, PairRecord

    pairs: list[PairRecord] = []
    size: list[int] | None = None
    formats: set[str] = set()
    for split in SPLITS:
        folder = out / split
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not (path.is_file() and is_image_name(path.name)):
                continue
            rel = f"{split}/{path.name}"
            pairs.append(PairRecord(split, path.stem, rel, [f"{archive.name}:{top}{rel}"], sha256_file(path)))
            formats.add(path.suffix.lstrip(".").lower())
            if size is None:
                first = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if first is not None:
                    size = [int(first.shape[0]), int(first.shape[1]) // 2]
    manifest = Manifest(
        builder={"name": getattr(builder_cls, "name", "?"), "version": "prebuilt"},
        options={"prebuilt": remote.filename},
        source=[str(archive)],
        image_size=size,
        file_format=formats.pop() if len(formats) == 1 else "mixed",
        pairs=pairs,
        extras={"note": "the published pix2pix archive, extracted as is"},
    )
    manifest.write(out)
    return manifest.counts

