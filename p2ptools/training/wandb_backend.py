"""The Weights & Biases backend of :class:`p2ptools.training.tracking.RunLog` (``--log wandb``).

Layout: ``wandb.init(dir=RUN_DIR)``, so wandb's files go to ``RUN_DIR/wandb/`` (one
``offline-run-*`` or ``run-*`` folder per process); the run id is kept in ``RUN_DIR/wandb/run_id``.
Project: ``$WANDB_PROJECT``, else ``p2ptools``; entity: wandb's own default (``$WANDB_ENTITY``);
name: the run folder's name; config: the run's ``config.json`` content (options, data, sizes).

Mode: offline when ``$WANDB_MODE`` is unset and either no credentials are at hand
(``$WANDB_API_KEY``, ``$WANDB_IDENTITY_TOKEN_FILE`` or a ``.netrc`` entry for the server, where
``wandb login`` writes) or the server does not answer a TCP connection within 2 s: nothing leaves
the machine, and ``wandb sync RUN_DIR/wandb`` uploads it later. Otherwise wandb decides as usual
(``$WANDB_MODE``, ``wandb offline``/``wandb online``, else online); no network access is made
without credentials. Console capture is off and wandb's own messages are cut to the essential
lines (``WANDB_SILENT=true`` silences those too).

Resuming from the checkpoint of step S reuses the run id and *rewinds* the run to S
(``wandb.init(resume_from=f"{id}?_step={S}")``): the resumed process logs S + 1 onwards, and on the
server the history of the killed process after S is replaced by the new one, so every step is on
the curves once, with the values of ``log.jsonl``. Offline, wandb records the rewind point in the
new process's ``.wandb`` file (the run record's ``branch_point``: run id, ``_step``, S) and
performs the rewind when ``wandb sync`` uploads it; ``wandb sync RUN_DIR/wandb`` uploads the files
of one run in the order they were started, which is the order this needs. Online, rewinding is a preview feature of the W&B server; where the server refuses it,
the run is resumed with ``resume="allow"`` instead: wandb then continues after the last step the
server holds and drops logged steps at or below it, so each step is still there once, but the steps
between S and the kill keep the killed process's values.

Limits (wandb's, not ours): a process killed with SIGKILL loses what wandb had not written to its
``.wandb`` file yet, which offline is the data of up to the last 15 s (wandb-core writes the file
when a 32 KiB block fills and every ``x_transaction_log_flush_interval`` = 15 s, a private setting
that ``WANDB__TRANSACTION_LOG_FLUSH_INTERVAL`` changes) and always the row of the last logged step
(wandb commits a row when a later step arrives). Online, what was
already streamed to the server stays. An exception, Ctrl-C or SIGTERM finishes the run (exit code
1) and writes everything.
"""

from __future__ import annotations

import netrc
import os
import secrets
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

WANDB_DIR = "wandb"
RUN_ID_FILE = "run_id"
DEFAULT_PROJECT = "p2ptools"
DEFAULT_BASE_URL = "https://api.wandb.ai"


def wandb_host(environ: Mapping[str, str] = os.environ) -> str:
    """The W&B server's host name (``$WANDB_BASE_URL``, default ``api.wandb.ai``)."""
    return urlsplit(environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or "api.wandb.ai"


def has_credentials(host: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether an API key for ``host`` is at hand without asking anyone: the environment or a
    ``.netrc`` entry (``$NETRC``, ``~/.netrc`` or ``~/_netrc``, where ``wandb login`` writes)."""
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    home = Path(environ.get("HOME") or Path.home())
    paths = [Path(environ["NETRC"]).expanduser()] if environ.get("NETRC") else [home / ".netrc", home / "_netrc"]
    for path in paths:
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            continue
        if entry and entry[2]:
            return True
    return False


def reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_mode(environ: Mapping[str, str] = os.environ) -> str | None:
    """``"offline"`` without ``$WANDB_MODE`` and without credentials or a reachable server; else
    ``None``: wandb's own choice (module docstring). Probes the server only when credentials exist."""
    if environ.get("WANDB_MODE"):
        return None
    host = wandb_host(environ)
    return None if has_credentials(host, environ) and reachable(host) else "offline"


def read_run_id(run_dir: Path) -> str | None:
    """The wandb run id kept in ``RUN_DIR/wandb/run_id``, if any."""
    path = Path(run_dir) / WANDB_DIR / RUN_ID_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def write_run_id(run_dir: Path, run_id: str) -> None:
    """Keep ``run_id`` in ``RUN_DIR/wandb/run_id`` (atomically; a full disk is one line naming the file)."""
    from p2ptools.imageio import write_text_atomic

    folder = Path(run_dir) / WANDB_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / RUN_ID_FILE, run_id + "\n")


class WandbTracker:
    """One wandb run per run folder, continued across resumes (module docstring).

    Args:
        run_dir: the run directory (wandb writes to ``run_dir/wandb/``).
        resume_step: the step training starts from; with a kept run id the run is rewound to it.
        config: what the run's config shows (the trainer passes its ``config.json`` content).
    """

    def __init__(self, run_dir: Path, *, resume_step: int = 0, config: Mapping[str, Any] | None = None) -> None:
        import wandb

        self._wandb = wandb
        run_dir = Path(run_dir)
        run_id = read_run_id(run_dir)
        resuming = run_id is not None
        if run_id is None:
            run_id = secrets.token_hex(4)  # wandb ids: lowercase letters, digits
            write_run_id(run_dir, run_id)
        mode = choose_mode()
        init = {"dir": str(run_dir), "project": os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, "name": run_dir.name,
                "config": dict(config or {}), "mode": mode,
                "settings": wandb.Settings(console="off", quiet=True)}
        if not resuming:
            self.run = wandb.init(id=run_id, **init)
        else:
            try:
                self.run = wandb.init(resume_from=f"{run_id}?_step={int(resume_step)}", **init)
            except wandb.Error as exc:  # online, a server without run rewinding (offline, nothing refuses)
                warnings.warn(f"wandb could not rewind run {run_id} to step {resume_step} ({exc}); "
                              "resuming it after its last logged step instead", stacklevel=2)
                self.run = wandb.init(id=run_id, resume="allow", **init)
        self.run_id = run_id

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        """Log ``scalars`` (tag -> value) at ``step``."""
        if scalars:
            self.run.log(dict(scalars), step=int(step))

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        """Log a uint8 (H, W, 3) image at ``step``."""
        self.run.log({tag: self._wandb.Image(grid)}, step=int(step))

    def finish(self, exit_code: int = 0) -> None:
        """End the run (``exit_code`` 1 marks it failed), writing everything out."""
        self.run.finish(exit_code=exit_code)
