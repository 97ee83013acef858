"""The output contract: what p2ptools may write over, and how a replacement is swapped in.

- **Ownership.** A folder is ours when it holds our ownership record, ``.p2ptools.json``: a JSON
  object with ``"format": "p2ptools-output/1"``, the kind of output (``dataset``, ``run``,
  ``translation``, ``evaluation``, ``scorer``, ``sweep``) and, for outputs written whole (translations,
  evaluations), every file p2ptools wrote there (:func:`claim`, :func:`seal`). A file that merely
  has a marker's name (a user's ``config.json`` or ``report.json``) proves nothing, and neither
  does a record that is a symbolic link. Folders written before the record existed are recognised
  by a p2ptools format key inside their own marker (:class:`OutputKind`'s ``legacy`` proof: a
  dataset's manifest, a run's checkpoint state). ``--overwrite`` replaces only a folder that is
  ours, and removes only what p2ptools recorded having written there: anything else is carried
  into the replacement (:func:`carry_over`) or the command is refused before it starts
  (:func:`refuse_unrecorded`). A foreign non-empty folder is refused, with or without it.
- **No overlap.** An output equal to, inside, or containing one of the command's inputs is refused.
- **Replace, don't delete.** A replacement is built beside the old folder
  (``<parent>/.<name>.p2ptools-new``) and swapped in when complete (:func:`swap_in`); until then the
  old folder stays as it was. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``, so the old or
  the new folder is at ``--out`` at every instant, whenever the process is killed; where the file
  system lacks it, two renames, and a swap cut short between them is undone by :func:`recover_swap`,
  so the old folder is found again by the next run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from p2ptools.errors import ConfigError

NEW_SUFFIX, OLD_SUFFIX = ".p2ptools-new", ".p2ptools-old"


def staging_path(output: str | Path) -> Path:
    """Where a replacement of ``output`` is built: ``<parent>/.<name>.p2ptools-new``."""
    output = Path(os.path.abspath(output))
    return output.parent / f".{output.name}{NEW_SUFFIX}"


def final_name(path: str | Path) -> str:
    """The name an output will have: ``table1`` for ``table1`` and for its staging folder
    ``.table1.p2ptools-new`` (pages that show their folder's name are written while staged)."""
    name = Path(os.path.abspath(path)).name
    if name.startswith(".") and name.endswith(NEW_SUFFIX):
        return name[1 : -len(NEW_SUFFIX)]
    return name


def _old_path(output: Path) -> Path:
    output = Path(os.path.abspath(output))
    return output.parent / f".{output.name}{OLD_SUFFIX}"


def check_folder_path(path: str | Path, flag: str) -> None:
    """Refuse an output path that exists and is not a folder (``--output notes.txt``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file; {flag} expects a folder (a new one, or one p2ptools wrote)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder")
            break


#: The ownership record of every output folder p2ptools writes, and its format key.
OWNER_NAME, OWNER_FORMAT = ".p2ptools.json", "p2ptools-output/1"


@dataclass(frozen=True)
class OutputKind:
    """A kind of output folder: its ``name`` in the ownership record, the marker files a user
    recognises it by (named in messages only: they prove nothing), ``legacy``, a proof of authorship
    for folders written before ownership records existed (a p2ptools format key inside one of those
    markers) or None, and ``label``, how messages call it (default: ``name``)."""

    name: str
    markers: tuple[str, ...]
    legacy: Callable[[Path], bool] | None = None
    label: str = ""


@dataclass(frozen=True)
class Ownership:
    """A valid ownership record: the kind, and the files p2ptools wrote (posix paths relative to the
    folder), or None where the record does not list them (datasets list theirs in the manifest;
    runs' files are named by :data:`p2ptools.training.checkpoint.RUN_ENTRIES`)."""

    kind: str
    files: frozenset[str] | None


def read_ownership(folder: str | Path) -> Ownership | None:
    """The ownership record of ``folder`` when it is one p2ptools wrote (a regular file, not a link,
    holding our format key), else None. Never raises for a foreign or damaged file."""
    path = Path(folder) / OWNER_NAME
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != OWNER_FORMAT or not isinstance(data.get("kind"), str):
        return None
    files = data.get("files")
    if files is not None and not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
        return None
    return Ownership(data["kind"], frozenset(files) if files is not None else None)


def claim(folder: str | Path, kind: OutputKind, files: Iterable[str] | None = None) -> Path:
    """Write the ownership record of ``folder`` (created by p2ptools, or proven ours), listing
    ``files`` when given; returns the record's path."""
    from p2ptools.imageio import write_text_atomic  # imageio is above this module

    record = {"format": OWNER_FORMAT, "kind": kind.name, "files": sorted(files) if files is not None else None}
    path = Path(folder) / OWNER_NAME
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    return path


def _entries(folder: Path) -> list[str]:
    """Every file and link below ``folder`` (posix paths relative to it), the record excepted."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]  # listed, not followed
        dirs[:] = sorted(d for d in dirs if d not in links)
        found += [(rel / name).as_posix() for name in (*files, *links)]
    return sorted(f for f in found if f != OWNER_NAME)


def seal(folder: str | Path, kind: OutputKind) -> list[str]:
    """Record every file now in ``folder`` (a complete replacement, before :func:`swap_in` and
    before :func:`carry_over` adds the user's files) as written by p2ptools; returns them."""
    files = _entries(Path(folder))
    claim(folder, kind, files)
    return files


def is_ours(path: str | Path, kind: OutputKind) -> bool:
    """Whether ``path`` is a folder p2ptools wrote as ``kind`` (its record, or the legacy proof)."""
    path = Path(path)
    record = read_ownership(path)
    if record is not None:
        return record.kind == kind.name
    return kind.legacy is not None and path.is_dir() and kind.legacy(path)


def folder_state(path: str | Path, kind: OutputKind) -> str:
    """``"absent"``, ``"empty"`` (no entries at all), ``"ours"`` (:func:`is_ours`) or ``"foreign"``."""
    path = Path(path)
    if not path.exists():
        return "absent"
    if is_ours(path, kind):
        return "ours"
    if path.is_dir() and not any(path.iterdir()):
        return "empty"
    return "foreign"


def unrecorded(folder: str | Path) -> list[str]:
    """Entries of a folder of ours that its record does not list as written by p2ptools (a user's
    files; p2ptools' own temporaries ``.tmp-*`` excepted): a folder none of whose files are
    recorded counts as one entry (``"notes/"``). Empty for a record that lists no files."""
    folder = Path(folder)
    record = read_ownership(folder)
    if record is None or record.files is None or not folder.is_dir():
        return []
    recorded_dirs = {p.as_posix() for f in record.files for p in Path(f).parents}
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        descend = []
        for name in dirs:
            sub = (rel / name).as_posix()
            if os.path.islink(folder / sub):
                files.append(name)  # a link is an entry of its own, never followed
            elif sub in recorded_dirs:
                descend.append(name)
            else:
                found.append(sub + "/")  # none of its files are ours: the folder moves whole
        dirs[:] = descend
        found += [(rel / n).as_posix() for n in files if not n.startswith(".tmp-")
                  and (rel / n).as_posix() not in record.files and (rel / n).as_posix() != OWNER_NAME]
    return sorted(found)


def _shown(entries: list[str]) -> str:
    return ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")


def refuse_unrecorded(path: str | Path, flag: str) -> None:
    """Before replacing a folder of ours whole: refuse when it holds entries its record does not
    list (:func:`unrecorded`), so that a user's file is never deleted with the folder."""
    extra = unrecorded(path)
    if extra:
        raise ConfigError(f"{flag} {path}: also holds files p2ptools did not write ({_shown(extra)}); --overwrite would replace "
                          "the whole folder, so move them out first or choose another " + flag)


def refuse_unknown_entries(path: str | Path, known: Callable[[str], bool], flag: str, *,
                           listed: Collection[str] | None = None, within: Collection[str] = ()) -> None:  # fmt: skip
    """Before replacing a folder of ours whole: refuse when it also holds entries we did not write
    (a user's file dropped into a dataset folder is never deleted with it).

    ``known(name)`` accepts the top-level entries we write. With ``listed`` (posix paths relative to
    ``path``, e.g. a manifest's pair files), every file inside the top-level folders ``within`` must
    be listed too (p2ptools' own temporaries, ``.tmp-*``, excepted).
    """
    path = Path(path)
    if not path.is_dir():
        return
    unknown = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if not known(p.name))
    if listed is not None:
        wanted = set(listed)
        for folder in within:
            top = path / folder
            if not top.is_dir():
                continue
            for root, dirs, files in os.walk(top):
                rel_root = Path(root).relative_to(path).as_posix()
                unknown += sorted(f"{rel_root}/{name}" for name in files
                                  if not name.startswith(".tmp-") and f"{rel_root}/{name}" not in wanted)
                dirs.sort()
    if unknown:
        raise ConfigError(f"{flag} {path}: also holds files p2ptools did not write ({_shown(unknown)}); --overwrite would replace "
                          "the whole folder, so move them out first or choose another " + flag)


def refuse_foreign(path: str | Path, kind: OutputKind, flag: str) -> str:
    """:func:`folder_state` of ``path``, raising :class:`ConfigError` for a foreign folder."""
    check_folder_path(path, flag)
    state = folder_state(path, kind)
    if state == "foreign":
        named = " / ".join(kind.markers)
        raise ConfigError(f"{flag} {path}: folder is not empty and holds no p2ptools {kind.label or kind.name} (no valid ownership record "
                          f"{OWNER_NAME}; a file named {named} proves nothing); p2ptools never writes into or deletes a folder "
                          f"it did not create, even with --overwrite: choose a new or empty {flag}")
    return state


def _resolved(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def refuse_overlap(output: str | Path, inputs: Iterable[str | Path | None], flag: str = "--out") -> None:
    """Refuse an ``output`` equal to, inside or containing one of ``inputs`` (None entries skipped)."""
    out = _resolved(output)
    for item in inputs:
        if item is None:
            continue
        src = _resolved(item)
        if out == src:
            raise ConfigError(f"{flag} {output}: is the input {item}; p2ptools never writes over its inputs: choose another {flag}")
        if out.is_relative_to(src):
            raise ConfigError(f"{flag} {output}: is inside the input {item}; choose an {flag} outside it")
        if src.is_relative_to(out):
            raise ConfigError(f"{flag} {output}: contains the input {item}; choose an {flag} that does not hold the inputs")


def recover_swap(output: str | Path) -> None:
    """Finish or undo a :func:`swap_in` that was cut short: an old folder left beside an output that
    is missing goes back in place (only the two-rename fallback leaves that); one left beside a present
    output is not needed any more (the swap completed, or it had not begun) and is removed."""
    output = Path(output)
    old = _old_path(output)
    if not os.path.lexists(old):
        return
    if not os.path.lexists(output):
        os.replace(old, output)
    else:
        _remove(old)


def swap_in(staging: str | Path, output: str | Path) -> None:
    """Put the complete folder ``staging`` in place of ``output`` (absent, empty or ours).

    With rename-exchange (Linux ``renameat2``): ``staging`` -> ``.<name>.p2ptools-old``, which is then
    exchanged with ``output`` in one step, and the old folder, now under the old name, is removed:
    ``output`` holds the old or the new folder at every instant. Without it (a file system that does
    not offer the exchange), two renames (``output`` -> ``.<name>.p2ptools-old``, ``staging`` ->
    ``output``) and the old folder's removal: at every instant ``output`` or its old copy is complete
    (see :func:`recover_swap`, which every next run calls).
    """
    staging, output = Path(os.path.abspath(staging)), Path(os.path.abspath(output))
    recover_swap(output)
    old = _old_path(output)
    if not os.path.lexists(output):
        os.replace(staging, output)
        return
    if _RENAMEAT2[0] is not None:
        os.replace(staging, old)  # a kill now leaves output as it was; recover_swap drops the copy
        if _exchange(old, output):
            _remove(old)
            return
        os.replace(old, staging)  # no exchange on this file system: the two renames
    if output.is_dir() and not output.is_symlink() and not any(output.iterdir()):
        output.rmdir()
    else:
        os.replace(output, old)
    os.replace(staging, output)
    _remove(old)


def _remove(path: Path) -> None:
    """Remove a folder (or a symlink, not what it points to) that p2ptools set aside."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _load_renameat2() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (2.28 and later) on Linux; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


#: ``[renameat2 or None]``; set to None once the kernel or a file system says it has no exchange.
_RENAMEAT2: list[Callable[..., int] | None] = [_load_renameat2()]


def _exchange(a: Path, b: Path) -> bool:
    """Exchange the entries ``a`` and ``b`` atomically; False where the platform or file system
    cannot (nothing was changed then). Other failures raise OSError."""
    function = _RENAMEAT2[0]
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.ENOSYS:  # the kernel has no renameat2: never try again
        _RENAMEAT2[0] = None
        return False
    if code in (errno.EINVAL, errno.EOPNOTSUPP):  # this file system has no exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


def carry_over(old: str | Path, new: str | Path) -> list[str]:
    """Before :func:`swap_in` of a replacement ``new`` (already :func:`seal`-ed) for ``old``: move
    every entry of ``old`` that its record does not list (:func:`unrecorded`: the user's files) to
    the same place in ``new``, so that replacing the folder replaces what p2ptools wrote and loses
    nothing else. An entry whose place ``new`` has taken is refused (ConfigError, nothing moved).
    Returns the entries moved."""
    old, new = Path(old), Path(new)
    if not old.is_dir():
        return []
    entries = unrecorded(old)
    taken = [e for e in entries if os.path.lexists(new / e.rstrip("/"))]
    if taken:
        raise ConfigError(f"{old}: holds {_shown(taken)}, which p2ptools did not write and the new output would replace; "
                          "move them out of the folder first (nothing was changed)")
    moved: list[str] = []
    try:
        for entry in entries:
            target = new / entry.rstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old / entry.rstrip("/"), target)
            moved.append(entry)
    except BaseException:  # the user's files go back where they were before the replacement is discarded
        for entry in moved:
            os.replace(new / entry.rstrip("/"), old / entry.rstrip("/"))
        raise
    return entries


def discard(staging: str | Path) -> None:
    """Remove an unfinished replacement that p2ptools built (never called on a user's folder)."""
    shutil.rmtree(staging, ignore_errors=True)
