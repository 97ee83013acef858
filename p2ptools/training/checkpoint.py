"""Run directories of model plugins: config, checkpoints (no pickle anywhere), exact resume.

Layout::

    RUN_DIR/config.json                       plugin, version, every option, data, parameter counts
    RUN_DIR/checkpoints/latest_G.safetensors  generator state_dict (BN buffers included)
    RUN_DIR/checkpoints/latest_D.safetensors  discriminator (absent for --loss l1)
    RUN_DIR/checkpoints/latest_state.safetensors  optimizer tensors ("G.<param index>.exp_avg", ...)
    RUN_DIR/checkpoints/latest_state.json     the rest: optimizer scalars, scheduler, grad scaler,
                                              step, epoch, position in the epoch, RNG states as ints
    RUN_DIR/checkpoints/epoch_<N>_G.safetensors   generator weights of epoch N (--save-epoch-freq)
    RUN_DIR/log.jsonl, RUN_DIR/samples/

A checkpoint is written whole into ``RUN_DIR/.tmp-checkpoints/`` (the JSON last), then swapped in
with two renames (``checkpoints`` -> ``.old-checkpoints``, ``.tmp-checkpoints`` -> ``checkpoints``).
A run killed at any moment therefore leaves one complete checkpoint, which :func:`recover` puts
back in place before resuming. The per-epoch weight files are moved over to the new folder by each
swap (and by :func:`recover`). A trainer may write in a background thread: it takes a
:func:`snapshot_checkpoint` on the training thread and runs :func:`write_checkpoint` in
:class:`~p2ptools.training.saving.BackgroundWriter`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from p2ptools.errors import CheckpointError, ConfigError, InputFileError, OutputError
from p2ptools.imageio import read_json, write_text_atomic
from p2ptools.outputs import OWNER_NAME, OutputKind, claim, is_ours, refuse_foreign, refuse_overlap
from p2ptools.plugin import CONFIG_NAME
from p2ptools.progress import console
from p2ptools.torchstate import module_tensors, optimizer_join, optimizer_split, rng_state, save_file, set_rng_state  # noqa: F401  (the RNG helpers are part of this API)

CHECKPOINTS = "checkpoints"
STATE_FORMAT = "p2ptools-pix2pix-state/1"
G_FILE, D_FILE, STATE_TENSORS, STATE_JSON = (
    "latest_G.safetensors", "latest_D.safetensors", "latest_state.safetensors", "latest_state.json")
_TMP, _OLD = ".tmp-checkpoints", ".old-checkpoints"
#: Where ``--overwrite`` keeps the replaced run until the new one has its first checkpoint.
REPLACED = ".p2ptools-replaced"


# ----------------------------------------------------------------------------------------------
# config.json and the overwrite / resume rules

def differing_options(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two configs (``"options.netG: unet_256 -> unet_128"``)."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{key}.{d}" for d in differing_options(a, b)]
        elif a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


#: What a run directory holds that p2ptools wrote: ``--overwrite`` removes these and nothing else.
RUN_ENTRIES = (CHECKPOINTS, _TMP, _OLD, "samples", "log.jsonl", "tensorboard", "wandb", CONFIG_NAME)
#: The names p2ptools writes inside the run's own folders (``tensorboard/`` and ``wandb/`` belong to
#: those libraries whole): a file of any other name there is a user's, and ``--overwrite`` refuses.
_OWN_FILES = {
    CHECKPOINTS: re.compile(r"latest_[A-Za-z0-9]+\.safetensors|latest_state\.json|epoch_\d+_[A-Za-z0-9]+\.safetensors|\.tmp.*"),
    "samples": re.compile(r"epoch_\d+\.(png|jpg)|index\.html|\.tmp.*"),
}
_OWN_FILES[_TMP] = _OWN_FILES[_OLD] = _OWN_FILES[CHECKPOINTS]


def _has_state(run_dir: Path) -> bool:
    """A run written before ownership records: a checkpoint state holding our format key."""
    for folder in (CHECKPOINTS, _TMP, _OLD):
        path = run_dir / folder / STATE_JSON
        try:
            if not path.is_symlink() and json.loads(path.read_text(encoding="utf-8")).get("format") == STATE_FORMAT:
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


#: A run directory (``p2ptools.outputs``); its files are :data:`RUN_ENTRIES`.
RUN = OutputKind("run", (CONFIG_NAME,), legacy=_has_state)


def refuse_foreign_run_files(run_dir: Path, *, whole: bool = False) -> None:
    """Before ``--overwrite`` removes a run: refuse when the run's folders hold files p2ptools does
    not write there (``samples/keep.png``), naming them; nothing is touched. With ``whole`` (the
    folder is replaced whole, as by import-checkpoint) any top-level entry but the run's counts too."""
    found = []
    if whole:
        found += sorted(p.name for p in run_dir.iterdir() if p.name not in (*RUN_ENTRIES, OWNER_NAME, REPLACED))
    for folder, pattern in _OWN_FILES.items():
        top = run_dir / folder
        if top.is_symlink():
            found.append(f"{folder} (a link)")
            continue
        for root, dirs, files in os.walk(top):
            rel = Path(root).relative_to(run_dir)
            found += [f"{(rel / d).as_posix()}/" for d in sorted(dirs)]
            found += [(rel / f).as_posix() for f in sorted(files) if not pattern.fullmatch(f)]
            dirs.clear()
    found += [name for name in RUN_ENTRIES if name not in _OWN_FILES and (run_dir / name).is_symlink()]
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise ConfigError(f"--out {run_dir}: also holds files p2ptools did not write ({shown}); --overwrite would remove "
                          "them with the old run, so move them out first or choose another --out")


def _has_progress(run_dir: Path) -> bool:
    """Whether a run got anywhere: a checkpoint (or one being swapped in) or a logged step."""
    if any((run_dir / d / STATE_JSON).is_file() for d in (CHECKPOINTS, _TMP, _OLD)):
        return True
    log = run_dir / "log.jsonl"
    try:
        return any(line.strip() for line in log.read_text(encoding="utf-8").splitlines())
    except OSError:
        return False


def _clear_run(run_dir: Path) -> None:
    """Remove what a previous run wrote (RUN_ENTRIES), never anything else."""
    for name in RUN_ENTRIES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _set_aside(run_dir: Path) -> None:
    """``--overwrite``: move what the previous run wrote into ``RUN/.p2ptools-replaced`` (kept until
    the new run's first checkpoint, restored by :func:`restore_replaced` if it never gets one)."""
    aside = run_dir / REPLACED
    if aside.exists():  # an earlier replacement never got a checkpoint: the run set aside is the one to keep
        _clear_run(run_dir)
        return
    aside.mkdir()
    for name in RUN_ENTRIES:
        if (run_dir / name).exists():
            os.replace(run_dir / name, aside / name)


def restore_replaced(run_dir: str | Path) -> bool:
    """Put the run that ``--overwrite`` set aside back in place when its replacement never wrote a
    checkpoint (the replacement failed or was stopped); drop it when the replacement has one.

    Returns whether the old run was restored.
    """
    run_dir = Path(run_dir)
    aside = run_dir / REPLACED
    if not aside.is_dir():
        return False
    if (run_dir / CHECKPOINTS / STATE_JSON).is_file() or (run_dir / _TMP / STATE_JSON).is_file():
        shutil.rmtree(aside, ignore_errors=True)
        return False
    _clear_run(run_dir)
    for entry in aside.iterdir():
        os.replace(entry, run_dir / entry.name)
    aside.rmdir()
    return True


def prepare_run_dir(run_dir: Path, config: dict[str, Any], *, resume: bool, overwrite: bool) -> bool:
    """Check ``run_dir`` against ``config`` and return whether training resumes from a checkpoint.

    Call it after every other check of the run (options, every pair of the dataset): it is the one
    place that removes anything, and only files a run wrote (:data:`RUN_ENTRIES`).

    - resume: the stored config must match (the CLI passes it back), a checkpoint is used if any;
      a run killed before its first checkpoint restarts from step 0 with its log and samples
      cleared, and says so;
    - a folder that is not empty and holds no ``config.json``: ConfigError, with or without overwrite
      (p2ptools never deletes what it did not write);
    - an existing run of another configuration: ConfigError naming the differences, unless overwrite;
    - the same configuration already trained: ConfigError suggesting --resume, unless overwrite; a run
      that failed before its first step or checkpoint is simply started again.

    ``--overwrite`` of a run that got somewhere sets it aside in ``RUN/.p2ptools-replaced`` rather
    than deleting it: it is removed when the new run writes its first checkpoint, and put back by
    :func:`restore_replaced` when the new run fails before that.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_NAME
    if config.get("data"):
        refuse_overlap(run_dir, [config["data"]], "--out")  # a run never writes into its dataset
    if resume:
        if not config_path.is_file():
            raise InputFileError(config_path, "no config.json: nothing to resume")
        require_run(run_dir)
        old = read_json(config_path)
        diffs = differing_options(_comparable(with_new_defaults(old, config)), _comparable(config))
        if diffs:
            raise ConfigError(f"{run_dir}: cannot resume with another configuration ({'; '.join(diffs)})")
        claim(run_dir, RUN)  # a run written before ownership records gets one
        recover(run_dir)
        if (run_dir / CHECKPOINTS / STATE_JSON).is_file():
            return True
        if _has_progress(run_dir):
            console.print(f"{run_dir}: no checkpoint yet (the run stopped before its first one): starting again from step 0")
        refuse_foreign_run_files(run_dir)
        truncate_log(run_dir / "log.jsonl", 0)
        shutil.rmtree(run_dir / "samples", ignore_errors=True)
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # per-epoch files of the failed start
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        # RUN/wandb stays: the kept run id makes the new start rewind that wandb run to step 0
        return False
    state = refuse_foreign(run_dir, RUN, "--out")
    if state != "ours":
        _start(run_dir)
        return False
    old = read_json(config_path) if config_path.is_file() else {}  # {}: a run that stopped before writing it
    diffs = differing_options(_comparable(with_new_defaults(old, config)), _comparable(config)) if old else []
    if not overwrite:
        if diffs:
            raise ConfigError(f"{run_dir}: holds a run of another configuration ({'; '.join(diffs)}); "
                              "use --overwrite to replace it")
        if _has_progress(run_dir):
            raise ConfigError(f"{run_dir}: already holds this run; continue it with "
                              f"`p2ptools train --resume {run_dir}` or start over with --overwrite")
    refuse_foreign_run_files(run_dir)
    if overwrite and _has_progress(run_dir):
        _set_aside(run_dir)
    else:
        _clear_run(run_dir)  # the same run that failed before its first step: start again
    _start(run_dir)
    return False


def require_run(run_dir: str | Path) -> None:
    """Refuse to resume (or otherwise change) ``run_dir`` unless p2ptools wrote it as a run."""
    if not is_ours(run_dir, RUN):
        raise ConfigError(f"{run_dir}: holds no p2ptools run (no valid ownership record {OWNER_NAME} and no checkpoint "
                          "of ours; a file named config.json proves nothing): nothing to resume")


def _start(run_dir: Path) -> None:
    """Create the run directory of a new run with its ownership record (before config.json); on a
    failure (a full disk: one line naming the file) a folder made here is removed again."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(run_dir, exc) from None
    try:
        claim(run_dir, RUN)
    except BaseException:
        _unstart(run_dir)
        raise


def _unstart(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but its ownership record."""
    with contextlib.suppress(OSError):
        if set(os.listdir(run_dir)) <= {OWNER_NAME}:
            (run_dir / OWNER_NAME).unlink(missing_ok=True)
            run_dir.rmdir()


def with_new_defaults(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the options it lacks (added to the plugin since it was written) taken from ``new``.

    A resumed run's options are read from its config with defaults for missing fields, so an option
    added later cannot make an old run "another configuration"; options it has are compared as they are.
    """
    old_options, new_options = old.get("options"), new.get("options")
    if not (isinstance(old_options, dict) and isinstance(new_options, dict)):
        return old
    return {**old, "options": {**{k: v for k, v in new_options.items() if k not in old_options}, **old_options}}


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that define the run (parameter counts follow from the options; the
    weight files' hashes are checked by :func:`p2ptools.training.paths.resume_options`)."""
    return {k: v for k, v in config.items() if k not in ("generator_params", "discriminator_params", "files_sha256")}


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``RUN_DIR/config.json`` atomically."""
    write_text_atomic(Path(run_dir) / CONFIG_NAME, json.dumps(config, indent=1) + "\n")


def start_run_dir(run_dir: Path, config: dict[str, Any]) -> None:
    """Create ``run_dir`` (where absent) and write its ``config.json``; a folder that holds nothing
    but its ownership record (just made by :func:`prepare_run_dir`) is removed again when the config
    cannot be written (a full disk leaves no empty run behind)."""
    run_dir = Path(run_dir)
    _start(run_dir)
    try:
        write_config(run_dir, config)
    except BaseException:
        _unstart(run_dir)
        raise


# ----------------------------------------------------------------------------------------------
# RNG states as JSON-able ints

# ----------------------------------------------------------------------------------------------
# save / load

@dataclass(frozen=True)
class CheckpointSnapshot:
    """Everything a checkpoint holds, copied to the CPU: later training steps cannot change it.

    Taken on the training thread by :func:`snapshot_checkpoint` (the only part that touches the
    device), written by :func:`write_checkpoint`, possibly in a background thread.
    """

    weights: dict[str, dict[str, torch.Tensor]]  # network name -> state_dict (CPU copies)
    optimizer_tensors: dict[str, torch.Tensor]
    document: dict[str, Any]  # the JSON state (a deep copy)

    @property
    def step(self) -> int:
        """The training step the snapshot was taken at."""
        return int(self.document.get("step", 0))


def snapshot_checkpoint(nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                        state: dict[str, Any]) -> CheckpointSnapshot:
    """Copy the networks, optimizers and ``state`` off the device into a :class:`CheckpointSnapshot`.

    Args:
        nets: ``{"G": generator, "D": discriminator}`` (unwrapped modules; D may be absent).
        optimizers: ``{"G": ..., "D": ...}`` matching ``nets``.
        state: JSON-able training state (step, epoch, position, scheduler, scaler, rng, ...); a value
            that JSON cannot hold raises TypeError here, not later in the writer.
    """
    weights = {name: module_tensors(net, copy=True) for name, net in nets.items()}
    tensors, opt_meta = {}, {}
    for name, opt in optimizers.items():
        t, meta = optimizer_split(name, opt, copy=True)
        tensors.update(t)
        opt_meta[name] = meta
    document = json.loads(json.dumps({"format": STATE_FORMAT, **state, "networks": sorted(nets), "optimizers": opt_meta}))
    return CheckpointSnapshot(weights, tensors, document)


def write_checkpoint(run_dir: Path, snapshot: CheckpointSnapshot) -> Path:
    """Write ``snapshot`` whole into ``.tmp-checkpoints`` and swap it in (the module docstring).

    Safe to run in a background thread: it reads only the snapshot. A kill at any moment leaves
    the previous complete checkpoint (or this one), which :func:`recover` puts in place.
    """
    run_dir = Path(run_dir)
    tmp = run_dir / _TMP
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(tmp, exc) from None
    step = str(snapshot.step)
    try:
        for name, tensors in snapshot.weights.items():
            save_file(tensors, str(tmp / f"latest_{name}.safetensors"), metadata={"step": step})
        save_file(snapshot.optimizer_tensors, str(tmp / STATE_TENSORS), metadata={"step": step})
        try:
            with open(tmp / STATE_JSON, "w", encoding="utf-8") as fh:  # the commit marker, written last
                json.dump(snapshot.document, fh)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # a full disk: one line naming the file
            raise OutputError(tmp / STATE_JSON, exc) from None
    except BaseException:  # the previous checkpoint stays the one a resume uses; nothing partial is kept
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final, old = run_dir / CHECKPOINTS, run_dir / _OLD
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _carry_epoch_weights(old, final)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(run_dir / REPLACED, ignore_errors=True)  # the replacement is resumable: the old run may go
    return final


def save_checkpoint(run_dir: Path, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    state: dict[str, Any]) -> Path:
    """Write a complete checkpoint now and swap it in atomically (see the module docstring).

    The same as :func:`write_checkpoint` of :func:`snapshot_checkpoint`; arguments as there.
    """
    return write_checkpoint(run_dir, snapshot_checkpoint(nets, optimizers, state))


def recover(run_dir: Path) -> None:
    """After a kill during :func:`save_checkpoint`, put the complete checkpoint back in place."""
    run_dir = Path(run_dir)
    final, tmp, old = run_dir / CHECKPOINTS, run_dir / _TMP, run_dir / _OLD
    if not final.exists():
        if (tmp / STATE_JSON).is_file():
            os.replace(tmp, final)
        elif (old / STATE_JSON).is_file():
            os.replace(old, final)
    for folder in (old, tmp):
        if folder.is_dir():
            final.mkdir(exist_ok=True)
            _carry_epoch_weights(folder, final)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# per-epoch weights (written and chosen by :mod:`p2ptools.training.epoch_weights`) across swaps

def _carry_epoch_weights(source: Path, target: Path) -> None:
    """Move ``epoch_*.safetensors`` files from a replaced checkpoint folder into the new one."""
    for path in source.glob("epoch_*.safetensors") if source.is_dir() else ():
        if not (target / path.name).exists():
            os.replace(path, target / path.name)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, with a clear error when it is missing or damaged."""
    if not path.is_file():
        raise CheckpointError(path, "missing checkpoint file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"unreadable safetensors file ({exc})") from None


def load_module(net: nn.Module, path: Path) -> None:
    """Load weights into ``net``; a key or shape mismatch is one error listing the differences."""
    tensors = read_weights(path)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"shape {shapes[:5]}" if shapes else ""]
        raise CheckpointError(path, "does not fit the network: " + "; ".join(p for p in parts if p))
    net.load_state_dict(tensors)


def load_checkpoint(run_dir: Path, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Load the latest checkpoint into ``nets`` and ``optimizers``; return the JSON training state."""
    folder = Path(run_dir) / CHECKPOINTS
    json_path = folder / STATE_JSON
    document = read_json(json_path, missing="missing checkpoint state", error=CheckpointError)
    if document.get("format") != STATE_FORMAT:
        raise CheckpointError(json_path, f"unknown format {document.get('format')!r}, expected {STATE_FORMAT!r}")
    if sorted(nets) != document.get("networks"):
        raise CheckpointError(json_path, f"holds networks {document.get('networks')}, the run needs {sorted(nets)}")
    for name, net in nets.items():
        load_module(net, folder / f"latest_{name}.safetensors")
    tensors = read_weights(folder / STATE_TENSORS)
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(optimizer_join(name, tensors, document["optimizers"][name]))
        except (KeyError, ValueError) as exc:
            raise CheckpointError(folder / STATE_TENSORS, f"optimizer {name} state does not fit ({exc})") from None
    return document


def truncate_log(path: Path, step: int) -> None:
    """Drop ``log.jsonl`` lines after ``step`` (written by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the kill
    write_text_atomic(path, "".join(k + "\n" for k in kept))
