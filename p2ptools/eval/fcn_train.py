"""Train an FCN-8s scorer on a photo/label aligned dataset (``p2ptools fcn train``).

For domains without a published scorer and for the demo. The data is an aligned dataset whose pairs
hold a photo in one half and, as the labels, either ``extras["labels"]`` (train-id PNGs, 255 = ignore,
as the cityscapes and synthetic-scenes builders write them) or the other half, a color label map
decoded through the class table (nearest class color). Which half is the photo is detected from the
first pairs (the label half fits the class palette) unless ``photo`` says ``A`` or ``B``.

Training reads top to bottom: load the pair list, measure the photos' mean (BGR, the scorer's mean
subtraction), build the network (FCN's initialisation, or VGG16 from a local torchvision weights
file), then epochs of Adam (constant rate, or the "poly" decay) on per-pixel cross-entropy (ignore 255) with random horizontal flips,
each followed by validation (pixel accuracy, mean IoU) when a val split exists and an atomic save.

Output folder: ``fcn8s.safetensors`` (weights + metadata: class table, width, channels, mean, training
size; loadable by :func:`p2ptools.eval.scorer.load_scorer`), ``config.json`` (options and results)
and ``log.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from p2ptools.devices import check_device, resolve_device
from p2ptools.errors import CheckpointError, ConfigError, InputFileError
from p2ptools.eval.scorer import CHECKPOINT_NAME, ScorerConfig, save_fcn_weights, to_network_input
from p2ptools.imageio import read_image, read_json, write_bytes_atomic, write_text_atomic
from p2ptools.outputs import OutputKind, claim, refuse_foreign, refuse_overlap
from p2ptools.labels import CITYSCAPES, IGNORE, ClassTable
from p2ptools.nets.fcn8s import FCN8s
from p2ptools.nets.vgg import TORCHVISION_FEATURE_INDEX
from p2ptools.metrics.weights import check_not_empty
from p2ptools.options import BATCH, EPOCHS, LR, SEED, SIZE, Range, check_options, to_dict
from p2ptools.pairs import MANIFEST_NAME, iter_split, load_manifest, manifest_sha256, read_pair
from p2ptools.progress import make_progress
from p2ptools.torchstate import module_tensors, optimizer_join, optimizer_split, rng_state, set_rng_state

#: torchvision's ImageNet normalisation (RGB, [0, 1] inputs), folded into conv1_1 for VGG init.
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FCNTrainOptions:
    """Options of ``p2ptools fcn train`` (defaults: a full-width scorer at the paper's 256 px)."""

    data: Path
    out: Path
    width: float = field(default=1.0, metadata={"range": Range(0, 16, low_open=True)})
    epochs: int = field(default=50, metadata={"range": EPOCHS})
    batch_size: int = field(default=4, metadata={"range": BATCH})
    lr: float = field(default=1e-4, metadata={"range": LR})
    size: int = field(default=256, metadata={"range": Range(8, SIZE.high)})
    vgg_weights: Path | None = None
    classes: str = "cityscapes"  # "cityscapes", "manifest" (the dataset's table) or a JSON file
    photo: str = "auto"  # which half is the photo: "A", "B" or "auto"
    split: str = "train"
    val_split: str = "val"
    device: str = "auto"
    seed: int = field(default=0, metadata={"range": SEED})
    overwrite: bool = False
    resume: bool = False  # continue an interrupted run in ``out`` from its last finished epoch
    progress: bool = True
    # also flip vertically and shift circularly, so the scorer cannot score by position alone
    # (scenes with a fixed layout let a small FCN label even a flat gray image by where it is)
    position_jitter: bool = False
    # per-image brightness, contrast and colour-balance changes of up to this fraction (0 = none), so
    # the scorer cannot key on a class's mean colour and must read texture and shape (see photometric_jitter)
    photometric_jitter: float = field(default=0.0, metadata={"range": (0, 0.95)})
    # "fixed" (the FCN paper's constant rate) or "poly": lr * (1 - i / n) ** 0.9 over the n steps of
    # the run (DeepLab's schedule), which settles a short from-scratch run instead of ending it noisy
    lr_policy: str = "fixed"


#: The learning-rate policies of :class:`FCNTrainOptions` and their exponent (poly).
LR_POLICIES, POLY_POWER = ("fixed", "poly"), 0.9


def check_lr_policy(policy: str) -> None:
    """Raise :class:`ConfigError` (one line) unless ``policy`` is one of ``LR_POLICIES``."""
    if policy not in LR_POLICIES:
        raise ConfigError(f"--lr-policy must be one of {', '.join(LR_POLICIES)}, got {policy!r}")


def learning_rate(base: float, policy: str, step: int, total: int) -> float:
    """The rate of ``step`` (0-based) out of ``total``: ``base`` (fixed) or ``base * (1 - step/total) ** 0.9`` (poly)."""
    check_lr_policy(policy)
    if policy == "poly":
        return base * max(0.0, 1.0 - step / max(total, 1)) ** POLY_POWER
    return base


@dataclass
class FCNTrainResult:
    """Where the checkpoint went and how training ended."""

    out: Path
    checkpoint: Path
    epochs: int
    train_loss: float
    val: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Item:
    pair: Path
    labels: Path | None


# ---------------------------------------------------------------------------------- data


def resolve_classes(spec: str, data: Path) -> ClassTable:
    """``cityscapes``, ``manifest`` (``classes`` / ``class_table`` of the dataset manifest) or a JSON
    file with a :meth:`ClassTable.to_dict` table."""
    if spec == "cityscapes":
        return CITYSCAPES
    if spec == "manifest":
        extras = load_manifest(data).extras
        for key in ("class_table", "classes"):
            table = extras.get(key)
            if isinstance(table, dict) and {"names", "label_ids", "colors"} <= set(table):
                return ClassTable.from_dict(table)
        raise InputFileError(data / MANIFEST_NAME, "no class table (extras 'class_table' or 'classes' with names, label_ids, colors)")
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--classes: expected 'cityscapes', 'manifest' or a class-table JSON file, got {spec!r}")
    try:
        return ClassTable.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"not a class table ({type(exc).__name__}: {exc})") from None


def list_items(data: Path, split: str) -> list[_Item]:
    """The pairs of ``split`` with their label extras (from the manifest when there is one)."""
    if (data / MANIFEST_NAME).is_file():
        records = [r for r in load_manifest(data).pairs if r.split == split]
        return [_Item(data / r.file, data / r.extras["labels"]["file"] if "labels" in r.extras else None) for r in records]
    if not (data / split).is_dir():
        return []
    return [_Item(path, None) for path in iter_split(data, split)]


def palette_fit(image: np.ndarray, classes: ClassTable, tolerance: float = 30.0) -> float:
    """Fraction of pixels within ``tolerance`` of a class color or black (1.0 for a label map)."""
    ids = classes.decode_colors(image, max_distance=tolerance)
    near_black = (image.astype(np.int32) ** 2).sum(-1) <= tolerance**2
    return float(((ids != IGNORE) | near_black).mean())


def detect_photo_side(items: list[_Item], classes: ClassTable, limit: int = 4) -> str:
    """"A" or "B": the half that fits the class palette less, over the first pairs."""
    fit_a = fit_b = 0.0
    for item in items[:limit]:
        a, b = read_pair(item.pair)
        fit_a, fit_b = fit_a + palette_fit(a, classes), fit_b + palette_fit(b, classes)
    return "A" if fit_a < fit_b else "B"


def load_example(item: _Item, photo_side: str, classes: ClassTable, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo (size, size, 3) uint8 RGB, labels (size, size) uint8 train ids, 255 = ignore)."""
    a, b = read_pair(item.pair)
    photo, label_half = (a, b) if photo_side == "A" else (b, a)
    if item.labels is not None:
        labels = read_image(item.labels, mode="gray")
        bad = (labels >= classes.num_classes) & (labels != IGNORE)
        if bad.any():
            values = ", ".join(map(str, np.unique(labels[bad])[:8].tolist()))
            raise InputFileError(item.labels, f"label values {values} outside the {classes.num_classes} classes of table {classes.name!r} (255 = ignore)")
    else:
        labels = classes.decode_colors(label_half)
    if photo.shape[:2] != (size, size):
        shrink = size <= min(photo.shape[:2])
        photo = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if labels.shape != (size, size):
        labels = cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)
    return photo, labels


def photo_mean_bgr(items: list[_Item], photo_side: str, limit: int = 500, seed: int = 0) -> tuple[float, float, float]:
    """Mean B, G, R of the photos (at most ``limit`` random pairs), the scorer's mean subtraction."""
    picked = random.Random(seed).sample(items, min(limit, len(items)))
    total, count = np.zeros(3), 0
    for item in picked:
        a, b = read_pair(item.pair)
        photo = a if photo_side == "A" else b
        total += photo.reshape(-1, 3).sum(0)
        count += photo.shape[0] * photo.shape[1]
    r, g, b = (total / count).tolist()
    return (b, g, r)


# ---------------------------------------------------------------------------------- network


def load_vgg16(net: FCN8s, path: Path, mean_bgr: tuple[float, float, float]) -> None:
    """Initialise conv1_1..conv5_3 (and fc6_cs / fc7_cs from the classifier) from a torchvision
    ``vgg16`` state dict (``torch.load(weights_only=True)``). conv1_1 is rewritten for our inputs
    (BGR, 0-255, ``mean_bgr`` subtracted) instead of torchvision's normalised RGB in [0, 1].

    The real VGG16 file needs ``width`` 1; a reduced-width state dict in the same layout fits the
    same reduced width. Shapes are checked layer by layer (the error names the key and both shapes).
    """
    check_not_empty(path, "VGG16 weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise InputFileError(path, f"not a torch weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputFileError(path, f"expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    targets = {f"features.{i}": name for name, i in TORCHVISION_FEATURE_INDEX.items()}
    targets.update({"classifier.0": "fc6_cs", "classifier.3": "fc7_cs"})
    with torch.no_grad():
        for src, name in targets.items():
            layer = getattr(net, name)
            for part in ("weight", "bias"):
                key = f"{src}.{part}"
                if key not in state:
                    raise CheckpointError(path, f"not a torchvision VGG16 state dict: missing {key!r}")
                value = state[key].float()
                want = getattr(layer, part).shape
                if value.numel() != want.numel() or (part == "weight" and name.startswith("conv") and value.shape != want):
                    raise CheckpointError(path, f"{key} has shape {tuple(value.shape)}, expected {tuple(want)} for {name} at --width {net.width:g} (VGG16 itself needs --width 1)")
                getattr(layer, part).copy_(value.reshape(want))
        # fold the RGB/[0,1]/normalisation of torchvision into conv1_1: x_tv = (rgb/255 - m)/s,
        # rgb = our (bgr - mean) reversed + mean -> scale weights by 1/(255 s), shift the bias
        w = net.conv1_1.weight  # (64, 3, 3, 3), input channels RGB
        mean_rgb = torch.tensor(mean_bgr[::-1], dtype=torch.float32)
        m, s = torch.tensor(TORCHVISION_MEAN), torch.tensor(TORCHVISION_STD)
        net.conv1_1.bias.add_((w * ((mean_rgb / 255 - m) / s).view(1, 3, 1, 1)).sum((1, 2, 3)))
        w.copy_((w / (255 * s).view(1, 3, 1, 1)).flip(1))


# ---------------------------------------------------------------------------------- training


def evaluate(net: FCN8s, items: list[_Item], photo_side: str, classes: ClassTable, size: int, mean: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Pixel accuracy and mean IoU of ``net`` on ``items`` (one confusion matrix, ignore dropped)."""
    k = classes.num_classes
    hist = np.zeros((k, k), np.int64)
    no_class = 0  # labelled pixels predicted as a channel outside the table: errors
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = [load_example(it, photo_side, classes, size) for it in items[start : start + batch_size]]
            pred = net(to_network_input(np.stack([p for p, _ in batch]), mean)).argmax(1).cpu().numpy()
            labels = np.stack([lab for _, lab in batch]).astype(np.int64)
            labelled = labels != IGNORE
            valid = labelled & (pred < k)
            no_class += int((labelled & ~valid).sum())
            hist += np.bincount(k * labels[valid] + pred[valid], minlength=k * k).reshape(k, k)
    total = hist.sum() + no_class
    union = hist.sum(0) + hist.sum(1) - np.diag(hist)
    iou = np.where(union > 0, np.diag(hist) / np.maximum(union, 1), 0.0)
    return {"pixel_acc": float(np.trace(hist) / max(total, 1)), "mean_iou": float(iou.mean())}


def _jitter_position(photos: np.ndarray, labels: np.ndarray, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Flip a batch vertically (p = 0.5) and roll it by a random offset on both axes, photos
    (N, H, W, 3) and labels (N, H, W) alike."""
    if rng.random() < 0.5:
        photos, labels = photos[:, ::-1], labels[:, ::-1]
    dy, dx = rng.randrange(photos.shape[1]), rng.randrange(photos.shape[2])
    return np.roll(photos, (dy, dx), axis=(1, 2)), np.roll(labels, (dy, dx), axis=(1, 2))


def photometric_jitter(photos: np.ndarray, strength: float, rng: random.Random) -> np.ndarray:
    """A new batch with each image's brightness, contrast and colour balance changed at random.

    Per image: contrast ``c`` and brightness ``b`` drawn from ``U(1 - strength, 1 + strength)`` and
    one gain per channel from ``U(1 - strength / 2, 1 + strength / 2)``; then
    ``out = ((x - mean) * c + mean * b) * gain``, with ``mean`` the image's mean over its pixels
    and channels, clipped to 0..255 and rounded. ``strength`` 0 returns an equal copy. Labels are
    not touched: call it on the photos only.

    Args:
        photos: (N, H, W, 3) uint8.
        strength: 0 <= strength < 1.
        rng: the training run's random stream (saved with its resume state).
    """
    if photos.ndim != 4 or photos.shape[-1] != 3 or photos.dtype != np.uint8:
        raise ValueError(f"photos must be (N, H, W, 3) uint8, got {photos.shape} {photos.dtype}")
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be in [0, 1), got {strength}")
    if strength == 0.0:
        return photos.copy()
    out = np.empty_like(photos)
    for i, image in enumerate(photos):
        c, b = rng.uniform(1 - strength, 1 + strength), rng.uniform(1 - strength, 1 + strength)
        gain = np.array([rng.uniform(1 - strength / 2, 1 + strength / 2) for _ in range(3)], np.float32)
        x = image.astype(np.float32)
        mean = float(x.mean())
        out[i] = np.clip(np.rint(((x - mean) * c + mean * b) * gain), 0, 255).astype(np.uint8)
    return out


RESUME_TENSORS, RESUME_STATE, RESUME_FORMAT = "resume.safetensors", "resume.json", "p2ptools-fcn-resume/1"


def _scorer_is_ours(folder: Path) -> bool:
    """A scorer folder written before ownership records: its resume state holds our format key."""
    path = folder / RESUME_STATE
    try:
        return not path.is_symlink() and json.loads(path.read_text(encoding="utf-8")).get("format") == RESUME_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


#: An ``fcn train`` output folder (``p2ptools.outputs``).
SCORER = OutputKind("scorer", (CHECKPOINT_NAME, "config.json"), legacy=_scorer_is_ours)
#: options that may change between an interrupted run and its resumption
_RESUMABLE_CHANGES = ("epochs", "resume", "overwrite", "progress", "device")


def _resume_options(opts: FCNTrainOptions) -> dict:
    return {k: v for k, v in to_dict(opts).items() if k not in _RESUMABLE_CHANGES}


def _save_resume_state(out: Path, opts: FCNTrainOptions, epoch: int, net: FCN8s, optimizer, rng: random.Random, log_lines: list[str]) -> None:
    """After each epoch: weights + optimizer tensors, then the JSON that commits them (last)."""
    tensors, optim_meta = optimizer_split("optim", optimizer)
    tensors.update({f"net.{k}": v for k, v in module_tensors(net).items()})
    blob = save_tensors(tensors)
    write_bytes_atomic(out / RESUME_TENSORS, blob)
    version, internal, gauss = rng.getstate()
    state = {
        "format": RESUME_FORMAT, "epoch": epoch, "options": _resume_options(opts), "optimizer": optim_meta,
        "rng": rng_state(), "order_rng": [version, list(internal), gauss], "log": log_lines,
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
    }  # fmt: skip
    write_text_atomic(out / RESUME_STATE, json.dumps(state) + "\n")


def _load_resume_state(out: Path, opts: FCNTrainOptions, net: FCN8s, optimizer, rng: random.Random, device: torch.device) -> tuple[int, list[str]]:
    """Restore the last finished epoch; returns (first epoch to run, log lines so far)."""
    state = read_json(out / RESUME_STATE, missing=f"nothing to resume in {out} (no {RESUME_STATE})")
    path = out / RESUME_STATE
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise InputFileError(path, f"not a p2ptools fcn resume state (format {RESUME_FORMAT!r} expected)")
    saved = {"lr_policy": "fixed", **state["options"]}  # states written before --lr-policy existed ran fixed
    changed = sorted(k for k, v in _resume_options(opts).items() if saved.get(k) != v)
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {_resume_options(opts)[k]!r}" for k in changed)
        raise ConfigError(f"{out}: cannot resume with other options ({diffs}); only {', '.join(_RESUMABLE_CHANGES[:1])} may grow")
    blob = (out / RESUME_TENSORS).read_bytes() if (out / RESUME_TENSORS).is_file() else b""
    if hashlib.sha256(blob).hexdigest() != state["tensors_sha256"]:
        raise InputFileError(out / RESUME_TENSORS, f"missing or does not match {RESUME_STATE} (interrupted while saving?)")
    tensors = load_tensors(blob)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    optimizer.load_state_dict(optimizer_join("optim", {k: v.to(device) for k, v in tensors.items()}, state["optimizer"]))
    set_rng_state(state["rng"])
    version, internal, gauss = state["order_rng"]
    rng.setstate((version, tuple(internal), gauss))
    return int(state["epoch"]) + 1, list(state["log"])


def train_fcn(options: FCNTrainOptions) -> FCNTrainResult:
    """Train an FCN-8s scorer; see the module docstring. Returns where it was saved and the scores."""
    opts = options
    check_options(opts)
    if opts.photo not in ("A", "B", "auto"):
        raise ConfigError(f"--photo must be A, B or auto, got {opts.photo!r}")
    check_lr_policy(opts.lr_policy)
    data, out = Path(opts.data), Path(opts.out)
    checkpoint = out / CHECKPOINT_NAME
    refuse_overlap(out, [data, opts.vgg_weights], "--out")
    refuse_foreign(out, SCORER, "--out")  # a folder of the user's is never written into
    if checkpoint.exists() and not (opts.overwrite or opts.resume):
        raise ConfigError(f"{checkpoint} exists; pass --resume to continue it or --overwrite to replace it")
    check_device(opts.device)
    device = resolve_device(opts.device)  # auto: the GPU when CUDA is available, else the CPU
    torch.manual_seed(opts.seed)
    rng = random.Random(opts.seed)

    # data: pairs, class table, which half is the photo, photo mean
    classes = resolve_classes(opts.classes, data)
    items = list_items(data, opts.split)
    if not items:
        raise InputFileError(data, f"no pairs in split {opts.split!r}")
    val_items = list_items(data, opts.val_split) if opts.val_split else []
    photo_side = detect_photo_side(items, classes) if opts.photo == "auto" else opts.photo
    mean_bgr = photo_mean_bgr(items, photo_side, seed=opts.seed)
    mean = torch.tensor(mean_bgr, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    # network: FCN initialisation, optionally VGG16
    net = FCN8s(classes.num_classes, opts.width)
    net.init_for_training()
    if opts.vgg_weights is not None:
        load_vgg16(net, Path(opts.vgg_weights), mean_bgr)
    net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=opts.lr)
    source = {"data": str(data), "manifest_sha256": manifest_sha256(data) if (data / MANIFEST_NAME).is_file() else None, "photo": photo_side}
    config = ScorerConfig(classes.num_classes, float(opts.width), classes, mean_bgr, source, opts.size)

    out.mkdir(parents=True, exist_ok=True)
    claim(out, SCORER)
    log_lines: list[str] = []
    first_epoch = 1
    if opts.resume:
        first_epoch, log_lines = _load_resume_state(out, opts, net, optimizer, rng, device)
    steps_per_epoch = (len(items) + opts.batch_size - 1) // opts.batch_size
    loss_value, val = float("nan"), {}
    with make_progress(opts.progress) as progress:
        task = progress.add_task("fcn train", total=opts.epochs * steps_per_epoch, completed=(first_epoch - 1) * steps_per_epoch)
        for epoch in range(first_epoch, opts.epochs + 1):
            # one epoch: shuffled batches, random flips, cross-entropy over labelled pixels
            net.train()
            order = items[:]
            rng.shuffle(order)
            losses = []
            for index, start in enumerate(range(0, len(order), opts.batch_size)):
                lr = learning_rate(opts.lr, opts.lr_policy, (epoch - 1) * steps_per_epoch + index, opts.epochs * steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = [load_example(it, photo_side, classes, opts.size) for it in order[start : start + opts.batch_size]]
                photos = np.stack([p for p, _ in batch])
                labels = np.stack([lab for _, lab in batch])
                if rng.random() < 0.5:
                    photos, labels = photos[:, :, ::-1], labels[:, :, ::-1]
                if opts.position_jitter:
                    photos, labels = _jitter_position(photos, labels, rng)
                if opts.photometric_jitter:
                    photos = photometric_jitter(photos, opts.photometric_jitter, rng)
                target = torch.from_numpy(np.ascontiguousarray(labels)).long().to(device)
                if not (target != IGNORE).any():
                    progress.advance(task)
                    continue
                loss = F.cross_entropy(net(to_network_input(photos, mean)), target, ignore_index=IGNORE)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                progress.update(task, advance=1, description=f"fcn train epoch {epoch}/{opts.epochs} loss {loss.item():.3f}")
            loss_value = float(np.mean(losses)) if losses else float("nan")
            # validation and an atomic save after every epoch
            val = evaluate(net, val_items, photo_side, classes, opts.size, mean, opts.batch_size) if val_items else {}
            save_fcn_weights(checkpoint, net.state_dict(), config)
            log_lines.append(json.dumps({"epoch": epoch, "train_loss": loss_value, **{f"val_{k}": v for k, v in val.items()}}))
            write_text_atomic(out / "log.jsonl", "\n".join(log_lines) + "\n")
            _save_resume_state(out, opts, epoch, net, optimizer, rng, log_lines)
    summary = {"options": to_dict(opts), "num_classes": classes.num_classes, "classes": classes.to_dict(), "mean_bgr": list(mean_bgr), "photo": photo_side, "device": str(device), "train_pairs": len(items), "val_pairs": len(val_items), "final": {"train_loss": loss_value, **val}}
    write_text_atomic(out / "config.json", json.dumps(summary, indent=1) + "\n")
    return FCNTrainResult(out, checkpoint, opts.epochs, loss_value, val)
