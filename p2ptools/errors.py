"""Typed errors raised by the library.

The CLI maps every :class:`P2PError` to one line on stderr and exit code 1; the library itself never
prints or exits. Messages name the offending file and the problem, so they are actionable as they are.
"""

from __future__ import annotations

from pathlib import Path


class P2PError(Exception):
    """Base class of every error p2ptools raises on purpose."""


class ConfigError(P2PError):
    """Invalid options or an inconsistent configuration (e.g. a run directory of another config)."""


class PluginError(P2PError):
    """Registry problems: unknown name, a name registered twice, a plugin breaking its contract."""


class InputFileError(P2PError):
    """A file that cannot be used: missing, unreadable, corrupt, of the wrong size or content.

    Args:
        path: the offending file (or folder).
        problem: what is wrong with it, in a few words.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Sent from a worker process to the parent (pickled): rebuilt from its arguments, not from
        # the message alone, which would fail in __init__ on the parent's side.
        return type(self), (self.path, self.problem)


class OutputError(P2PError):
    """A file that cannot be written (disk full, read-only, no permission, I/O error).

    Args:
        path: the file being written.
        cause: the ``OSError`` (its ``strerror`` is shown), or a few words.
    """

    def __init__(self, path: str | Path, cause: OSError | str) -> None:
        self.path = str(path)
        self.cause = cause
        self.problem = f"cannot write ({cause.strerror or cause})" if isinstance(cause, OSError) else cause
        self.errno = cause.errno if isinstance(cause, OSError) else None
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):
        # As InputFileError's: a worker's full disk reaches the parent as this error, naming the file.
        return type(self), (self.path, self.cause)


class CheckpointError(InputFileError):
    """A weights or checkpoint file that does not fit the network it is loaded into."""


class DownloadError(P2PError):
    """A download that failed or whose size / checksum does not match."""
