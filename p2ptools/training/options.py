"""The options every trainer has: optimisation, hardware and bookkeeping (:class:`TrainOptions`).

A plugin's options dataclass extends :class:`TrainOptions` and declares only what is its own
(architecture, objective, data geometry). The fields here are what the shared set-up
(:mod:`p2ptools.training.session`) and the shared loop (:mod:`p2ptools.training.epoch_loop`)
read; a plugin that needs another default redeclares the field with it.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class MyOptions(TrainOptions):
    ...     ngf: int = field(default=64, metadata={"help": "Generator width."})
    >>> MyOptions(epochs=2).epochs + MyOptions().ngf
    66
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2ptools.cpus import default_workers
from p2ptools.options import BATCH, BETA, EPOCHS, LR, SAMPLES, SEED, WORKERS, Range
from p2ptools.training.tracking import valid_trackers

LR_POLICIES = ("linear", "step", "plateau", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainOptions:
    """Options of every trainer (stored in ``config.json`` with the plugin's own)."""

    # data loading
    workers: int = field(default_factory=lambda: default_workers(4),
                         metadata={"range": WORKERS, "bookkeeping": True, "help": "Data-loading worker processes (0 = in the main process; default: min(4, cores available))."})
    # optimisation
    epochs: int = field(default=100, metadata={"range": EPOCHS, "help": "Epochs at the initial learning rate."})
    epochs_decay: int = field(default=100, metadata={"range": Range(0, EPOCHS.high), "help": "Epochs of linear decay to zero (--lr-policy linear); the run lasts epochs + epochs-decay."})
    lr_policy: str = field(default="linear", metadata={"help": "Learning-rate policy: linear (constant, then linear decay), step (x0.1 every --lr-decay-iters epochs), plateau (x0.2 when validation L1 stalls 5 epochs), cosine (to 0 over the run).", "choices": LR_POLICIES})
    lr_decay_iters: int = field(default=50, metadata={"range": EPOCHS, "help": "Epochs between the step policy's x0.1 decays."})
    batch_size: int = field(default=1, metadata={"range": BATCH, "help": "Batch size (per process)."})
    lr: float = field(default=2e-4, metadata={"range": LR, "help": "Adam learning rate."})
    beta1: float = field(default=0.5, metadata={"range": BETA, "help": "Adam beta1."})
    beta2: float = field(default=0.999, metadata={"range": BETA, "help": "Adam beta2."})
    seed: int = field(default=0, metadata={"range": SEED, "help": "Random seed (runs are exactly reproducible on the CPU)."})
    # hardware
    device: str = field(default="auto", metadata={"bookkeeping": True, "help": "auto (cuda if available), cpu, cuda, cuda:N."})
    precision: str = field(default="auto", metadata={"help": "auto: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU.", "choices": PRECISIONS})
    channels_last: bool = field(default=True, metadata={"bookkeeping": True, "help": "channels_last memory format on GPU."})
    compile: bool = field(default=False, metadata={"bookkeeping": True, "help": "torch.compile the networks."})
    # bookkeeping
    checkpoint_every: int = field(default=0, metadata={"range": Range(0), "bookkeeping": True, "help": "Also save the full state every N steps (0: no step rule)."})
    checkpoint_minutes: float = field(default=10.0, metadata={"range": Range(0, 10**6), "bookkeeping": True, "help": "Save the full state (written in the background) when this many minutes have passed since the last save, checked after each step; 0: at every epoch end. The end of the run and SIGINT/SIGTERM always save."})
    save_epoch_freq: int = field(default=0, metadata={"range": Range(0), "bookkeeping": True, "help": "Keep the generator of every K-th epoch as checkpoints/epoch_<N>_G.safetensors (weights only; 0: none; the reference saves every 5)."})
    max_steps: int = field(default=0, metadata={"range": Range(0), "help": "Stop after this many steps in total (0: train every epoch); for smoke tests and benchmarks."})
    val_limit: int = field(default=0, metadata={"range": Range(0), "help": "Validation pairs scored per epoch for val_L1 (0: the whole val split)."})
    log: str = field(default="jsonl", metadata={"bookkeeping": True, "help": "Trackers, comma-separated: jsonl (always on), tensorboard (RUN_DIR/tensorboard), wandb (RUN_DIR/wandb; offline without credentials); rank 0 logs.", "flag": "--log", "choices": valid_trackers, "choices_help": "comma-separated jsonl, tensorboard, wandb"})
    log_every: int = field(default=20, metadata={"range": Range(1), "bookkeeping": True, "help": "Append averaged losses and images/s to log.jsonl every N steps."})
    sample_images: int = field(default=4, metadata={"range": SAMPLES, "bookkeeping": True, "help": "Validation pairs shown in each epoch's sample grid."})


def with_default(name: str, value: object) -> object:
    """A :class:`TrainOptions` field redeclared with another default, its range, help and flag kept:
    ``epochs: int = with_default("epochs", 5)`` in a plugin's options dataclass."""
    base = TrainOptions.__dataclass_fields__[name]
    return field(default=value, metadata=base.metadata)
