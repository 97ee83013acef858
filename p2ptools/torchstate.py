"""Training state without pickle: RNG states as JSON-able lists, module and optimizer state as
safetensors tensors plus JSON scalars. Trainers (pix2pix, ``fcn train``) save and resume with these."""

from __future__ import annotations

import os

import random
from typing import Any

import numpy as np
import torch
from torch import nn


def rng_state() -> dict[str, Any]:
    """CPU/CUDA torch, numpy and python RNG states, as lists of ints."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch_cpu": torch.get_rng_state().tolist(),
        "torch_cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(torch.tensor(state["torch_cpu"], dtype=torch.uint8))
    if state.get("torch_cuda") and torch.cuda.is_available():
        cuda = state["torch_cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def cpu_tensor(t: torch.Tensor, copy: bool = False) -> torch.Tensor:
    """``t`` as a contiguous CPU tensor; ``copy=True`` never shares memory with ``t`` (a snapshot
    that later in-place updates of ``t`` cannot change)."""
    return t.detach().to("cpu", copy=copy).contiguous()


def module_tensors(net: nn.Module, copy: bool = False) -> dict[str, torch.Tensor]:
    """A module's state_dict as contiguous CPU tensors (what safetensors stores); ``copy``: see
    :func:`cpu_tensor`."""
    return {k: cpu_tensor(v, copy) for k, v in net.state_dict().items()}


def optimizer_split(name: str, optimizer: torch.optim.Optimizer, copy: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into tensors (``"<name>.<param>.<key>"``) and JSON scalars;
    ``copy``: see :func:`cpu_tensor`."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{idx}.{key}"] = cpu_tensor(value, copy)
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_join(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an optimizer state_dict from :func:`optimizer_split`'s two halves."""
    state: dict[int, dict[str, Any]] = {}
    prefix = name + "."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, _, field = key[len(prefix):].partition(".")
            state.setdefault(int(idx), {})[field] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, with a full disk, a read-only folder or a failed write
    reported as :class:`~p2ptools.errors.OutputError` naming the file (not a SafetensorError)."""
    import re

    from safetensors import SafetensorError
    from safetensors.torch import save_file as _save_file

    from p2ptools.errors import OutputError

    try:
        _save_file(tensors, filename, metadata=metadata)
    except OSError as exc:
        raise OutputError(filename, exc) from None
    except SafetensorError as exc:  # the OS error inside its text, in one of two spellings by version
        found = re.search(r'code: (\d+), kind: \w+, message: "[^"]+"', str(exc)) or re.search(r"\(os error (\d+)\)", str(exc))
        if found:
            code = int(found.group(1))
            raise OutputError(filename, OSError(code, os.strerror(code))) from None
        raise OutputError(filename, f"cannot write ({exc})") from None
