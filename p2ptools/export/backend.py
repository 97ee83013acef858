"""``translate --backend onnx``: a loaded run whose network runs in onnxruntime.

The run supplies the preprocessing (:meth:`TrainedModel.graph`'s ``feeds``: pixel scaling, label
encoding, the seeded dropout masks of the default test-time noise); the ONNX file the network. The
file must have been exported from the same weights and options with the same test-time semantics
(checked against its metadata), so the outputs equal the PyTorch path's within the export tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from p2ptools.errors import ConfigError
from p2ptools.export import runtime
from p2ptools.export.contract import contract, to_uint8
from p2ptools.plugin import TrainedModel, same_size_runs

#: metadata that must agree between the file and the loaded run
_CHECKED = ("plugin", "eval_mode", "run_options_sha256", "weights_sha256", "input_names", "input_strides")


class OnnxModel(TrainedModel):
    """``model`` with its network replaced by the ONNX file ``path`` (CPU, or CUDA for ``cuda`` devices)."""

    def __init__(self, model: TrainedModel, path: Path, run_dir: Path, device: str = "cpu") -> None:
        self.model, self.path = model, Path(path)
        self.graph_ = model.graph()
        self.session = runtime.session(self.path, device)
        meta = runtime.metadata(self.session)
        if "p2ptools_export" not in meta:
            raise ConfigError(f"--onnx {path}: not written by p2ptools export (no p2ptools metadata)")
        expected = contract(model, self.graph_, run_dir, "latest")
        for key in _CHECKED:
            if meta.get(key) != expected.get(key):
                what = {"eval_mode": f"eval_mode {meta.get(key)} (translate {'with' if expected[key] == 'true' else 'without'} "
                                     "--eval-mode needs a file exported the same way)"}.get(key, f"another {key}")
                raise ConfigError(f"--onnx {path}: exported with {what}, not from this run's loaded weights and options; "
                                  "export it again from this run")
        self.providers = list(self.session.get_providers())
        #: recorded in translate.json
        self.backend = {"name": "onnx", "file": str(self.path), "providers": self.providers}
        for name in ("direction", "in_channels", "out_channels", "size_multiple", "input_extras", "epoch", "weights"):
            setattr(self, name, getattr(model, name))
        self.max_batch = getattr(model, "max_batch", 8)

    def translate(self, images: Sequence[np.ndarray], extras: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[np.ndarray]:
        """Translate uint8 images as the PyTorch model would, through onnxruntime."""
        extras = list(extras) if extras is not None else [{} for _ in images]
        results: list[np.ndarray] = []
        for run in same_size_runs(images, self.max_batch):
            feeds = self.graph_.feeds(images[run], extras[run])
            results += to_uint8(runtime.run(self.session, feeds))
        return results
