"""The library's error types survive the trip from a worker process to its parent (pickling)."""

from __future__ import annotations

import errno
import os
import pickle

from p2ptools.errors import CheckpointError, InputFileError, OutputError


def test_errors_with_a_path_are_rebuilt_from_their_arguments_when_unpickled():
    """Issue 23.5: a builder worker's full disk reached make-dataset as ``TypeError: OutputError.__init__()
    missing ... 'cause'`` (an exception is unpickled from its message alone by default)."""
    full = OutputError("/d/train/1.png", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    for error in (full, OutputError("/d/x", "cannot write (read-only)"), InputFileError("/d/a.png", "truncated"),
                  CheckpointError("/r/G.safetensors", "wrong shape")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and back.path == error.path
    back = pickle.loads(pickle.dumps(full))
    assert str(back) == "/d/train/1.png: cannot write (No space left on device)" and back.errno == errno.ENOSPC
