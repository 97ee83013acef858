"""The embedded default: the whole pix2pix pipeline on synthetic street scenes, on a CPU, in minutes.

Steps (each reads only the files of the one before, like the real pipeline):

1. ``synthetic-scenes``: procedural street scenes with Cityscapes labels (A = label colors,
   B = rendered photo, ``labels/`` = trainId maps), deterministic for the seed; the classes share
   one colour palette and differ in fine texture of random phase, so, as with real photos, a blurry
   translation loses the evidence a segmenter reads;
2. a small FCN-8s scorer trained on the *real* rendered photos (the paper's "FCN score" needs a
   segmenter of the target domain), with position jitter so it scores appearance, not layout, and
   photometric jitter (brightness, contrast, colour balance up to 30%) so that the real photos'
   lighting, which no generator can know, does not count against them;
3. one small pix2pix run per objective (default the paper's Table 1 rows ``l1`` and ``l1+cgan``),
   labels -> photo;
4. the evaluator: each run translated on the test split, FCN scores with the ground-truth row,
   Lab color histograms, an ablation table (md/csv/tex/html) with overlaid plots.

Sizes are the demo's, not the paper's: 64x64 scenes, a 1/16-width FCN, U-Nets with 32 filters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from p2ptools.buildkit.contract import BuildOptions
from p2ptools.errors import ConfigError
from p2ptools.plugin import TrainRequest
from p2ptools.progress import console

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo does; the defaults finish in a few minutes on 2 CPU cores."""

    out: Path = Path("p2ptools-demo")
    count: int = 360
    size: int = 64
    seed: int = 0
    losses: tuple[str, ...] = ("l1", "l1+cgan")
    epochs: int = 5
    epochs_decay: int = 5
    batch_size: int = 4
    ngf: int = 32
    ndf: int = 32
    net_d: str = "patch70"
    fcn_width: float = 0.0625
    fcn_epochs: int = 10
    fcn_batch_size: int = 4
    fcn_lr: float = 1e-3
    fcn_photometric_jitter: float = 0.3
    fcn_lr_policy: str = "fixed"
    workers: int = 2
    device: str = "cpu"
    progress: bool = True
    extra_rows: tuple[str, ...] = field(default=())  # run dirs to add to the table (tests: an untrained G)

    def __post_init__(self) -> None:
        if self.size < 32 or self.size & (self.size - 1):
            raise ConfigError(f"--size must be a power of two >= 32, got {self.size}")
        if self.count < 20:
            raise ConfigError(f"--count must be at least 20, got {self.count}")
        if not self.losses:
            raise ConfigError("the demo needs at least one --loss")


#: What the demo must show (the paper's Table 1): these FCN scores ordered ground truth > L1+cGAN > L1,
#: each gap at least ``MIN_GAP``, and the Lab histogram intersections of L1+cGAN above L1's.
ORDERED_SCORES, COLOR_COLUMNS, MIN_GAP = ("Per-pixel acc.", "Class IOU"), ("Color L", "Color a", "Color b"), 0.02
GROUND_TRUTH, L1_ROW, CGAN_ROW = "Ground truth", "L1", "L1+cGAN"


def read_table(table_csv: Path) -> pd.DataFrame:
    """The demo's ``table.csv`` as a pandas DataFrame indexed by its row labels (``L1``, ``Ground truth``, ...)."""
    import pandas as pd

    frame = pd.read_csv(table_csv)
    return frame.set_index(frame.columns[0])


def ordering_problems(table_csv: Path, *, gap: float = MIN_GAP) -> list[str]:
    """Where the demo's ``table.csv`` breaks the paper's orderings (see ``ORDERED_SCORES``); empty when they hold.

    Each problem is one line naming the column, the rows and their values. A table without the
    ground-truth, L1 and L1+cGAN rows is a problem too.
    """
    frame = read_table(table_csv)
    missing = [row for row in (GROUND_TRUTH, CGAN_ROW, L1_ROW) if row not in frame.index]
    if missing:
        return [f"{table_csv}: no row {', '.join(missing)} (rows: {', '.join(map(str, frame.index))})"]
    problems, chain = [], (GROUND_TRUTH, CGAN_ROW, L1_ROW)
    for column in ORDERED_SCORES:
        for high, low in zip(chain, chain[1:]):
            a, b = float(frame.loc[high, column]), float(frame.loc[low, column])
            if a - b < gap:
                problems.append(f"{column}: {high} {a:.3f} is not {gap} above {low} {b:.3f}")
    for column in COLOR_COLUMNS:
        a, b = float(frame.loc[CGAN_ROW, column]), float(frame.loc[L1_ROW, column])
        if not a > b:
            problems.append(f"{column}: {CGAN_ROW} {a:.3f} is not above {L1_ROW} {b:.3f}")
    return problems


def _step(text: str) -> None:
    console.print(f"[bold cyan]>>[/bold cyan] {text}")


def build_scenes(config: DemoConfig) -> Path:
    """Step 1: the synthetic dataset.

    Resumable: a finished build with the same options is reused as it is, an interrupted one is
    resumed. A finished synthetic-scenes build with other options or by an older version of the
    builder (an earlier demo's, in the demo's own folder) is replaced, the old one staying until the
    new one is complete.
    """
    from p2ptools import registry
    from p2ptools.buildkit.runner import build_config, manifest_matches
    from p2ptools.pairs import MANIFEST_NAME, load_manifest

    cls = registry.load("datasets", "synthetic-scenes")
    builder = cls(cls.Options(count=config.count))
    data = config.out / "data"
    build = BuildOptions(size=config.size, seed=config.seed, workers=config.workers, format="png")
    if (data / MANIFEST_NAME).is_file():
        previous = load_manifest(data)
        if previous.builder.get("name") == builder.name and not manifest_matches(previous, build_config(builder, [], build)):
            console.print(f"   {data} holds an earlier demo's scenes, built with other options or by synthetic-scenes version "
                          f"{previous.builder.get('version')}: rebuilding")
            build = replace(build, overwrite=True)
    manifest = builder.build([], data, build, progress=config.progress)
    counts = ", ".join(f"{k} {v}" for k, v in manifest.counts.items())
    console.print(f"   synthetic-scenes: {counts} -> {data}")
    return data


def train_scorer(config: DemoConfig, data: Path) -> Path:
    """Step 2: an FCN-8s scorer trained on the rendered photos (B) and their train-id labels."""
    from p2ptools.eval.fcn_train import FCNTrainOptions, train_fcn

    out = config.out / "fcn"
    options = FCNTrainOptions(
        data=data, out=out, width=config.fcn_width, epochs=config.fcn_epochs, batch_size=config.fcn_batch_size,
        lr=config.fcn_lr, size=config.size, classes="cityscapes", photo="B", device=config.device, seed=config.seed, overwrite=True,
        progress=config.progress, position_jitter=True, photometric_jitter=config.fcn_photometric_jitter,
        lr_policy=config.fcn_lr_policy,
    )  # fmt: skip
    result = train_fcn(options)
    val = ", ".join(f"{k} {v:.3f}" for k, v in result.val.items())
    console.print(f"   FCN scorer ({val}) -> {result.checkpoint}")
    return result.checkpoint


def train_runs(config: DemoConfig, data: Path) -> list[Path]:
    """Step 3: one pix2pix run per objective, labels (A) -> photo (B).

    The plugin comes from the registry and its options from its own ``Options`` dataclass, exactly as
    ``p2ptools train --model pix2pix`` does: the core never imports a plugin by name.
    """
    from p2ptools import registry
    from p2ptools.options import from_dict

    plugin_cls = registry.load("models", "pix2pix")
    runs = []
    for loss in config.losses:
        run_dir = config.out / "runs" / loss.replace("+", "_")
        values = {
            "netG": f"unet_{config.size}", "netD": config.net_d, "ngf": config.ngf, "ndf": config.ndf, "loss": loss,
            "direction": "AtoB", "load_size": config.size + config.size // 8, "crop_size": config.size,
            "epochs": config.epochs, "epochs_decay": config.epochs_decay, "batch_size": config.batch_size,
            "seed": config.seed, "workers": 0, "device": config.device,
        }  # fmt: skip
        options = from_dict(plugin_cls.Options, values, "the demo's pix2pix options")
        _step(f"pix2pix, loss {loss}")
        runs.append(plugin_cls().train(options, TrainRequest(data, run_dir, overwrite=True, progress=config.progress)))
    return runs


def evaluate(config: DemoConfig, runs: list[Path], scorer: Path) -> Path:
    """Step 4: translate each run's test split, score, and write the ablation table."""
    from p2ptools.eval.api import EvalRequest, run_evaluation
    from p2ptools.eval.evaluate import EvalOptions

    options = EvalOptions(fcn=True, color=True, ground_truth_row=True, split="test", progress=config.progress)
    request = EvalRequest(config.out / "report", options, runs=[*runs, *map(Path, config.extra_rows)], fcn_weights=scorer,
                          device=config.device, overwrite=True)  # the demo replaces its own report
    return run_evaluation(request).index


def run_demo(config: DemoConfig) -> Path:
    """Run every step; returns the path of ``table.html``."""
    config.out.mkdir(parents=True, exist_ok=True)
    _step(f"building {config.count} synthetic street scenes at {config.size}x{config.size}")
    data = build_scenes(config)
    _step("training an FCN-8s scorer on the rendered photos")
    scorer = train_scorer(config, data)
    runs = train_runs(config, data)
    _step("translating the test split and evaluating (FCN scores, Lab color histograms)")
    return evaluate(config, runs, scorer)
