"""What every model plugin's trainer shares, so that a plugin is mostly its networks and losses.

- :mod:`~p2ptools.training.runtime`: devices, torchrun/DDP process groups, precision, stop signals;
- :mod:`~p2ptools.training.data`: aligned A|B pairs, jitter on uint8, the resumable sampler;
- :mod:`~p2ptools.training.checkpoint`: run directories, safetensors checkpoints, exact resume;
- :mod:`~p2ptools.training.saving`: the background checkpoint writer, ``--checkpoint-minutes``;
- :mod:`~p2ptools.training.epoch_weights`: per-epoch weights and ``--epoch N|latest|best``;
- :mod:`~p2ptools.training.options`: the options every trainer has (:class:`TrainOptions`);
- :mod:`~p2ptools.training.session`: the set-up every trainer repeats, in the order that keeps resume exact;
- :mod:`~p2ptools.training.epoch_loop`: the one epoch loop (checkpoints, logs, lr policies, validation,
  samples, per-epoch weights, stop signals) that a trainer runs with its own step;
- :mod:`~p2ptools.training.validation`: validation L1 and the sample grid at each epoch end;
- :mod:`~p2ptools.training.schedules`, :mod:`~p2ptools.training.weights_init`: lr policies, init;
- :mod:`~p2ptools.training.resize`: training-time resize backends (PIL's bicubic algorithm by default);
- :mod:`~p2ptools.training.tracking`: log.jsonl, TensorBoard and wandb, the averaged loss meter;
- :mod:`~p2ptools.training.samples`: per-epoch sample grids and their index.html;
- :mod:`~p2ptools.training.state`: run-directory preparation across ranks, per-rank seeds, the one
  state document a checkpoint saves and its restore;
- :mod:`~p2ptools.training.foreign`: reading, checking and writing foreign (reference) checkpoints.

Plugins import from here; nothing here imports a plugin.
"""
