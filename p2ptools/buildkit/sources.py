"""Read a dataset's original files from a folder or directly from its archive.

:func:`open_source` gives one interface over an extracted folder, a ``.zip``, a plain ``.tar``
(indexed once, then read by offset) and a ``.tar.gz``/``.tgz`` (extracted once into a cache
folder, since gzip streams cannot be read at random). Several archives of one dataset
(Cityscapes' ``leftImg8bit`` and ``gtFine`` zips) combine with :class:`MultiSource`.

Every tree is picklable, so builder workers in other processes reopen it themselves.
Names are posix paths relative to the tree's root. Extraction refuses absolute paths, ``..``
components and links that leave the target (:func:`safe_extract`).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

from p2ptools.cache import cache_root, file_key
from p2ptools.errors import InputFileError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def is_archive(path: str | Path) -> bool:
    """True for the archive types :func:`open_source` reads."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


class SourceTree(ABC):
    """Read-only view of a dataset source: list names, read bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def names(self) -> list[str]:
        """All file names (posix, relative), sorted."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes:
        """Contents of one file; :class:`InputFileError` if it is absent or unreadable."""

    def exists(self, name: str) -> bool:
        return name in self._name_set()

    def _name_set(self) -> set[str]:
        cached = self.__dict__.get("_names_cache")
        if cached is None:
            cached = set(self.names())
            self.__dict__["_names_cache"] = cached
        return cached

    def display(self, name: str) -> str:
        """How to name a member in messages: ``archive.zip:inner/path`` or the file path."""
        return f"{self.path}:{name}"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_names_cache", None)
        state.pop("_handle", None)
        state.pop("_handle_pid", None)
        return state


class FolderSource(SourceTree):
    """An extracted folder."""

    def names(self) -> list[str]:
        out = []
        for dirpath, _dirs, files in os.walk(self.path):
            rel = os.path.relpath(dirpath, self.path)
            for f in files:
                out.append(f if rel == "." else posixpath.join(Path(rel).as_posix(), f))
        return sorted(out)

    def read_bytes(self, name: str) -> bytes:
        path = self.path / name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise InputFileError(path, "no such file") from None
        except OSError as exc:
            raise InputFileError(path, f"cannot read ({exc.strerror})") from None

    def display(self, name: str) -> str:
        return str(self.path / name)


class ZipSource(SourceTree):
    """A zip archive, read member by member without extraction."""

    def _zip(self) -> zipfile.ZipFile:
        handle = self.__dict__.get("_handle")
        if handle is not None and self.__dict__.get("_handle_pid") != os.getpid():
            handle = None  # inherited through fork: a shared file offset would race with the parent's
        if handle is None:
            try:
                handle = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile:
                raise InputFileError(self.path, "not a zip archive (corrupt or wrong file)") from None
            except FileNotFoundError:
                raise InputFileError(self.path, "no such file") from None
            self.__dict__["_handle"] = handle
            self.__dict__["_handle_pid"] = os.getpid()
        return handle

    def names(self) -> list[str]:
        return sorted(i.filename for i in self._zip().infolist() if not i.is_dir())

    def read_bytes(self, name: str) -> bytes:
        try:
            return self._zip().read(name)
        except KeyError:
            raise InputFileError(self.display(name), "not in the archive") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputFileError(self.display(name), f"corrupt archive member ({exc})") from None


class TarSource(SourceTree):
    """An uncompressed tar archive: indexed once, then members are read by offset (random access)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._index: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    if member.isfile():
                        self._index[_normalize(member.name)] = (member.offset_data, member.size)
        except tarfile.ReadError as exc:
            raise InputFileError(path, f"not a tar archive ({exc})") from None

    def names(self) -> list[str]:
        return sorted(self._index)

    def read_bytes(self, name: str) -> bytes:
        try:
            offset, size = self._index[name]
        except KeyError:
            raise InputFileError(self.display(name), "not in the archive") from None
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
        if len(data) != size:
            raise InputFileError(self.display(name), "archive member is truncated")
        return data


def _normalize(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _unsafe_reason(name: str) -> str | None:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    if ".." in norm.split("/"):
        return "path with '..'"
    return None


def safe_extract(archive: str | Path, target: str | Path) -> list[str]:
    """Extract a zip or tar(.gz) archive into ``target``, refusing anything that would escape it.

    Refused (with :class:`InputFileError` naming the archive and the member, before anything is
    written): absolute paths, ``..`` components, symbolic or hard links whose destination leaves
    the target, device files. Returns the extracted file names.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    lower = archive.name.lower()
    if lower.endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    if reason := _unsafe_reason(info.filename):
                        raise InputFileError(archive, f"refusing to extract {info.filename!r}: {reason}")
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise InputFileError(archive, f"refusing to extract {info.filename!r}: symbolic link")
                zf.extractall(target)
                return [i.filename for i in infos if not i.is_dir()]
        except zipfile.BadZipFile:
            raise InputFileError(archive, "not a zip archive (corrupt or wrong file)") from None
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                if reason := _unsafe_reason(m.name):
                    raise InputFileError(archive, f"refusing to extract {m.name!r}: {reason}")
                if m.issym() or m.islnk():
                    base = root / posixpath.dirname(m.name) if m.issym() else root
                    dest = (base / m.linkname).resolve()
                    if m.linkname.startswith("/") or not dest.is_relative_to(root):
                        raise InputFileError(archive, f"refusing to extract {m.name!r}: link leaves the target")
                elif not (m.isfile() or m.isdir()):
                    raise InputFileError(archive, f"refusing to extract {m.name!r}: special file")
            tar.extractall(target, filter="data")
            return [_normalize(m.name) for m in members if m.isfile()]
    except (tarfile.ReadError, EOFError, OSError) as exc:
        raise InputFileError(archive, f"cannot read archive ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (tarfile lists each compression method it tried on its own line)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _cache_dir_for(archive: Path) -> Path:
    return cache_root() / "extracted" / f"{archive.name}-{file_key(archive)}"


def _extract_cached(archive: Path) -> Path:
    """Extract a compressed tar once into the cache; a finished extraction is marked by a file."""
    cache = _cache_dir_for(archive)
    done = cache / ".complete"
    if done.exists():
        return cache / "tree"
    tmp = cache / "tree.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    safe_extract(archive, tmp)
    final = cache / "tree"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    done.touch()
    return final


def open_source(path: str | Path) -> SourceTree:
    """Open a folder or archive as a :class:`SourceTree`.

    Raises:
        InputFileError: the path does not exist or is neither a folder nor a supported archive.
    """
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    lower = path.name.lower()
    if lower.endswith(".zip"):
        return ZipSource(path)
    if lower.endswith(".tar"):
        return TarSource(path)
    if lower.endswith((".tar.gz", ".tgz")):
        return FolderSource(_extract_cached(path))
    raise InputFileError(path, f"not a folder or a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")


class MultiSource(SourceTree):
    """Several trees seen as one (names must not collide; the first tree wins if they do)."""

    def __init__(self, trees: Sequence[SourceTree]) -> None:
        super().__init__(trees[0].path if trees else Path("."))
        self.trees = list(trees)
        self._owner: dict[str, int] | None = None

    def _owners(self) -> dict[str, int]:
        if self._owner is None:
            owner: dict[str, int] = {}
            for i, tree in enumerate(self.trees):
                for name in tree.names():
                    owner.setdefault(name, i)
            self._owner = owner
        return self._owner

    def names(self) -> list[str]:
        return sorted(self._owners())

    def read_bytes(self, name: str) -> bytes:
        idx = self._owners().get(name)
        if idx is None:
            raise InputFileError(f"{self.path}:{name}", "not in the source")
        return self.trees[idx].read_bytes(name)

    def display(self, name: str) -> str:
        idx = self._owners().get(name)
        return self.trees[idx].display(name) if idx is not None else name


def open_sources(paths: Iterable[str | Path]) -> SourceTree:
    """Open several folders/archives as one tree (a single path gives that tree itself)."""
    trees = [open_source(p) for p in paths]
    if not trees:
        raise InputFileError("<none>", "no source given")
    return trees[0] if len(trees) == 1 else MultiSource(trees)
