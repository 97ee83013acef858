"""Export a run's generator (ONNX, TorchScript) with a parity check, and run ONNX files.

- :mod:`p2ptools.export.writer`: ``export_model`` writes the file, runs it against PyTorch and
  keeps it only within the tolerance;
- :mod:`p2ptools.export.contract`: the metadata an exported file carries (README: "Export");
- :mod:`p2ptools.export.backend`: :class:`OnnxModel`, a :class:`~p2ptools.plugin.TrainedModel`
  that translates through onnxruntime (``translate --backend onnx``);
- :mod:`p2ptools.export.runtime`: onnxruntime sessions and the optional-extra check
  (``p2ptools[export]``).

Nothing here imports onnx or onnxruntime at import time.
"""
