"""Where p2ptools keeps what it can make again (downloads, extracted archives, converted weights).

``$P2PTOOLS_CACHE`` if set, else the platform's user cache folder (``$XDG_CACHE_HOME`` or
``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows), plus
``p2ptools``. Never beside a user's files: a weights file in a read-only folder works as well as any.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

CACHE_ENV = "P2PTOOLS_CACHE"


def cache_root() -> Path:
    """The p2ptools cache folder (see the module docstring); not created here."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "p2ptools"
    if sys.platform.startswith("win") and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "p2ptools" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "p2ptools"


def file_key(path: str | Path) -> str:
    """A short key that changes when the file at ``path`` (its location, size or mtime) changes."""
    path = Path(path)
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
