"""The output contract: what p2ptools may write over, and how a replacement is swapped in.

- **Ownership.** A folder is ours when it holds one of our marker files (``manifest.json`` of a
  dataset, ``config.json`` of a run, ``translate.json`` of translations, ``report.json`` /
  ``table.json`` of an evaluation). ``--overwrite`` replaces only a folder that is ours; a foreign
  non-empty folder is refused, with or without it.
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
import os
import shutil
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
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


def folder_state(path: str | Path, markers: Sequence[str]) -> str:
    """``"absent"``, ``"empty"`` (no entries at all), ``"ours"`` (holds a marker) or ``"foreign"``."""
    path = Path(path)
    if not path.exists():
        return "absent"
    if any((path / m).is_file() for m in markers):
        return "ours"
    if not any(path.iterdir()):
        return "empty"
    return "foreign"


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
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ConfigError(f"{flag} {path}: also holds files p2ptools did not write ({shown}); --overwrite would replace "
                          "the whole folder, so move them out first or choose another " + flag)


def refuse_foreign(path: str | Path, markers: Sequence[str], flag: str, kind: str) -> str:
    """:func:`folder_state` of ``path``, raising :class:`ConfigError` for a foreign folder."""
    check_folder_path(path, flag)
    state = folder_state(path, markers)
    if state == "foreign":
        raise ConfigError(f"{flag} {path}: folder is not empty and holds no p2ptools {kind} (no {' / '.join(markers)}); "
                          f"p2ptools never writes into or deletes a folder it did not create, even with --overwrite: "
                          f"choose a new or empty {flag}")
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
    """Before :func:`swap_in` of a folder whose files p2ptools does not list (an evaluation): move
    every top-level entry of ``old`` that ``new`` does not have into ``new``, so that replacing the
    folder replaces what was written again and loses nothing else. Returns the names moved."""
    old, new = Path(old), Path(new)
    if not old.is_dir():
        return []
    moved = []
    for entry in sorted(old.iterdir()):
        if not (new / entry.name).exists() and not os.path.islink(new / entry.name):
            os.replace(entry, new / entry.name)
            moved.append(entry.name)
    return moved


def discard(staging: str | Path) -> None:
    """Remove an unfinished replacement that p2ptools built (never called on a user's folder)."""
    shutil.rmtree(staging, ignore_errors=True)
