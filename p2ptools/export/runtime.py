"""onnxruntime behind one door: the optional-extra check, sessions, and the file's metadata.

onnx and onnxruntime are the optional extra ``p2ptools[export]``; without them every entry point
here raises one :class:`ConfigError` line naming the extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import ConfigError, InputFileError

EXTRA_HINT = "pip install 'p2ptools[export]'"


def require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or raise one line naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"ONNX export and --backend onnx need the packages onnx and onnxruntime, not installed ({module} "
                          f"missing): {EXTRA_HINT}") from None


def session(path: Path, device: str = "cpu") -> Any:
    """An onnxruntime session of ``path``: CUDA when ``device`` is a CUDA device and onnxruntime-gpu
    provides it, else the CPU."""
    ort = require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such ONNX file")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise InputFileError(path, f"onnxruntime cannot load it ({' '.join(str(exc).split())[:200]})") from None


def metadata(sess: Any) -> dict[str, str]:
    """The custom metadata of a session's model (``p2ptools export`` writes its contract there)."""
    return dict(sess.get_modelmeta().custom_metadata_map)


def run(sess: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of one run, float32."""
    return np.asarray(sess.run(None, feeds)[0], dtype=np.float32)


def input_strides(meta: dict[str, str]) -> list[tuple[str, int, int]]:
    """(name, channels, stride) of each graph input, from the metadata."""
    try:
        return [(n, int(c), int(s)) for n, (c, s) in zip(json.loads(meta["input_names"]), json.loads(meta["input_strides"]), strict=True)]
    except (KeyError, ValueError, TypeError):
        raise ConfigError("the ONNX file has no p2ptools input metadata (input_names, input_strides): export it with p2ptools export") from None
