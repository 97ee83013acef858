"""The file paths of a run's options (weights such as pix2pixHD's ``--vgg-weights``, runs such as
``--init-from``): stored absolute in ``config.json``, with the sha256 of each file, so that a run
resumes from any folder and a moved weight file can be pointed at again.

- :func:`absolute_paths`: the options with every path made absolute (trainers call it first);
- :func:`file_hashes`: ``{option: sha256}`` of the options' paths that are files, for ``config.json``;
- :func:`resume_options`: the options a resumed run continues with. Beside ``--resume RUN`` only
  path options may be given, each naming a file with the content the run was trained with (the
  recorded sha256; for runs written before hashes were recorded, the old file's, or none where it is
  gone). A relative path of an older config is resolved against the current folder.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2ptools.errors import ConfigError
from p2ptools.imageio import sha256_file
from p2ptools.options import flag_of, option_fields

#: The key of ``config.json`` that holds :func:`file_hashes`.
HASHES_KEY = "files_sha256"


def _path_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f, tp in option_fields(cls) if tp is Path or Path in typing.get_args(tp)]


def absolute_paths(options: Any) -> Any:
    """``options`` with every :class:`~pathlib.Path` field made absolute (``os.path.abspath``)."""
    changes = {f.name: Path(os.path.abspath(v)) for f in _path_fields(type(options))
               if (v := getattr(options, f.name)) is not None and not Path(v).is_absolute()}
    return dataclasses.replace(options, **changes) if changes else options


def file_hashes(options: Any) -> dict[str, str]:
    """``{field name: sha256}`` of the options' paths that name files (folders are not hashed)."""
    return {f.name: sha256_file(v) for f in _path_fields(type(options))
            if (v := getattr(options, f.name)) is not None and Path(v).is_file()}


def resume_options(options: Any, config: dict[str, Any], args: Sequence[str], run_dir: str | Path) -> tuple[Any, bool]:
    """The options ``run_dir`` resumes with, and whether they differ from ``config.json``'s.

    ``args`` are the command line's other arguments: a path option given there re-points a moved file.

    Raises:
        ConfigError: a non-path option beside ``--resume``, a path that is not there, or a file whose
            content differs from the one the run was trained with.
    """
    from p2ptools.cli.dynamic import find_value

    cls = type(options)
    paths = {f.name: f for f in _path_fields(cls)}
    for f, _ in option_fields(cls):
        flag = flag_of(f)
        if f.name not in paths and any(a == flag or a.startswith(flag + "=") for a in args):
            raise ConfigError(f"{flag}: a resumed run continues with its own config.json ({Path(run_dir) / 'config.json'}); "
                              "only moved files may be given beside --resume (" + ", ".join(flag_of(p) for p in paths.values()) + ")"
                              if paths else "nothing may be given beside --resume")
    recorded = config.get(HASHES_KEY) or {}
    changes = {}
    for name, f in paths.items():
        flag, old = flag_of(f), getattr(options, name)
        given = find_value(args, flag)
        if given is None:
            if old is not None and not Path(old).is_absolute():  # a config written before paths were stored absolute
                if not Path(old).exists():
                    raise ConfigError(f"{flag} {old}: config.json records this path relative to the folder the run started in, "
                                      f"and it is not in {os.getcwd()}: resume from that folder, or give {flag} PATH beside --resume")
                changes[name] = Path(os.path.abspath(old))
            continue
        if old is None:
            raise ConfigError(f"{flag} {given}: the run was trained without {flag}; a resumed run cannot add it")
        new = Path(os.path.abspath(given))
        if not new.exists():
            raise ConfigError(f"{flag} {given}: no such file or folder")
        if new.is_file():
            digest = sha256_file(new)
            expected = recorded.get(name) or (sha256_file(old) if Path(old).is_file() else None)
            if expected is not None and digest != expected:
                raise ConfigError(f"{flag} {given}: is not the file the run was trained with (sha256 {digest[:12]}..., "
                                  f"recorded {expected[:12]}...); a resumed run continues with the same weights")
        changes[name] = new
    if not changes:
        return options, False
    return dataclasses.replace(options, **changes), True
